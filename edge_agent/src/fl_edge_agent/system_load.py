"""SystemLoad: the fast-changing facts a heartbeat carries (load, memory, heat, disk)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadSample:
    """One reading; None where the device does not expose it."""

    cpu_percent: float | None
    memory_percent: float | None
    max_temp_c: float | None
    disk_free_bytes: int | None


class SystemLoad:
    """Reads procfs and sysfs under ``root`` (a fixture tree in tests).

    Two numbers from /proc need no library: psutil would add ~1 MB to the daemon's RSS
    (docs/benchmarks.md, "Agent footprint"). The definitions are psutil's, as before.
    """

    def __init__(self, state_dir: Path, root: Path = Path("/")) -> None:
        self._state_dir = state_dir
        self._thermal = root / "sys" / "class" / "thermal"
        self._stat = root / "proc" / "stat"
        self._meminfo = root / "proc" / "meminfo"
        self._last_cpu = self._cpu_jiffies()  # the first sample measures from here

    def sample(self) -> LoadSample:
        """Read everything once; never raises."""
        try:
            disk: int | None = shutil.disk_usage(self._state_dir).free
        except OSError:
            disk = None
        return LoadSample(
            cpu_percent=self.cpu_percent(),
            memory_percent=self.memory_percent(),
            max_temp_c=self.max_temp_c(),
            disk_free_bytes=disk,
        )

    def cpu_percent(self) -> float | None:
        """Busy share of all CPUs since the previous reading, in % (psutil.cpu_percent())."""
        now, last = self._cpu_jiffies(), self._last_cpu
        self._last_cpu = now
        if now is None or last is None:
            return None
        total, idle = max(now[0] - last[0], 0), max(now[1] - last[1], 0)
        if total == 0:
            return 0.0
        return round(min(max(100.0 * (total - idle) / total, 0.0), 100.0), 1)

    def _cpu_jiffies(self) -> tuple[int, int] | None:
        """(total, idle) from the ``cpu`` line of /proc/stat."""
        try:
            with self._stat.open(encoding="ascii") as stat:
                name, *fields = stat.readline().split()
            ticks = [int(v) for v in fields]
        except (OSError, ValueError):
            return None
        if name != "cpu" or len(ticks) < 5:
            return None
        # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
        # also counted in user and nice, and iowait is idle time too.
        return sum(ticks[:8]), ticks[3] + ticks[4]

    def memory_percent(self) -> float | None:
        """Memory in use, in % of MemTotal (psutil.virtual_memory().percent)."""
        kib: dict[str, int] = {}
        try:
            with self._meminfo.open(encoding="ascii") as meminfo:
                for line in meminfo:
                    key, _, rest = line.partition(":")
                    if key in ("MemTotal", "MemAvailable", "MemFree"):
                        kib[key] = int(rest.split()[0])
        except (OSError, ValueError, IndexError):
            return None
        total = kib.get("MemTotal", 0)
        # MemAvailable since Linux 3.14; MemFree undercounts what is available.
        available = kib.get("MemAvailable", kib.get("MemFree"))
        if total <= 0 or available is None:
            return None
        return round(100.0 * (total - available) / total, 1)

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
