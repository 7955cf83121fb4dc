"""SystemdNotifier: the sd_notify protocol (READY, STATUS, WATCHDOG, STOPPING) in pure Python."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

# A datagram socket whose reader fell behind (its queue holds net.unix.max_dgram_qlen datagrams,
# 10 by default) blocks the sender. The watchdog ping runs on the coordinator's event loop and in
# the agent's main loop, neither of which may hang on it: give up after this long, log, go on.
SEND_TIMEOUT_S = 1.0


def _socket_address(value: str) -> str | bytes | None:
    """The address to send to: a path, or an abstract name (leading "@" becomes a NUL byte)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # systemd also accepts "vsock:" addresses; our services never run inside a VM guest that way.
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds when the watchdog is meant for this process, else None."""
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            log.warning("systemd_watchdog_pid_invalid", watchdog_pid=raw_pid)
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("systemd_watchdog_usec_invalid", watchdog_usec=raw_usec)
        return None
    if usec <= 0:
        return None
    # sd_watchdog_enabled(3) recommends pinging at half the timeout.
    return usec / 2_000_000


def _status_line(text: str) -> str:
    """A STATUS= assignment; newlines would start new assignments, so they become spaces."""
    return "STATUS=" + " ".join(text.splitlines())


class SystemdNotifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; every method is a no-op without it."""

    def __init__(
        self, env: Mapping[str, str] | None = None, *, send_timeout_s: float = SEND_TIMEOUT_S
    ) -> None:
        environ: Mapping[str, str] = os.environ if env is None else env
        raw_socket = environ.get("NOTIFY_SOCKET", "")
        self._socket_name = raw_socket
        self._address = _socket_address(raw_socket) if raw_socket else None
        if raw_socket and self._address is None:
            log.warning("systemd_notify_socket_unsupported", notify_socket=raw_socket)
        self._watchdog_interval_s = _watchdog_interval(environ) if self._address else None
        self._last_watchdog: float | None = None
        self._send_timeout_s = send_timeout_s

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notification socket."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1 (half of WATCHDOG_USEC), or None when not requested."""
        return self._watchdog_interval_s

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up finished (Type=notify), with an optional status line."""
        return self._send("READY=1", status)

    def status(self, text: str) -> bool:
        """Set the free-form status shown by ``systemctl status``."""
        return self._send(_status_line(text))

    def watchdog(self) -> bool:
        """Ping the service watchdog now."""
        return self._send("WATCHDOG=1")

    def watchdog_due(self, now: float) -> bool:
        """True when a watchdog ping is requested and none was sent in the last interval."""
        interval = self._watchdog_interval_s
        if interval is None:
            return False
        return self._last_watchdog is None or now - self._last_watchdog >= interval

    def maybe_watchdog(self, now: float) -> bool:
        """Ping the watchdog if due at monotonic time ``now``; True when a ping was sent."""
        if not self.watchdog_due(now):
            return False
        # Record the attempt even if sending fails, so a missing socket is not retried each loop.
        self._last_watchdog = now
        return self.watchdog()

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd the service is shutting down, with an optional status line."""
        return self._send("STOPPING=1", status)

    def _send(self, first: str, status: str | None = None) -> bool:
        """Send one datagram of newline-separated assignments; True when it was sent."""
        if self._address is None:
            return False
        lines = [first] if status is None else [first, _status_line(status)]
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(self._send_timeout_s)
                sock.sendto(payload, self._address)
        except OSError as exc:
            log.warning(
                "systemd_notify_failed",
                message=first,
                notify_socket=self._socket_name,
                error=str(exc),
            )
            return False
        return True
