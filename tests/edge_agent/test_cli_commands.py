"""`fl-edge-agent config check` and `fl-edge-agent status` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fl_coordinator.local_fleet import program
from fl_edge_agent.agent_status import AgentStatus, write_status
from fl_edge_agent.enrolled_identity import EnrollmentRecord, IdentityFiles
from fl_shared.atomic_write import atomic_write_bytes


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("fl-edge-agent"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_config_check_shows_effective_settings(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nname = "jetson-9"\ninsecure = true\nsupernode_port = 9200\n')
    result = _agent("config", "check", "--config", str(config), "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "name = jetson-9" in lines and "supernode_port = 9200" in lines
    assert f"state_dir = {tmp_path}" in lines and lines[-1] == "config ok"


def test_config_check_names_the_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\ninsecure = true\nsupernode_port = 99999\n")
    result = _agent("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "supernode_port" in result.stderr


def _status(pid: int, tmp_path: Path) -> None:
    write_status(
        tmp_path,
        AgentStatus(
            pid=pid,
            device_id="dev-42",
            name="jetson-9",
            coordinator_url="http://coord:8080",
            registered=True,
            supernode_state="running",
            supernode_restarts=2,
            supernode_pid=None,
            activity="training run 3 round 1",
            last_heartbeat_ack_at=datetime(2026, 1, 1, tzinfo=UTC),
            last_error=None,
            updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )


def test_status_of_a_running_agent(tmp_path: Path) -> None:
    _status(os.getpid(), tmp_path)  # this test process stands in for the live agent
    result = _agent("status", "--insecure", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "dev-42 (jetson-9)" in result.stdout
    assert "running, 2 restarts" in result.stdout and "training run 3 round 1" in result.stdout
    as_json = json.loads(
        _agent("status", "--insecure", "--state-dir", str(tmp_path), "--json").stdout
    )
    assert as_json["running"] is True and as_json["device_id"] == "dev-42"


def test_status_of_a_dead_agent_and_of_none(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    _status(dead.pid, tmp_path)
    result = _agent("status", "--insecure", "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "NOT running" in result.stdout

    empty = _agent("status", "--state-dir", str(tmp_path / "nothing"))  # no TLS question here
    assert empty.returncode == 1
    assert empty.stderr.count("\n") == 1 and "--state-dir" in empty.stderr


def _enrolled(state_dir: Path, coordinator_url: str = "https://fleet.example:8443") -> None:
    files = IdentityFiles(state_dir)
    record = EnrollmentRecord(
        device_id="dev-77",
        node_id=77,
        coordinator_url=coordinator_url,
        superlink_address="fleet.example:9092",
        enrolled_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    atomic_write_bytes(files.private_key, b"key", mode=0o600)
    atomic_write_bytes(files.ca, b"ca", mode=0o644)
    atomic_write_bytes(files.credential, b"fld_secret\n", mode=0o600)
    atomic_write_bytes(files.record, record.model_dump_json().encode(), mode=0o644)


def test_config_check_of_an_enrolled_device_needs_no_insecure(tmp_path: Path) -> None:
    _enrolled(tmp_path)
    result = _agent("config", "check", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "coordinator_url = https://fleet.example:8443" in lines
    assert "superlink = fleet.example:9092" in lines
    assert any(line.startswith("enrolled = device dev-77, node 77") for line in lines)
    assert "fld_secret" not in result.stdout


def test_unenrolled_config_check_says_development_mode(tmp_path: Path) -> None:
    result = _agent("config", "check", "--insecure", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "enrolled = no (development mode" in result.stdout


def test_enrolled_device_refuses_a_plain_http_coordinator_url(tmp_path: Path) -> None:
    _enrolled(tmp_path)
    result = _agent(
        "run", "--state-dir", str(tmp_path), "--coordinator-url", "http://fleet.example:8080"
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "in clear" in result.stderr
    assert not (tmp_path / "status.json").exists()


def test_damaged_identity_exits_2_naming_the_fix(tmp_path: Path) -> None:
    _enrolled(tmp_path)
    IdentityFiles(tmp_path).credential.unlink()
    result = _agent("run", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "damaged" in result.stderr and "enroll --coordinator" in result.stderr


def test_status_of_a_revoked_agent(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_status(
        tmp_path,
        AgentStatus(
            pid=dead.pid,
            state="revoked",
            device_id="dev-42",
            name="jetson-9",
            coordinator_url="https://coord:8443",
            registered=False,
            supernode_state="stopped",
            supernode_restarts=0,
            supernode_pid=None,
            activity="idle",
            last_heartbeat_ack_at=None,
            last_error="the coordinator no longer accepts this device's credential",
            updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    result = _agent("status", "--state-dir", str(tmp_path))
    assert result.returncode == 1
    assert "NOT running" in result.stdout and "revoked" in result.stdout
    assert (
        json.loads(_agent("status", "--json", "--state-dir", str(tmp_path)).stdout)["state"]
        == "revoked"
    )


def test_config_check_works_before_enrollment(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nname = "jetson-10"\n')
    result = _agent("config", "check", "--config", str(config), "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "enrolled = no (run: fl-edge-agent enroll --coordinator URL --token TOKEN)" in (
        result.stdout.splitlines()
    )


def test_status_says_permission_denied_rather_than_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fl_edge_agent import cli

    def _denied(_state_dir: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli, "read_status", _denied)
    assert cli.main(["status", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "permission denied" in err and "sudo fl-edge-agent status" in err


def test_an_agent_without_torch_says_it_cannot_train_and_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from fl_edge_agent import cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real_find_spec(name, *a),
    )
    cli._warn_without_torch()
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "torch_missing" in logged and "uv pip install" in logged


def test_an_agent_with_torch_says_nothing_about_it(capsys: pytest.CaptureFixture[str]) -> None:
    from fl_edge_agent import cli

    cli._warn_without_torch()  # the dev venv has torch
    out = capsys.readouterr()
    assert "torch_missing" not in out.out + out.err
