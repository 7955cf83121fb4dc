"""Tests for fl_shared.systemd_notifier against real AF_UNIX datagram sockets."""

from __future__ import annotations

import array
import os
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fl_shared import systemd_notifier as notifier_module
from fl_shared.systemd_notifier import SystemdNotifier


class RecordingLog:
    """Stands in for the module's structlog logger and records each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def emit(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return emit


class Receiver:
    """The systemd side: a bound datagram socket and the NOTIFY_SOCKET value that reaches it."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.notify_socket, **extra}

    def recv(self) -> bytes:
        self.sock.settimeout(5.0)
        return self.sock.recv(4096)

    def pending(self) -> list[bytes]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        datagrams = []
        try:
            while True:
                datagrams.append(self.sock.recv(4096))
        except BlockingIOError:
            return datagrams


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte limit of sockaddr_un.sun_path.
    with tempfile.TemporaryDirectory(prefix="sdnotify-") as name:
        yield Path(name)


@pytest.fixture
def path_receiver(socket_dir: Path) -> Iterator[Receiver]:
    path = socket_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield Receiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"fl-shared-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        yield Receiver(sock, "@" + name)


@pytest.fixture
def recording_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    log = RecordingLog()
    monkeypatch.setattr(notifier_module, "log", log)
    return log


def test_ready_with_status_is_one_datagram(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env())

    assert notifier.enabled
    assert notifier.ready("enrolled as dev-1") is True

    assert path_receiver.recv() == b"READY=1\nSTATUS=enrolled as dev-1"
    assert path_receiver.pending() == []


def test_ready_without_status(path_receiver: Receiver) -> None:
    SystemdNotifier(path_receiver.env()).ready()

    assert path_receiver.recv() == b"READY=1"


def test_abstract_namespace_socket(abstract_receiver: Receiver) -> None:
    notifier = SystemdNotifier(abstract_receiver.env())

    assert notifier.ready("up") is True

    assert abstract_receiver.recv() == b"READY=1\nSTATUS=up"


def test_status_watchdog_and_stopping(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env())

    notifier.status("supernode running")
    notifier.watchdog()
    notifier.stopping("stopping supernode")
    notifier.stopping()

    assert [path_receiver.recv() for _ in range(4)] == [
        b"STATUS=supernode running",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=stopping supernode",
        b"STOPPING=1",
    ]


def test_status_newlines_cannot_inject_assignments(path_receiver: Receiver) -> None:
    SystemdNotifier(path_receiver.env()).status("bad\nREADY=1")

    assert path_receiver.recv() == b"STATUS=bad READY=1"


def test_default_environment_is_os_environ(
    path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.notify_socket)

    SystemdNotifier().ready()

    assert path_receiver.recv() == b"READY=1"


def test_watchdog_interval_is_half_of_watchdog_usec(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env(WATCHDOG_USEC="2000000"))

    assert notifier.watchdog_interval_s == 1.0


def test_watchdog_for_this_pid_is_honoured(path_receiver: Receiver) -> None:
    env = path_receiver.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid()))

    assert SystemdNotifier(env).watchdog_interval_s == 1.0


def test_watchdog_for_another_pid_is_disabled(path_receiver: Receiver) -> None:
    env = path_receiver.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid() + 1))
    notifier = SystemdNotifier(env)

    assert notifier.watchdog_interval_s is None
    assert notifier.watchdog_due(100.0) is False
    assert notifier.maybe_watchdog(100.0) is False
    assert path_receiver.pending() == []


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_unusable_watchdog_usec_means_no_watchdog(path_receiver: Receiver, usec: str) -> None:
    assert SystemdNotifier(path_receiver.env(WATCHDOG_USEC=usec)).watchdog_interval_s is None


def test_no_watchdog_requested(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env())

    assert notifier.watchdog_interval_s is None
    assert notifier.maybe_watchdog(0.0) is False
    assert path_receiver.pending() == []


def test_maybe_watchdog_sends_at_most_once_per_interval(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env(WATCHDOG_USEC="2000000"))

    sent = {now: notifier.maybe_watchdog(now) for now in (100.0, 100.4, 100.99, 101.0, 101.5)}
    sent[104.0] = notifier.maybe_watchdog(104.0)

    assert sent == {
        100.0: True,
        100.4: False,
        100.99: False,
        101.0: True,
        101.5: False,
        104.0: True,
    }
    assert path_receiver.pending() == [b"WATCHDOG=1"] * 3


def test_watchdog_due_does_not_send(path_receiver: Receiver) -> None:
    notifier = SystemdNotifier(path_receiver.env(WATCHDOG_USEC="2000000"))

    assert notifier.watchdog_due(5.0) is True
    assert notifier.watchdog_due(5.0) is True
    assert path_receiver.pending() == []


def test_without_notify_socket_everything_is_a_no_op(recording_log: RecordingLog) -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "2000000"})

    assert notifier.enabled is False
    assert notifier.watchdog_interval_s is None
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.maybe_watchdog(1.0) is False
    assert notifier.stopping() is False
    assert recording_log.events == []


def test_removed_socket_is_logged_not_raised(socket_dir: Path, recording_log: RecordingLog) -> None:
    path = socket_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    path.unlink()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})

    assert notifier.ready("up") is False
    assert notifier.maybe_watchdog(10.0) is False
    # The failed ping still counts: a gone socket is not hammered every loop iteration.
    assert notifier.maybe_watchdog(10.1) is False

    assert [(level, event) for level, event, _ in recording_log.events] == [
        ("warning", "systemd_notify_failed"),
        ("warning", "systemd_notify_failed"),
    ]
    fields = recording_log.events[0][2]
    assert fields["message"] == "READY=1"
    assert fields["notify_socket"] == str(path)
    assert "No such file" in fields["error"]


def test_a_full_receive_queue_times_out_instead_of_hanging(
    path_receiver: Receiver, recording_log: RecordingLog
) -> None:
    """A reader that fell behind must not block the caller's loop: the send gives up, logged."""
    notifier = SystemdNotifier(path_receiver.env(), send_timeout_s=0.05)

    queued = 0
    while notifier.watchdog():
        queued += 1
        assert queued < 100_000, "the receive queue never filled"

    assert queued >= 1
    [(level, event, fields)] = recording_log.events
    assert (level, event, fields["message"]) == ("warning", "systemd_notify_failed", "WATCHDOG=1")
    assert "timed out" in fields["error"]
    # Once the reader catches up, notifications flow again.
    assert len(path_receiver.pending()) == queued
    assert notifier.stopping() is True
    assert path_receiver.recv() == b"STOPPING=1"


def test_unsupported_socket_address_disables(recording_log: RecordingLog) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})

    assert notifier.enabled is False
    assert notifier.ready() is False
    assert [event for _, event, _ in recording_log.events] == ["systemd_notify_socket_unsupported"]


def _recv_with_sender_pid(sock: socket.socket) -> tuple[bytes, int]:
    """One datagram and the sender's pid from SCM_CREDENTIALS, as systemd reads it."""
    sock.settimeout(10.0)
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            creds = array.array("i")
            creds.frombytes(payload[: struct.calcsize("3i")])
            return data, creds[0]
    raise AssertionError("no SCM_CREDENTIALS on the datagram")


def test_ready_from_a_child_process(path_receiver: Receiver) -> None:
    path_receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    child_code = textwrap.dedent(
        """
        from fl_shared.systemd_notifier import SystemdNotifier

        assert SystemdNotifier().ready("child up")
        """
    )
    env = {**os.environ, "NOTIFY_SOCKET": path_receiver.notify_socket}

    with subprocess.Popen(
        [sys.executable, "-c", child_code], env=env, stderr=subprocess.PIPE, text=True
    ) as child:
        _, stderr = child.communicate(timeout=60)

    assert child.returncode == 0, stderr
    data, sender_pid = _recv_with_sender_pid(path_receiver.sock)
    assert data == b"READY=1\nSTATUS=child up"
    assert sender_pid == child.pid != os.getpid()
