"""`fl-coordinator` as a user starts it: clear one-line errors and exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from fl_coordinator.errors import EXIT_CONFIG, EXIT_PORT_IN_USE
from fl_coordinator.local_fleet import free_port, program


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("fl-coordinator"), "serve", "--state-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_port_in_use_is_one_line_and_exit_code(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(
            tmp_path, "--insecure", "--port", str(port), "--superlink-port", str(free_port())
        )
    assert result.returncode == EXIT_PORT_IN_USE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"127.0.0.1:{port} is already in use" in lines[0] and "--port" in lines[0]
    assert not (tmp_path / "superlink").exists()  # nothing was started


def test_superlink_port_in_use_names_its_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(
            tmp_path, "--insecure", "--port", str(free_port()), "--superlink-port", str(port)
        )
    assert result.returncode == EXIT_PORT_IN_USE
    assert "--superlink-port" in result.stderr and result.stderr.count("\n") == 1


def test_plain_http_needs_the_explicit_insecure_flag(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--port", str(free_port()))
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.count("\n") == 1 and "--insecure" in result.stderr


def test_invalid_setting_names_it(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--insecure", "--port", "70000")
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.startswith("fl-coordinator: invalid setting port")


def test_a_bad_model_keep_last_stops_serve_with_the_fix(tmp_path: Path) -> None:
    result = subprocess.run(
        [program("fl-coordinator"), "serve", "--state-dir", str(tmp_path), "--insecure"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"FL_COORDINATOR_MODEL_KEEP_LAST": "0"},
    )
    assert result.returncode == EXIT_CONFIG and result.stderr.count("\n") == 1
    assert result.stderr.startswith("fl-coordinator: invalid setting model_keep_last")
    assert "FL_COORDINATOR_MODEL_KEEP_LAST" in result.stderr and "1 or more" in result.stderr
    assert not (tmp_path / "superlink").exists()  # nothing was started


def test_config_file_and_env_precedence(tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text('[coordinator]\nport = 1234\nlog_level = "debug"\n')
    code = (
        "from pathlib import Path; from fl_coordinator.settings import CoordinatorSettings as S;"
        f"s = S.load(Path({str(config)!r}), 'coordinator', log_level='warning');"
        "print(s.port, s.log_level, s.heartbeat_interval_s)"
    )
    env = {"FL_COORDINATOR_PORT": "4321", "FL_COORDINATOR_HEARTBEAT_INTERVAL_S": "2", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["4321", "warning", "2.0"]


def test_serving_on_a_host_the_certificate_does_not_name_stops_with_the_fix(
    tmp_path: Path,
) -> None:
    init = subprocess.run(
        [program("fl-coordinator"), "init", "--state-dir", str(tmp_path), "--host", "coord.test"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    # 192.0.2.7 (TEST-NET-1) is where the API would listen, and what the ServerApp reports to.
    result = _serve(tmp_path, "--host", "192.0.2.7", "--port", str(free_port()))
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.count("\n") == 1, result.stderr
    assert "does not name 192.0.2.7" in result.stderr and "coord.test" in result.stderr
    assert f"fl-coordinator init --state-dir {tmp_path} --host 192.0.2.7" in result.stderr
    assert not (tmp_path / "superlink").exists()  # nothing was started
