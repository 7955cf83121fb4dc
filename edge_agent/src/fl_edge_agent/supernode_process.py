"""SuperNodeProcess: starts the device's Flower SuperNode and restarts it when it exits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import tomli_w

from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.backoff import Backoff
from fl_shared.flower_env import flower_env
from fl_shared.managed_process import ManagedProcess
from fl_shared.wire import SuperNodeState

log = structlog.get_logger(__name__)


class SuperNodeProcess:
    """Owns one `flower-supernode` child with its own FLWR_HOME and runtime port."""

    def __init__(
        self,
        *,
        superlink: str,
        port: int,
        state_dir: Path,
        node_config: dict[str, Any],
        insecure: bool,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self._superlink = superlink
        self._port = port
        self._home = state_dir / "supernode"
        self._node_config = node_config
        self._insecure = insecure
        self._clock = clock
        self._backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self._proc: ManagedProcess | None = None
        self._restart_at: float | None = None
        self._started_at = 0.0
        self.restarts = 0
        self.state: SuperNodeState = "stopped"

    @property
    def node_config_file(self) -> Path:
        """The node config handed to the SuperNode (a file keeps values off the command line)."""
        return self._home / "node-config.toml"

    @property
    def pid(self) -> int | None:
        """PID of the running SuperNode."""
        return self._proc.pid if self._proc else None

    def argv(self) -> list[str]:
        """The SuperNode command line."""
        argv = [
            "flower-supernode",
            "--superlink",
            self._superlink,
            "--port",
            str(self._port),
            "--node-config",
            str(self.node_config_file),
        ]
        if self._insecure:
            argv.append("--insecure")
        return argv

    def start(self) -> None:
        """Write the node config and start the SuperNode."""
        self._home.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.node_config_file, tomli_w.dumps(self._node_config).encode())
        self._proc = ManagedProcess(
            "supernode", self.argv(), env=flower_env(self._home), cwd=self._home
        )
        self._proc.start()
        self.state = "running"
        self._started_at = self._clock()

    def check(self) -> None:
        """Call periodically: restarts an exited SuperNode after a backoff."""
        now = self._clock()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.restarts += 1
                log.info("supernode_restart", restarts=self.restarts)
                self.start()
            return
        if self._proc is None or self._proc.poll() is None:
            # Running long enough counts as healthy again.
            if self._proc is not None and now - self._started_at > 60:
                self._backoff.reset()
            return
        code = self._proc.poll()
        # Its superexec and ClientApps may outlive it, holding ports and memory.
        self._proc.stop(grace_s=0)
        wait = self._backoff.next_wait()
        log.warning("supernode_exited", returncode=code, restart_in_s=round(wait, 2))
        # Status 0 is a SIGTERM or "the SuperLink forgot me"; anything else is a crash.
        self.state = "restarting" if code == 0 else "crashed"
        self._restart_at = now + wait

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the SuperNode (it deactivates itself at once), SIGKILL after the grace."""
        self._restart_at = None
        if self._proc is not None:
            self._proc.stop(grace_s)
            self._proc = None  # a stopped SuperNode is never restarted by check()
        self.state = "stopped"
