"""Both systemd units, installed in a fake root: `systemd-analyze verify` is clean, exposure ≤ 4.0.

Needs systemd-analyze (Debian package ``systemd``); it reads the fake root only, no systemd has to
run. The units' key settings are checked in test_systemd_unit.py and test_coordinator_unit.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "packaging" / "systemd"
MAX_EXPOSURE = 4.0
# What `verify --root` has to find besides our unit: the targets it names (network-online,
# multi-user) and those every service gets by DefaultDependencies= (sysinit, basic, shutdown).
# Users and groups (User=) are not looked up by verify.
REQUIRED_TARGETS = (
    "sysinit.target",
    "basic.target",
    "shutdown.target",
    "network-online.target",
    "multi-user.target",
)
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


@dataclass(frozen=True)
class PackagedUnit:
    name: str
    exec_path: str

    @property
    def text(self) -> str:
        return (UNIT_DIR / self.name).read_text()


UNITS = [
    PackagedUnit("fl-coordinator.service", "/opt/fl-coordinator/bin/fl-coordinator"),
    PackagedUnit("fl-edge-agent.service", "/opt/fl-edge-agent/bin/fl-edge-agent"),
]


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze is required (Debian package systemd)"
    return path


def _host_unit(name: str) -> Path:
    for directory in HOST_UNIT_DIRS:
        if (directory / name).is_file():
            return directory / name
    raise AssertionError(f"{name} not found in {HOST_UNIT_DIRS}")


def build_root(root: Path, unit: PackagedUnit, unit_text: str | None = None) -> Path:
    """The unit where the .deb installs it, an executable ExecStart stub, and the targets."""
    unit_dir = root / "lib" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    (unit_dir / unit.name).write_text(unit.text if unit_text is None else unit_text)
    stub = root / unit.exec_path.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    system_dir = root / "usr" / "lib" / "systemd" / "system"
    system_dir.mkdir(parents=True)
    for target in REQUIRED_TARGETS:
        shutil.copyfile(_host_unit(target), system_dir / target)
    return root


def verify(root: Path, unit: PackagedUnit) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_systemd_analyze(), "verify", f"--root={root}", f"/lib/systemd/system/{unit.name}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exposure(root: Path, unit: PackagedUnit) -> float:
    """The "Overall exposure level" of `systemd-analyze security --offline=yes`."""
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", f"--root={root}", unit.name],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pattern = rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d+)"
    match = re.search(pattern, result.stdout)
    assert match is not None, result.stdout
    return float(match.group(1))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_is_clean(unit: PackagedUnit, tmp_path: Path) -> None:
    result = verify(build_root(tmp_path, unit), unit)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_is_at_most_4(unit: PackagedUnit, tmp_path: Path) -> None:
    score = exposure(build_root(tmp_path, unit), unit)

    assert score <= MAX_EXPOSURE, f"{unit.name}: exposure {score} > {MAX_EXPOSURE}"


def test_verify_reports_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: verify warns (but exits 0) on an unknown key."""
    unit = UNITS[0]
    broken = unit.text.replace("WatchdogSec=", "WatchdogSecs=")
    result = verify(build_root(tmp_path, unit, broken), unit)

    assert "Unknown key 'WatchdogSecs'" in result.stderr
    assert unit.name in result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_without_the_hardening_section_fails(unit: PackagedUnit, tmp_path: Path) -> None:
    """The bound is not vacuous: the same unit without its hardening scores above 4.0."""
    head, _, tail = unit.text.partition("# --- Hardening")
    bare = head + "\n[Install]" + tail.partition("[Install]")[2]

    assert exposure(build_root(tmp_path, unit, bare), unit) > MAX_EXPOSURE
