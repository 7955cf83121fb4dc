"""The environment every Flower process we start runs with: private home, no phoning out."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def flower_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for a Flower process with its own FLWR_HOME.

    Flower finds its helper executables (flower-superexec, flwr-serverapp, flwr-clientapp) by
    bare name on PATH, so the interpreter's bin directory goes first.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    no_proxy = {
        p.strip() for key in ("NO_PROXY", "no_proxy") for p in env.get(key, "").split(",") if p
    }
    no_proxy |= {"127.0.0.1", "localhost", "::1"}
    env["NO_PROXY"] = env["no_proxy"] = ",".join(sorted(no_proxy))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
