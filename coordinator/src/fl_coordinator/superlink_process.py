"""SuperLinkProcess: starts, health-checks and restarts the Flower SuperLink."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from fl_coordinator.errors import SuperLinkError
from fl_shared.backoff import Backoff
from fl_shared.flower_env import flower_env
from fl_shared.managed_process import ManagedProcess

SUPEREXEC_POLL_S = "0.25"

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SuperLinkTls:
    """The certificate files the SuperLink serves HTTPS with (absolute paths)."""

    ca_cert: Path
    cert: Path
    key: Path


class SuperLinkProcess:
    """The coordinator's supervised `flower-superlink` child.

    With ``tls`` it serves HTTPS and admits only SuperNodes whose public key the coordinator
    registered (``--enable-supernode-auth``); without, plain HTTP for development.
    """

    def __init__(self, *, host: str, port: int, state_dir: Path, tls: SuperLinkTls | None) -> None:
        self.host = host
        self.port = port
        self._home = state_dir / "superlink"
        self._tls = tls
        self._insecure = tls is None
        # Health checks trust the coordinator's CA (built once: checks repeat every 0.2 s).
        self._verify: ssl.SSLContext | bool = (
            True if tls is None else ssl.create_default_context(cafile=str(tls.ca_cert))
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: ManagedProcess | None = None
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """PID of the current SuperLink process."""
        return self._proc.pid if self._proc else None

    @property
    def health_url(self) -> str:
        """Where the SuperLink answers health checks."""
        scheme = "http" if self._insecure else "https"
        return f"{scheme}://{self.host}:{self.port}/health"

    def _argv(self) -> list[str]:
        argv = [
            "flower-superlink",
            "--host",
            self.host,
            "--port",
            str(self.port),
            # Runs and node registrations survive a SuperLink restart.
            "--database",
            str(self._home / "superlink.db"),
            # Otherwise every run `uv sync`s its dependencies from the internet.
            "--disable-runtime-dependency-installation",
        ]
        if self._tls is None:
            argv.append("--insecure")
        else:
            argv += [
                "--ssl-ca-certfile",
                str(self._tls.ca_cert.resolve()),
                "--ssl-certfile",
                str(self._tls.cert.resolve()),
                "--ssl-keyfile",
                str(self._tls.key.resolve()),
                "--enable-supernode-auth",
            ]
        return argv

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the SuperLink, wait until it is healthy, then watch it."""
        self._home.mkdir(parents=True, exist_ok=True)
        self._spawn()
        self.wait_healthy(timeout_s)
        self._watcher = threading.Thread(target=self._watch, name="superlink-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            env = flower_env(self._home)
            # Its flower-superexec looks for a ServerApp to start every 1 s by default.
            env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", SUPEREXEC_POLL_S)
            self._proc = ManagedProcess("superlink", self._argv(), env=env, cwd=self._home)
            self._proc.start()

    def wait_healthy(self, timeout_s: float) -> None:
        """Block until /health answers 200; SuperLinkError with its last output otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                tail = " | ".join(proc.tail()[-5:])
                raise SuperLinkError(f"flower-superlink exited with {proc.poll()}: {tail}")
            if self.is_healthy():
                log.info("superlink_healthy", port=self.port)
                return
            self._stop.wait(0.2)
        raise SuperLinkError(f"flower-superlink not healthy after {timeout_s:.0f} s")

    def is_healthy(self) -> bool:
        """True when the SuperLink answers its health check."""
        try:
            return httpx.get(self.health_url, timeout=2.0, verify=self._verify).status_code == 200
        except httpx.HTTPError:
            return False

    def _watch(self) -> None:
        backoff = Backoff(base_s=1.0, cap_s=30.0)
        while not self._stop.wait(1.0):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            log.error("superlink_exited", returncode=proc.poll(), tail=proc.tail()[-5:])
            if self._stop.wait(backoff.next_wait()):
                return
            self.restarts += 1
            try:
                self._spawn()
                self.wait_healthy(60.0)
                backoff.reset()
            except SuperLinkError as exc:
                log.error("superlink_restart_failed", error=str(exc))

    def stop(self) -> None:
        """Stop watching and stop the SuperLink with its children."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            if self._proc is not None:
                self._proc.stop(grace_s=10.0)
