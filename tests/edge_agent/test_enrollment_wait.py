"""An unenrolled service waits for `enroll` (READY, a status naming the fix) instead of failing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.edge_agent.test_enrolled_agent import _write_identity

from fl_coordinator.local_fleet import program
from fl_edge_agent.agent_status import read_status
from fl_edge_agent.enrolled_identity import IdentityFiles
from fl_edge_agent.enrollment_wait import wait_for_enrollment
from fl_edge_agent.settings import AgentSettings
from fl_shared.systemd_notifier import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        yield sock, str(path)


def _drain(sock: socket.socket) -> list[str]:
    got: list[str] = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            return got


def _settings(state_dir: Path) -> AgentSettings:
    return AgentSettings(name="edge-01", state_dir=state_dir, coordinator_url="https://c:8443")


def _waiter(
    state: Path, notify_path: str, stop: threading.Event, found: list[object]
) -> threading.Thread:
    """A started thread running wait_for_enrollment; its result is appended to ``found``."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_path})
    thread = threading.Thread(
        target=lambda: found.append(
            wait_for_enrollment(_settings(state), stop, notifier, poll_interval_s=0.05)
        )
    )
    thread.start()
    return thread


def test_waits_ready_until_an_identity_appears(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    state = tmp_path / "state"
    found: list[object] = []
    stop = threading.Event()
    waiter = _waiter(state, path, stop, found)
    try:
        time.sleep(0.3)
        assert waiter.is_alive() and not found
        status = read_status(state)
        assert status is not None and status.state == "waiting_for_enrollment"
        assert status.is_live() and not status.registered
        _write_identity(state, "dev-late")
        waiter.join(5)
    finally:
        stop.set()
        waiter.join(5)
    [enrolled] = found
    assert enrolled is not None and enrolled.device_id == "dev-late"  # type: ignore[attr-defined]
    messages = _drain(sock)
    assert messages[0].startswith("READY=1\nSTATUS=waiting for enrollment: ")
    assert "fl-edge-agent enroll" in messages[0]
    assert messages[-1] == "STATUS=enrolled: starting"


def test_a_stop_while_waiting_returns_none_and_says_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    stop = threading.Event()
    stop.set()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert wait_for_enrollment(_settings(tmp_path), stop, notifier, poll_interval_s=0.05) is None
    assert _drain(sock)[-1].startswith("STOPPING=1")


def test_an_unreadable_identity_is_reported_and_waited_out(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    files = IdentityFiles(tmp_path)
    files.dir.mkdir(parents=True)
    files.record.write_text("{not json")  # present, so "enrolled", but damaged
    found: list[object] = []
    stop = threading.Event()
    waiter = _waiter(tmp_path, path, stop, found)
    try:
        time.sleep(0.3)
        assert waiter.is_alive(), "a damaged identity must not end the service"
        _write_identity(tmp_path, "dev-fixed")  # e.g. `enroll --force`
        waiter.join(5)
    finally:
        stop.set()
        waiter.join(5)
    assert [getattr(e, "device_id", None) for e in found] == ["dev-fixed"]
    damaged = [m for m in _drain(sock) if "is damaged" in m]
    assert len(damaged) == 1, "the same problem is reported once, not every poll"


def test_the_command_waits_under_systemd_and_stops_cleanly(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_AGENT_")}
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    argv = [program("fl-edge-agent"), "run", "--wait-for-enrollment", "--state-dir", str(state),
            "--coordinator-url", "https://127.0.0.1:9"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        messages: list[str] = []
        while not any(m.startswith("READY=1") for m in messages) and time.monotonic() < deadline:
            messages += _drain(sock)
        assert any(m.startswith("READY=1\nSTATUS=waiting for enrollment") for m in messages)
        time.sleep(1.2)
        assert "WATCHDOG=1" in _drain(sock), "the watchdog is fed while waiting"
        shown = subprocess.run(
            [program("fl-edge-agent"), "status", "--json", "--state-dir", str(state)],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "waiting_for_enrollment"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_without_the_flag_an_unenrolled_run_still_fails_fast(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_AGENT_")}
    done = subprocess.run(
        [program("fl-edge-agent"), "run", "--state-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not enrolled" in done.stderr and "fl-edge-agent enroll" in done.stderr
