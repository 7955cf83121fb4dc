"""SuperNodeProcess: starts the device's Flower SuperNode and restarts it when it exits."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
import tomli_w

from fl_edge_agent.app_cache import prune_app_cache
from fl_edge_agent.restart_schedule import RestartSchedule
from fl_edge_agent.supernode_health import SuperNodeHealth
from fl_edge_agent.warm_runtime_process import WarmRuntimeProcess
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.backoff import Backoff
from fl_shared.flower_env import flower_env
from fl_shared.managed_process import ManagedProcess
from fl_shared.wire import ClientAppRuntime, SuperNodeState

log = structlog.get_logger(__name__)

PRUNE_INTERVAL_S = 3600.0


class HealthCheck(Protocol):
    """Anything that can say whether the SuperNode answers."""

    def check(self, timeout_s: float = 2.0) -> bool:
        """True when healthy."""
        ...


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
        health_port: int | None = None,
        health: HealthCheck | None = None,
        health_interval_s: float = 10.0,
        startup_grace_s: float = 30.0,
        hang_after_failures: int = 3,
        runtime: ClientAppRuntime = "isolated",
        root_certificates: Path | None = None,
        auth_private_key: Path | None = None,
    ) -> None:
        if insecure and auth_private_key is not None:
            raise ValueError("SuperNode authentication needs TLS: insecure must be False")
        self._superlink = superlink
        # Absolute: the SuperNode runs in its FLWR_HOME, not in our working directory.
        self._root_certificates = root_certificates.absolute() if root_certificates else None
        self._auth_private_key = auth_private_key.absolute() if auth_private_key else None
        self._port = port
        self._home = state_dir / "supernode"
        self._node_config = node_config
        self._insecure = insecure
        self._clock = clock
        self._schedule = RestartSchedule(clock, backoff)
        self._proc: ManagedProcess | None = None
        self._next_prune_at = 0.0
        self.hangs = 0
        self.state: SuperNodeState = "stopped"
        self._health_port = health_port
        if health is None and health_port is not None:
            health = SuperNodeHealth(f"127.0.0.1:{health_port}")
        self._health = health
        self._health_interval_s = health_interval_s
        self._startup_grace_s = startup_grace_s
        self._hang_after = hang_after_failures
        self._health_failures = 0
        self._next_health_at = 0.0
        self.runtime: ClientAppRuntime = runtime
        # "warm": our own ClientApp runtime takes the place of Flower's per-message processes.
        self.warm_runtime = (
            WarmRuntimeProcess(runtime_api_port=port, home=self._home, clock=clock)
            if runtime == "warm"
            else None
        )

    @property
    def node_config_file(self) -> Path:
        """The node config handed to the SuperNode (a file keeps values off the command line)."""
        return self._home / "node-config.toml"

    @property
    def restarts(self) -> int:
        """How often the SuperNode was restarted (after a crash, an exit or a hang)."""
        return self._schedule.restarts

    @property
    def pid(self) -> int | None:
        """PID of the running SuperNode."""
        return self._proc.pid if self._proc else None

    def argv(self) -> list[str]:
        """The SuperNode command line (warm runtime: with adaptive polls, process isolation).

        An enrolled device verifies the SuperLink with its coordinator's CA and signs in with
        its own key; only the development mode connects with ``--insecure``.
        """
        head = ["flower-supernode"]
        if self.warm_runtime is not None:
            head = [sys.executable, "-m", "fl_edge_agent.fast_supernode"]
        argv = [
            *head,
            "--superlink",
            self._superlink,
            "--port",
            str(self._port),
            "--node-config",
            str(self.node_config_file),
        ]
        if self._health_port is not None:
            argv += ["--health-server-address", f"127.0.0.1:{self._health_port}"]
        if self._root_certificates is not None:
            argv += ["--root-certificates", str(self._root_certificates)]
        if self._auth_private_key is not None:
            argv += ["--auth-supernode-private-key", str(self._auth_private_key)]
        if self._insecure:
            argv.append("--insecure")
        if self.warm_runtime is not None:
            argv += ["--isolation", "process"]
        return argv

    def start(self) -> None:
        """Write the node config and start the SuperNode."""
        self._home.mkdir(parents=True, exist_ok=True)
        prune_app_cache(self._home)
        self._next_prune_at = self._clock() + PRUNE_INTERVAL_S
        atomic_write_bytes(self.node_config_file, tomli_w.dumps(self._node_config).encode())
        self._proc = ManagedProcess(
            "supernode", self.argv(), env=flower_env(self._home), cwd=self._home
        )
        self._proc.start()
        self.state = "running"
        self._schedule.started()
        self._health_failures = 0
        self._next_health_at = self._schedule.started_at + self._startup_grace_s
        if self.warm_runtime is not None and self.warm_runtime.state == "stopped":
            self.warm_runtime.start()  # it waits for the SuperNode's Runtime API by itself

    def check(self) -> None:
        """Call periodically: restarts an exited SuperNode (or warm runtime) after a backoff."""
        if self.warm_runtime is not None and self.warm_runtime.state != "stopped":
            self.warm_runtime.check()
        now = self._clock()
        if self._schedule.due(now):
            log.info("supernode_restart", restarts=self.restarts)
            self.start()
            return
        if self._proc is None or self._schedule.restart_at is not None:
            return
        if self._proc.poll() is None:
            self._schedule.still_running(now)
            self._check_health(now)
            if now >= self._next_prune_at:
                self._next_prune_at = now + PRUNE_INTERVAL_S
                prune_app_cache(self._home)
            return
        code = self._proc.poll()
        # Its superexec and ClientApps may outlive it, holding ports and memory.
        self._proc.stop(grace_s=0)
        wait = self._schedule.schedule(now)
        log.warning("supernode_exited", returncode=code, restart_in_s=round(wait, 2))
        # Status 0 is a SIGTERM or "the SuperLink forgot me"; anything else is a crash.
        self.state = "restarting" if code == 0 else "crashed"

    def _check_health(self, now: float) -> None:
        if self._health is None or now < self._next_health_at:
            return
        self._next_health_at = now + self._health_interval_s
        if self._health.check():
            self._health_failures = 0
            return
        self._health_failures += 1
        log.warning("supernode_health_failed", failures=self._health_failures, pid=self.pid)
        if self._health_failures < self._hang_after or self._proc is None:
            return
        self.hangs += 1
        log.error("supernode_hung", hangs=self.hangs, pid=self.pid)
        # A stopped or deadlocked process ignores SIGTERM: the grace ends in SIGKILL.
        self._proc.stop(grace_s=5.0)
        self.state = "restarting"
        self._schedule.schedule(now)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the runtime and the SuperNode (it deactivates itself), SIGKILL after grace."""
        self._schedule.cancel()
        if self.warm_runtime is not None:
            self.warm_runtime.stop(grace_s)
        if self._proc is not None:
            self._proc.stop(grace_s)
            self._proc = None  # a stopped SuperNode is never restarted by check()
        if isinstance(self._health, SuperNodeHealth):
            self._health.close()
        self.state = "stopped"
