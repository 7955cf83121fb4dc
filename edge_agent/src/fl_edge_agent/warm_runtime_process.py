"""WarmRuntimeProcess: supervises the warm ClientApp runtime that serves one SuperNode."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from fl_edge_agent.restart_schedule import RestartSchedule
from fl_shared.backoff import Backoff
from fl_shared.flower_env import flower_env
from fl_shared.managed_process import ManagedProcess
from fl_shared.wire import SuperNodeState

log = structlog.get_logger(__name__)

# The runtime writes this file into FLWR_HOME once it has imported and warmed up.
READY_FILE_NAME = "clientapp-runtime.ready"


class WarmRuntimeProcess:
    """One ``python -m fl_edge_agent.warm_runtime`` child, restarted with backoff when it exits.

    It shares the SuperNode's FLWR_HOME (the FABs it installs land in the same bounded app
    cache) and needs nothing else from it: while the SuperNode is down it retries by itself.
    """

    def __init__(
        self,
        *,
        runtime_api_port: int,
        home: Path,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self._port = runtime_api_port
        self._home = home
        self._clock = clock
        self._schedule = RestartSchedule(clock, backoff)
        self._proc: ManagedProcess | None = None
        self.state: SuperNodeState = "stopped"

    @property
    def restarts(self) -> int:
        """How often the runtime was restarted."""
        return self._schedule.restarts

    @property
    def pid(self) -> int | None:
        """PID of the running runtime."""
        return self._proc.pid if self._proc else None

    def argv(self) -> list[str]:
        """The runtime's command line: this interpreter, so it sees the agent's packages."""
        return [
            sys.executable,
            "-m",
            "fl_edge_agent.warm_runtime",
            "--runtime-api-address",
            f"127.0.0.1:{self._port}",
            "--flwr-home",
            str(self._home),
        ]

    @property
    def ready_file(self) -> Path:
        """Written by the runtime once it has warmed up (holds its PID)."""
        return self._home / READY_FILE_NAME

    def start(self) -> None:
        """Start the runtime child; it is "starting" until it says it has warmed up."""
        self.ready_file.unlink(missing_ok=True)
        self._proc = ManagedProcess(
            "clientapp-runtime", self.argv(), env=flower_env(self._home), cwd=self._home
        )
        self._proc.start()
        self.state = "starting"
        self._schedule.started()

    def _warmed_up(self) -> bool:
        try:
            return self.ready_file.read_text().strip() == str(self.pid)
        except OSError:
            return False

    def check(self) -> None:
        """Call periodically: restarts an exited runtime after a backoff."""
        now = self._clock()
        if self._schedule.due(now):
            log.info("clientapp_runtime_restart", restarts=self.restarts)
            self.start()
            return
        if self._proc is None or self._schedule.restart_at is not None:
            return
        code = self._proc.poll()
        if code is None:
            if self.state == "starting" and self._warmed_up():
                self.state = "running"
                log.info("clientapp_runtime_ready", pid=self.pid)
            self._schedule.still_running(now)
            return
        self._proc.stop(grace_s=0)
        wait = self._schedule.schedule(now)
        log.warning("clientapp_runtime_exited", returncode=code, restart_in_s=round(wait, 2))
        self.state = "restarting" if code == 0 else "crashed"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (a running task is abandoned and reported failed), SIGKILL after the grace."""
        self._schedule.cancel()
        if self._proc is not None:
            self._proc.stop(grace_s)
            self._proc = None
        self.state = "stopped"
