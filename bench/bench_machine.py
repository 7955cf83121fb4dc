"""What ran a benchmark, and whether the machine was quiet: shared by the bench scripts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PACKAGES = ("flwr", "torch", "httpx", "pydantic", "structlog", "psutil")


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info(packages: Sequence[str] = PACKAGES) -> dict[str, Any]:
    """Platform, CPU, cores, memory, Python and package versions (read from metadata)."""
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = os.cpu_count() or 0
    mem_kib = _first("/proc/meminfo", "MemTotal").split()
    versions: dict[str, str | None] = {}
    for dist in packages:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "platform": platform.platform(),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "nproc": nproc,
        "mem_total_gib": round(int(mem_kib[0]) / 1024**2, 1) if mem_kib else None,
        "python": platform.python_version(),
        "torch": versions.get("torch"),
        "flwr": versions.get("flwr"),
        "packages": versions,
    }


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def cpu_busy(interval_s: float = 2.0) -> float:
    """Fraction of all CPUs busy over ``interval_s`` (0..1)."""
    total0, idle0 = _cpu_times()
    time.sleep(interval_s)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(
    others: Callable[[], list[str]], max_wait_s: float, busy_limit: float = 0.25
) -> dict[str, Any]:
    """Wait (bounded) until ``others()`` finds no foreign process and the CPUs are mostly idle.

    The machine may be shared; what was found is recorded with the run.
    """
    started = time.monotonic()
    deadline = started + max_wait_s
    warned = False
    while True:
        foreign = others()
        busy = cpu_busy()
        if (not foreign and busy < busy_limit) or time.monotonic() >= deadline:
            break
        if not warned:
            print(
                f"  waiting up to {max_wait_s:.0f} s for a quiet machine (cpu busy {busy:.0%}, "
                f"{len(foreign)} other Flower/platform processes) ...",
                flush=True,
            )
            warned = True
    return {
        "waited_for_quiet_s": round(time.monotonic() - started, 1),
        "cpu_busy_before": round(busy, 3),
        "foreign_processes_before": foreign,
    }
