"""HostProbe: identity, CPU, memory, disk and thermal zones of any Linux machine."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
from functools import partial
from pathlib import Path
from typing import Final

from fl_edge_agent import __version__
from fl_edge_agent.probe_error_log import ProbeErrorLog
from fl_edge_agent.system_root import SystemRoot
from fl_shared.capabilities import CpuInfo, DiskInfo, Identity, MemoryInfo, ThermalZone

OS_RELEASE: Final[str] = "etc/os-release"
CPUINFO: Final[str] = "proc/cpuinfo"
MEMINFO: Final[str] = "proc/meminfo"
CPU_MAX_FREQ: Final[str] = "sys/devices/system/cpu/cpu{n}/cpufreq/cpuinfo_max_freq"

# (implementer, part) from /proc/cpuinfo -> core name, for aarch64 kernels without "model name".
ARM_CORES: Final[dict[tuple[str, str], str]] = {
    ("0x41", "0xd03"): "ARM Cortex-A53",
    ("0x41", "0xd04"): "ARM Cortex-A35",
    ("0x41", "0xd05"): "ARM Cortex-A55",
    ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd09"): "ARM Cortex-A73",
    ("0x41", "0xd0a"): "ARM Cortex-A75",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd41"): "ARM Cortex-A78",
    ("0x41", "0xd42"): "ARM Cortex-A78AE",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
    ("0x4e", "0x003"): "NVIDIA Denver 2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines of os-release, quotes removed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def cpu_model_name(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo, falling back to the ARM implementer/part table."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    implementer, part = fields.get("cpu implementer", ""), fields.get("cpu part", "")
    if (implementer.lower(), part.lower()) in ARM_CORES:
        return ARM_CORES[(implementer.lower(), part.lower())]
    if fields.get("cpu architecture") == "8":
        return "ARMv8 Processor"
    return ""


def _flwr_version() -> str | None:
    try:
        return importlib.metadata.version("flwr")
    except importlib.metadata.PackageNotFoundError:
        return None


class HostProbe:
    """Reads the generic facts of a Linux host under a root."""

    def __init__(self, root: SystemRoot, errors: ProbeErrorLog) -> None:
        self._root = root
        self._errors = errors

    def identity(self) -> Identity:
        """Arch, distribution, kernel and our own software versions."""
        os_release: dict[str, str] = self._errors.attempt(
            "identity.os_release", lambda: parse_os_release(self._root.read_text(OS_RELEASE)), {}
        )
        return Identity(
            arch=platform.machine(),
            os_name=os_release.get("NAME", ""),
            os_version=os_release.get("VERSION_ID", ""),
            os_pretty_name=os_release.get("PRETTY_NAME", ""),
            kernel=platform.release(),
            python=platform.python_version(),
            agent_version=__version__,
            flwr_version=_flwr_version(),
        )

    def cpu(self) -> CpuInfo:
        """CPU model, core count and maximum frequency."""
        cpuinfo = self._errors.attempt("cpu.cpuinfo", lambda: self._root.read_text(CPUINFO), "")
        cores = len(re.findall(r"^processor\s*:", cpuinfo, flags=re.MULTILINE))
        if cores == 0 and self._root.root == Path("/"):
            cores = os.cpu_count() or 0
        return CpuInfo(
            model=cpu_model_name(cpuinfo),
            cores=cores,
            max_freq_mhz=self._errors.attempt("cpu.max_freq", self._max_freq_mhz, None),
        )

    def _max_freq_mhz(self) -> float | None:
        khz = [
            int(self._root.read_value(str(path.relative_to(self._root.root))))
            for path in self._root.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq")
        ]
        if not khz:
            raise FileNotFoundError("no cpufreq cpuinfo_max_freq (cpufreq not exposed)")
        return max(khz) / 1000.0

    def memory(self) -> MemoryInfo:
        """MemTotal and MemAvailable from /proc/meminfo."""
        kib: dict[str, int] = {}
        for line in self._root.read_text(MEMINFO).splitlines():
            match = re.match(r"(\w+):\s+(\d+)\s*kB", line)
            if match:
                kib[match.group(1)] = int(match.group(2))
        if "MemTotal" not in kib:
            raise ValueError("MemTotal missing from /proc/meminfo")
        available = kib.get("MemAvailable", kib.get("MemFree", 0))
        return MemoryInfo(total_bytes=kib["MemTotal"] * 1024, available_bytes=available * 1024)

    def disk(self, state_dir: Path) -> DiskInfo:
        """Free space of the filesystem holding ``state_dir`` (or its nearest existing parent)."""
        path = state_dir
        while not path.exists() and path != path.parent:
            path = path.parent
        usage = shutil.disk_usage(path)
        return DiskInfo(path=str(state_dir), total_bytes=usage.total, free_bytes=usage.free)

    def thermal_zones(self) -> list[ThermalZone]:
        """Every thermal zone's type and temperature in °C (sysfs gives millidegrees)."""
        zones: list[ThermalZone] = []
        for zone in self._root.glob("sys/class/thermal/thermal_zone*"):
            rel = f"sys/class/thermal/{zone.name}"
            kind = self._errors.attempt(
                f"thermal.{zone.name}.type", partial(self._root.read_value, f"{rel}/type"), ""
            )
            temp = self._errors.attempt(
                f"thermal.{zone.name}.temp", partial(self._read_celsius, f"{rel}/temp"), None
            )
            zones.append(ThermalZone(name=zone.name, type=kind, temp_c=temp))
        return zones

    def _read_celsius(self, rel: str) -> float | None:
        return int(self._root.read_value(rel)) / 1000.0
