"""Settings packaging/systemd/fl-coordinator.service must keep (exposure: test_unit_security)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from tests.packaging.unit_file import Unit, parse_unit

from fl_coordinator import cli
from fl_coordinator.errors import EXIT_CONFIG, EXIT_PORT_IN_USE, EXIT_SUPERLINK

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "packaging" / "systemd" / "fl-coordinator.service"
EXEC_PATH = "/opt/fl-coordinator/bin/fl-coordinator"


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT_FILE.read_text())


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Unit", "Wants", "network-online.target"),
        ("Service", "Type", "notify"),
        ("Service", "NotifyAccess", "main"),
        ("Service", "Restart", "always"),
        ("Service", "KillMode", "mixed"),
        ("Service", "User", "fl-coordinator"),
        ("Service", "Group", "fl-coordinator"),
        ("Service", "StateDirectory", "fl-coordinator"),
        ("Service", "StateDirectoryMode", "0750"),
        ("Service", "ConfigurationDirectory", "fl-coordinator"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "CapabilityBoundingSet", ""),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "yes"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "PrivateDevices", "yes"),
        ("Service", "ProtectClock", "yes"),
        ("Service", "RestrictSUIDSGID", "yes"),
        ("Service", "SystemCallErrorNumber", "EPERM"),
        # torch's oneDNN JIT (CPU convolutions in evaluation and ONNX export) needs W+X pages.
        ("Service", "MemoryDenyWriteExecute", "no"),
        ("Install", "WantedBy", "multi-user.target"),
    ],
)
def test_required_setting(unit: Unit, section: str, key: str, value: str) -> None:
    assert unit.get((section, key)) == [value]


def test_exec_start_is_a_valid_serve_command(unit: Unit) -> None:
    [exec_start] = unit[("Service", "ExecStart")]
    program, *argv = shlex.split(exec_start)

    args = cli._parser().parse_args(argv)

    assert program == EXEC_PATH
    assert args.command == "serve"
    assert args.config == Path("/etc/fl-coordinator/coordinator.toml")
    # The state dir the service may write to is the one StateDirectory= creates.
    assert args.state_dir == Path("/var/lib/fl-coordinator")
    assert args.insecure is None


def test_watchdog_is_armed(unit: Unit) -> None:
    [watchdog] = unit[("Service", "WatchdogSec")]

    assert 10 <= int(watchdog) <= 120


def test_only_a_config_error_stops_the_restarts(unit: Unit) -> None:
    [statuses] = unit[("Service", "RestartPreventExitStatus")]

    assert set(statuses.split()) == {str(EXIT_CONFIG)}
    assert not {str(EXIT_PORT_IN_USE), str(EXIT_SUPERLINK)} & set(statuses.split())


def test_system_calls_are_an_allow_list_without_privileged_ones(unit: Unit) -> None:
    # The first SystemCallFilter= decides the mode: it has to be the allow-list.
    assert unit[("Service", "SystemCallFilter")] == ["@system-service", "~@privileged @resources"]


def test_no_extra_writable_paths(unit: Unit) -> None:
    assert ("Service", "ReadWritePaths") not in unit
