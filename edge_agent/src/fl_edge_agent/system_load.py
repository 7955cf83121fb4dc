"""SystemLoad: the fast-changing facts a heartbeat carries (load, memory, heat, disk)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class LoadSample:
    """One reading; None where the device does not expose it."""

    cpu_percent: float | None
    memory_percent: float | None
    max_temp_c: float | None
    disk_free_bytes: int | None


class SystemLoad:
    """Reads load from psutil and temperatures from sysfs under ``root`` (a fixture in tests)."""

    def __init__(self, state_dir: Path, root: Path = Path("/")) -> None:
        self._state_dir = state_dir
        self._thermal = root / "sys" / "class" / "thermal"
        psutil.cpu_percent(interval=None)  # primes the counter: the next call measures since now

    def sample(self) -> LoadSample:
        """Read everything once; never raises."""
        try:
            disk: int | None = shutil.disk_usage(self._state_dir).free
        except OSError:
            disk = None
        return LoadSample(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=psutil.virtual_memory().percent,
            max_temp_c=self.max_temp_c(),
            disk_free_bytes=disk,
        )

    def max_temp_c(self) -> float | None:
        """The hottest thermal zone in °C (sysfs reports millidegrees)."""
        temps = []
        for temp_file in self._thermal.glob("thermal_zone*/temp"):
            try:
                temps.append(int(temp_file.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
        # Some boards park disabled zones at absurd values (e.g. -40 °C or 100+ °C sentinels).
        plausible = [t for t in temps if -30.0 < t < 150.0]
        return max(plausible) if plausible else None
