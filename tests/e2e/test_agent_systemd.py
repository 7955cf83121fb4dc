"""The real agent speaks systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fl_coordinator.local_fleet import LocalFleet

pytestmark = pytest.mark.e2e


def _collect(sock: socket.socket, until: bytes, timeout_s: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            break
        if until in got[-1]:
            break
    return got


def test_agent_notifies_systemd_through_its_life(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, LocalFleet(tmp_path) as fleet:
        sock.bind(str(path))
        fleet.start_coordinator()
        agent = fleet.start_agent(
            0, 1, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        )
        # READY=1 may come early too ("waiting for the coordinator at ..." when the first
        # registration fails); the one that matters names the device and its SuperNode.
        startup = _collect(sock, b"SuperNode running", 90)
        ready = [m for m in startup if m.startswith(b"READY=1")]
        assert ready, startup
        assert b"STATUS=device dev-" in ready[-1] and b"SuperNode running" in ready[-1]

        # WatchdogSec/2 = 1 s: the main loop pings about once a second.
        later = _collect(sock, b"never", 3.5)
        assert 2 <= later.count(b"WATCHDOG=1") <= 4

        assert agent.stop(grace_s=20) == 0
        closing = _collect(sock, b"STOPPING=1", 5)
        assert any(m.startswith(b"STOPPING=1") for m in closing), closing
