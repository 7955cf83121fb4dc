"""Fail fast, with one clear line, when a port we must listen on is taken."""

from __future__ import annotations

import errno
import socket

from fl_coordinator.errors import PortInUseError


def ensure_port_free(host: str, port: int, what: str, flag: str) -> None:
    """Raise PortInUseError naming the port, its use and the flag that moves it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUseError(
                    f"{what} port {host}:{port} is already in use: stop what holds it "
                    f"or pick another with {flag}"
                ) from exc
            raise
