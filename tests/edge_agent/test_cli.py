"""Tests for the real `fl-edge-agent` console script: refusals before anything starts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FL_EDGE_AGENT = Path("/work/main/.venv/bin/fl-edge-agent")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FL_AGENT_")}
    return subprocess.run(
        [str(FL_EDGE_AGENT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_console_script_is_installed() -> None:
    assert FL_EDGE_AGENT.is_file()
    assert os.access(FL_EDGE_AGENT, os.X_OK)


def test_without_insecure_refuses_with_one_tls_line(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = _run(
        "run",
        "--state-dir",
        str(state_dir),
        "--coordinator-url",
        "http://127.0.0.1:9",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "TLS" in lines[0]
    assert "--insecure" in lines[0]
    assert lines[0].startswith("fl-edge-agent: ")
    assert not state_dir.exists(), "nothing may be created before the refusal"


def test_invalid_partition_exits_2_naming_partition_id(tmp_path: Path) -> None:
    result = _run(
        "run",
        "--partition-id",
        "5",
        "--num-partitions",
        "2",
        "--insecure",
        "--state-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "partition_id" in lines[0]
    assert lines[0].startswith("fl-edge-agent: invalid setting")
    assert "Traceback" not in result.stderr


def test_out_of_range_port_names_the_field(tmp_path: Path) -> None:
    result = _run(
        "run", "--supernode-port", "0", "--insecure", "--state-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "supernode_port" in lines[0]


def test_unreadable_config_exits_2_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[agent\n")
    result = _run("run", "--config", str(broken), "--insecure", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot read config" in lines[0]
