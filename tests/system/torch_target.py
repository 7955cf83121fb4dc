"""A CPU torch for the fleet's containers: ``pip install --target`` once on the host, cached.

docs/install.md installs torch into ``/usr/local/lib/<pkg>/python`` on each machine; the fleet
tests do that once on the host and bind-mount the directory read-only into the containers.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests.system import debian_root

TORCH_WHEELS = "/opt/wheels/torch-2.13.0+cpu-cp311-*.whl"


def torch_wheel() -> Path:
    """The CPU torch wheel on this host (``$FL_SYSTEM_TEST_TORCH_WHEEL`` or /opt/wheels)."""
    given = os.environ.get("FL_SYSTEM_TEST_TORCH_WHEEL")
    found = [Path(given)] if given else [Path(p) for p in sorted(glob.glob(TORCH_WHEELS))]
    if not found or not found[-1].is_file():
        pytest.fail(
            f"no CPU torch wheel ({given or TORCH_WHEELS}); set FL_SYSTEM_TEST_TORCH_WHEEL",
            pytrace=False,
        )
    return found[-1]


def torch_target(wheel: Path) -> Path:
    """``pip install --target`` of ``wheel`` (with its dependencies), made once and cached.

    What docs/install.md does on each machine (``uv pip install --target
    /usr/local/lib/<pkg>/python ... torch==2.13.0``), done once here with the dev venv's pip
    from the local wheel. pip also byte-compiles it (Python 3.11, as in the containers), so
    with the directory mounted read-only no process in them compiles torch on import.
    """
    target = debian_root.cache_dir() / f"torch-target-{wheel.stem}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        partial = Path(tempfile.mkdtemp(prefix="torch-", dir=target.parent))
        try:
            pip = [str(debian_root.REPO / ".venv/bin/python"), "-m", "pip", "install"]
            done = subprocess.run(
                [*pip, "--quiet", "--target", str(partial), str(wheel)],
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if done.returncode != 0:
                pytest.fail(f"pip install --target of {wheel.name} failed:\n{done.stderr[-3000:]}")
            # mkdtemp made it 0700: the services' users in the containers must read it.
            partial.chmod(0o755)
            partial.rename(target)
        finally:
            if partial.exists():
                shutil.rmtree(partial)
    return target
