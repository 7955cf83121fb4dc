"""JetsonProbe: board, L4T/JetPack release, power mode and GPU clock of an NVIDIA Jetson."""

from __future__ import annotations

import re
from typing import Final

from fl_edge_agent.dpkg_status import read_dpkg_versions, upstream_version
from fl_edge_agent.probe_error_log import ProbeErrorLog
from fl_edge_agent.system_root import SystemRoot
from fl_shared.capabilities import FrequencyRange, JetsonInfo

# L4T (Jetson Linux) release -> JetPack release, from NVIDIA's JetPack archive.
JETPACK_BY_L4T: Final[dict[str, str]] = {
    "32.3.1": "4.3",
    "32.4.2": "4.4 DP",
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "34.1.0": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}

DT_DIRS: Final[tuple[str, ...]] = ("proc/device-tree", "sys/firmware/devicetree/base")
NV_TEGRA_RELEASE: Final[str] = "etc/nv_tegra_release"
NVPMODEL_STATUS: Final[str] = "var/lib/nvpmodel/status"
NVPMODEL_CONF: Final[str] = "etc/nvpmodel.conf"
L4T_CORE_PACKAGE: Final[str] = "nvidia-l4t-core"
# devfreq device names of the integrated GPU: Nano, Xavier, Orin (L4T 35, L4T 36).
GPU_DEVFREQ_NAMES: Final[tuple[str, ...]] = ("gpu", "gv11b", "ga10b", "gp10b", "gm20b")

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)")
_PART_RE = re.compile(r"p(\d{4})-(\d{4})")
_BOARDID_RE = re.compile(r"(\d{4})[-:](\d{4})")
_PMODE_RE = re.compile(r"pmode:\s*(\d+)")
_POWER_MODEL_RE = re.compile(r"<\s*POWER_MODEL\s+ID\s*=\s*(\d+)\s+NAME\s*=\s*([^\s>]+)")


def jetpack_for_l4t(l4t_release: str) -> str | None:
    """JetPack release shipping ``l4t_release`` (e.g. "35.4.1" -> "5.1.2"), None when unknown."""
    return JETPACK_BY_L4T.get(l4t_release)


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R32 (release), REVISION: 7.1, ...`` -> ``32.7.1``."""
    match = _RELEASE_RE.search(text.splitlines()[0] if text else "")
    return ".".join(match.groups()) if match else None


def module_part_number(compatible: list[str]) -> str | None:
    """The module's P-number from ``compatible``: ``nvidia,p3509-0000+p3668-0001`` -> p3668-0001.

    A board entry is ``carrier+module``; a bare ``nvidia,pNNNN-NNNN`` entry names the module.
    """
    for entry in compatible:
        board = entry.split(",", 1)[-1]
        if "+" in board:
            match = _PART_RE.search(board.rsplit("+", 1)[-1])
            if match:
                return match.group(0)
    for entry in compatible:
        match = _PART_RE.fullmatch(entry.split(",", 1)[-1])
        if match:
            return match.group(0)
    return None


def soc_name(compatible: list[str]) -> str | None:
    """``nvidia,tegra194`` -> ``tegra194``."""
    for entry in compatible:
        vendor, _, chip = entry.partition(",")
        if vendor == "nvidia" and chip.startswith("tegra"):
            return chip
    return None


class JetsonProbe:
    """Reads Jetson facts under a root; each unreadable fact becomes a probe error."""

    def __init__(self, root: SystemRoot, errors: ProbeErrorLog) -> None:
        self._root = root
        self._errors = errors

    def device_tree_dir(self) -> str | None:
        """Where the device tree is exposed, or None on machines without one (x86)."""
        return next((d for d in DT_DIRS if self._root.exists(f"{d}/model")), None)

    def probe(self) -> JetsonInfo | None:
        """JetsonInfo, or None when this is not an NVIDIA Tegra board."""
        dt = self.device_tree_dir()
        if dt is None:
            return None
        model = self._errors.attempt(
            "jetson.model", lambda: self._root.read_value(f"{dt}/model"), ""
        )
        compatible: list[str] = self._errors.attempt(
            "jetson.compatible", lambda: self._root.read_strings(f"{dt}/compatible"), []
        )
        if not (soc_name(compatible) or "nvidia" in model.lower() or "jetson" in model.lower()):
            return None
        l4t = self._errors.attempt("jetson.l4t_release", self.l4t_release, None)
        unknown_mode: tuple[int | None, str | None] = (None, None)
        mode_id, mode_name = self._errors.attempt(
            "jetson.power_mode", self.power_mode, unknown_mode
        )
        return JetsonInfo(
            model=model,
            compatible=compatible,
            soc=soc_name(compatible),
            module_part_number=module_part_number(compatible) or self._boardid_part(dt),
            l4t_release=l4t,
            jetpack=jetpack_for_l4t(l4t) if l4t else None,
            power_mode_id=mode_id,
            power_mode_name=mode_name,
            gpu_freq_hz=self._errors.attempt("jetson.gpu_freq", self.gpu_freq, None),
        )

    def _boardid_part(self, dt: str) -> str | None:
        path = f"{dt}/nvidia,boardids"
        if not self._root.exists(path):
            return None
        match = _BOARDID_RE.search(self._root.read_value(path))
        return f"p{match.group(1)}-{match.group(2)}" if match else None

    def l4t_release(self) -> str | None:
        """From /etc/nv_tegra_release, else the nvidia-l4t-core package version."""
        if self._root.exists(NV_TEGRA_RELEASE):
            release = parse_nv_tegra_release(self._root.read_text(NV_TEGRA_RELEASE))
            if release:
                return release
        version = read_dpkg_versions(self._root).get(L4T_CORE_PACKAGE)
        if version is None:
            raise LookupError(f"no {NV_TEGRA_RELEASE} and no {L4T_CORE_PACKAGE} package")
        return upstream_version(version)

    def power_mode(self) -> tuple[int | None, str | None]:
        """nvpmodel mode id from its status file and that mode's name from nvpmodel.conf."""
        match = _PMODE_RE.search(self._root.read_text(NVPMODEL_STATUS))
        if match is None:
            raise ValueError(f"no pmode in {NVPMODEL_STATUS}")
        mode_id = int(match.group(1))
        names: dict[int, str] = {}
        if self._root.exists(NVPMODEL_CONF):
            for found in _POWER_MODEL_RE.finditer(self._root.read_text(NVPMODEL_CONF)):
                names[int(found.group(1))] = found.group(2)
        return mode_id, names.get(mode_id)

    def gpu_freq(self) -> FrequencyRange | None:
        """min/max/cur of the integrated GPU's devfreq device, in Hz."""
        for device in self._root.glob("sys/class/devfreq/*"):
            suffix = device.name.rsplit(".", 1)[-1]
            if suffix not in GPU_DEVFREQ_NAMES:
                continue

            def read_hz(name: str, device_dir: str = device.name) -> int | None:
                rel = f"sys/class/devfreq/{device_dir}/{name}"
                return int(self._root.read_value(rel)) if self._root.exists(rel) else None

            return FrequencyRange(
                min=read_hz("min_freq"), max=read_hz("max_freq"), cur=read_hz("cur_freq")
            )
        raise LookupError("no GPU devfreq device under /sys/class/devfreq")
