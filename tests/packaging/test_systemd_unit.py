"""Settings packaging/systemd/fl-edge-agent.service must keep (exposure: test_unit_security)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.packaging.unit_file import Unit, parse_unit

from fl_edge_agent.errors import EXIT_CONFIG, EXIT_REJECTED

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "packaging" / "systemd" / "fl-edge-agent.service"
EXEC_PATH = "/opt/fl-edge-agent/bin/fl-edge-agent"


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT_FILE.read_text())


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Unit", "Wants", "network-online.target"),
        ("Unit", "After", "network-online.target"),
        ("Service", "Type", "notify"),
        ("Service", "NotifyAccess", "main"),
        (
            "Service",
            "ExecStart",
            f"{EXEC_PATH} run --wait-for-enrollment --config /etc/fl-edge-agent/agent.toml",
        ),
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
        ("Service", "ProtectProc", "invisible"),
        ("Service", "RemoveIPC", "yes"),
        ("Service", "SystemCallErrorNumber", "EPERM"),
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
    # The device nodes' groups come from fl-agent's own membership (postinst adds it to video and
    # render where they exist): a SupplementaryGroups= naming a missing group fails with 216/GROUP.
    assert ("Service", "SupplementaryGroups") not in unit
    # Neither a private /proc subset (the probes read /proc/cpuinfo, meminfo, stat) nor a user
    # namespace (the GPU nodes' group would map to nobody).
    assert ("Service", "ProcSubset") not in unit
    assert ("Service", "PrivateUsers") not in unit


def test_system_calls_are_an_allow_list_without_privileged_ones(unit: Unit) -> None:
    # The first SystemCallFilter= decides the mode: it has to be the allow-list.
    assert unit[("Service", "SystemCallFilter")] == ["@system-service", "~@privileged"]


def test_no_extra_writable_paths(unit: Unit) -> None:
    assert ("Service", "ReadWritePaths") not in unit
