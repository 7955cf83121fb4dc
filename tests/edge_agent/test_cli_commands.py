"""`fl-edge-agent config check` and `fl-edge-agent status` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from fl_coordinator.local_fleet import program
from fl_edge_agent.agent_status import AgentStatus, write_status


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
