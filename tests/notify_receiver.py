"""The systemd side of sd_notify for tests: a bound datagram socket, read on a thread like PID 1."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NotifyCollector:
    """Reads every datagram sent to ``notify_socket`` as it arrives, with its arrival time.

    Reading at once matters: an unread AF_UNIX datagram queue holds only
    net.unix.max_dgram_qlen (10) messages, and a full one makes the sender wait.
    """

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.notify_socket = notify_socket
        self._sock = sock
        self._received: list[tuple[float, bytes]] = []
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-collector", daemon=True)

    def start(self) -> None:
        self._sock.settimeout(0.05)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._arrived:
                self._received.append((time.monotonic(), data))
                self._arrived.notify_all()

    def messages(self) -> list[bytes]:
        """Every datagram so far, in order."""
        with self._arrived:
            return [data for _, data in self._received]

    def timed(self) -> list[tuple[float, bytes]]:
        """Every datagram so far with its time.monotonic() arrival time."""
        with self._arrived:
            return list(self._received)

    def wait_for(self, prefix: bytes, timeout_s: float) -> bytes:
        """The first datagram starting with ``prefix``, waiting up to ``timeout_s`` for it."""

        def found() -> bytes | None:
            return next((d for _, d in self._received if d.startswith(prefix)), None)

        with self._arrived:
            if not self._arrived.wait_for(lambda: found() is not None, timeout=timeout_s):
                raise AssertionError(f"no {prefix!r} within {timeout_s} s; got {self._received}")
            message = found()
        assert message is not None
        return message


@contextmanager
def notify_collector() -> Iterator[NotifyCollector]:
    """A collector bound to a fresh path (pytest's tmp_path can exceed sun_path's 108 bytes)."""
    with (
        tempfile.TemporaryDirectory(prefix="sdnotify-") as name,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        path = Path(name) / "notify"
        sock.bind(str(path))
        collector = NotifyCollector(sock, str(path))
        collector.start()
        try:
            yield collector
        finally:
            collector.stop()
