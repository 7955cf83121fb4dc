"""Tests for packaging/systemd/fl-edge-agent.service: systemd-analyze verify/security and keys."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from fl_edge_agent.errors import EXIT_CONFIG, EXIT_REJECTED

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "packaging" / "systemd" / "fl-edge-agent.service"
UNIT = UNIT_FILE.name
EXEC_PATH = "/opt/fl-edge-agent/bin/fl-edge-agent"
# What `verify --root` has to find besides our unit: the targets it names (network-online,
# multi-user) and those every service gets by DefaultDependencies= (sysinit, basic, shutdown).
# Users and groups (User=, SupplementaryGroups=) are not looked up by verify.
REQUIRED_TARGETS = (
    "sysinit.target",
    "basic.target",
    "shutdown.target",
    "network-online.target",
    "multi-user.target",
)
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))

Unit = dict[tuple[str, str], list[str]]


def parse_unit(text: str) -> Unit:
    """(section, key) -> every value assigned, in order, as systemd reads repeated keys."""
    unit: Unit = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        unit[(section, key.strip())].append(value.strip())
    return dict(unit)


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze is required (Debian package systemd)"
    return path


def _host_unit(name: str) -> Path:
    for directory in HOST_UNIT_DIRS:
        if (directory / name).is_file():
            return directory / name
    raise AssertionError(f"{name} not found in {HOST_UNIT_DIRS}")


def build_root(root: Path, unit_text: str) -> Path:
    """A minimal installed root: our unit, an executable ExecStart stub and the targets."""
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    (unit_dir / UNIT).write_text(unit_text)
    stub = root / EXEC_PATH.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    system_dir = root / "usr" / "lib" / "systemd" / "system"
    system_dir.mkdir(parents=True)
    for target in REQUIRED_TARGETS:
        shutil.copyfile(_host_unit(target), system_dir / target)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_systemd_analyze(), "verify", f"--root={root}", f"/etc/systemd/system/{UNIT}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT_FILE.read_text())


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("root"), UNIT_FILE.read_text())


def test_systemd_analyze_verify_is_clean(installed_root: Path) -> None:
    result = verify(installed_root)

    assert result.returncode == 0, result.stderr
    assert UNIT not in result.stderr, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_reports_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: verify warns (but exits 0) on an unknown key or a bad value."""
    broken = UNIT_FILE.read_text().replace("WatchdogSec=60", "WatchdogSecs=60")
    result = verify(build_root(tmp_path, broken))

    assert "Unknown key 'WatchdogSecs'" in result.stderr
    assert UNIT in result.stderr


def test_offline_security_exposure_below_5(installed_root: Path) -> None:
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", f"--root={installed_root}", UNIT],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(UNIT)}: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match.group(1)) < 5.0, result.stdout


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Unit", "Wants", "network-online.target"),
        ("Unit", "After", "network-online.target"),
        ("Service", "Type", "notify"),
        ("Service", "NotifyAccess", "main"),
        ("Service", "ExecStart", f"{EXEC_PATH} run --config /etc/fl-edge-agent/agent.toml"),
        ("Service", "WatchdogSec", "60"),
        ("Service", "Restart", "always"),
        ("Service", "KillMode", "control-group"),
        ("Service", "User", "fl-agent"),
        ("Service", "Group", "fl-agent"),
        ("Service", "StateDirectory", "fl-edge-agent"),
        ("Service", "StateDirectoryMode", "0750"),
        ("Service", "ConfigurationDirectory", "fl-edge-agent"),
        ("Service", "Environment", "FL_AGENT_STATE_DIR=/var/lib/fl-edge-agent"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "yes"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "RestrictSUIDSGID", "yes"),
        ("Service", "PrivateDevices", "no"),
        ("Service", "MemoryDenyWriteExecute", "no"),
        ("Install", "WantedBy", "multi-user.target"),
    ],
)
def test_required_setting(unit: Unit, section: str, key: str, value: str) -> None:
    assert unit.get((section, key)) == [value]


def test_restart_prevented_for_config_and_rejection_exits(unit: Unit) -> None:
    [statuses] = unit[("Service", "RestartPreventExitStatus")]

    assert {str(EXIT_CONFIG), str(EXIT_REJECTED)} <= set(statuses.split())


def test_gpu_device_nodes_stay_reachable(unit: Unit) -> None:
    """Any device allow-list (DeviceAllow=, or ProtectClock= which implies one) shuts out CUDA."""
    assert ("Service", "DeviceAllow") not in unit
    assert ("Service", "DevicePolicy") not in unit
    assert ("Service", "ProtectClock") not in unit
    [groups] = unit[("Service", "SupplementaryGroups")]
    assert "video" in groups.split()


def test_no_extra_writable_paths(unit: Unit) -> None:
    assert ("Service", "ReadWritePaths") not in unit
