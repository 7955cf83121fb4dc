"""LocalFleet: a coordinator and N edge agents as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fl_shared.managed_process import ManagedProcess
from fl_shared.ports import free_port

__all__ = ["FleetError", "LocalFleet", "free_port", "program"]


def program(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


class FleetError(RuntimeError):
    """A part of the local fleet did not come up."""


class LocalFleet:
    """Starts `fl-coordinator serve` and `fl-edge-agent run` processes; stops them all.

    Used by `fl-coordinator demo`, the end-to-end tests and the benchmarks, so that all
    three exercise the same programs a user starts. ``secure``: the production path
    (`fl-coordinator init`, TLS, an admin token, every agent enrolled with a one-time token and
    its SuperNode authenticated through the Fleet API gateway); otherwise the development mode.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        data_dir: Path | None = None,
        torch_threads: int = 1,
        extra_env: dict[str, str] | None = None,
        secure: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.data_dir = data_dir
        self.torch_threads = torch_threads
        self.secure = secure
        self.api_port = free_port()
        self.superlink_port = free_port()
        self.fleet_port = free_port()
        self._env = extra_env
        self.admin_token: str | None = None
        self._verify: ssl.SSLContext | None = None
        self.coordinator: ManagedProcess | None = None
        self.agents: list[ManagedProcess] = []

    @property
    def api_url(self) -> str:
        """Base URL of the coordinator's REST API."""
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        """The coordinator's CA certificate (secure mode)."""
        return self.state_dir / "coordinator" / "pki" / "ca.crt"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for the REST API, as an administrator."""
        if not self.secure:
            return httpx.Client(base_url=self.api_url, timeout=timeout)
        return httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            verify=self._ca_context(),
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def _ca_context(self) -> ssl.SSLContext:
        if self._verify is None:  # made once the CA exists: polls would re-read it each time
            self._verify = ssl.create_default_context(cafile=str(self.ca_file))
        return self._verify

    def _init(self) -> None:
        argv = [program("fl-coordinator"), "init", "--state-dir"]
        argv += [str(self.state_dir / "coordinator"), "--host", "127.0.0.1"]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, env=self._env_for(), check=False
        )
        token = re.search(r"fla_[A-Za-z0-9_-]+", done.stdout)
        if done.returncode != 0 or token is None:
            raise FleetError(f"fl-coordinator init failed: {done.stderr or done.stdout}")
        self.admin_token = token.group(0)

    def _env_for(self) -> dict[str, str] | None:
        if self._env is None:
            return None
        return {**os.environ, **self._env}

    def start_coordinator(self, timeout_s: float = 90.0) -> None:
        """Start the coordinator and wait for /healthz."""
        if self.secure:
            self._init()
        argv = [
            program("fl-coordinator"),
            "serve",
            *(["--fleet-port", str(self.fleet_port)] if self.secure else ["--insecure-dev"]),
            "--port",
            str(self.api_port),
            "--superlink-port",
            str(self.superlink_port),
            "--state-dir",
            str(self.state_dir / "coordinator"),
        ]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        self.coordinator = ManagedProcess(
            "coordinator",
            argv,
            env=self._env_for(),
            log_file=self.state_dir / "logs" / "coordinator.log",
        )
        self.coordinator.start()
        self._wait(lambda: self._get("/healthz") is not None, timeout_s, self.coordinator)

    def start_agent(
        self,
        index: int,
        num_partitions: int,
        *,
        env: dict[str, str] | None = None,
        **flags: Any,
    ) -> ManagedProcess:
        """Start one agent holding partition ``index`` of ``num_partitions``.

        ``env`` adds variables for this agent only (e.g. systemd's NOTIFY_SOCKET). In secure
        mode it enrolls first; the coordinator and Fleet API addresses come from enrollment.
        """
        state = self.state_dir / f"agent-{index}"
        if self.secure:
            self._enroll(f"device-{index}", state)
            where: list[str] = []
        else:
            where = ["--insecure", "--coordinator-url", self.api_url]
            where += ["--superlink", f"127.0.0.1:{self.superlink_port}"]
        argv = [
            program("fl-edge-agent"),
            "run",
            *where,
            "--name",
            f"device-{index}",
            "--state-dir",
            str(state),
            "--supernode-port",
            str(free_port()),
            "--partition-id",
            str(index),
            "--num-partitions",
            str(num_partitions),
            "--torch-threads",
            str(self.torch_threads),
        ]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        for key, value in flags.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        # Devices sharing one host would benchmark each other: keep their probes short.
        agent_env = {
            **(self._env_for() or os.environ),
            "FL_AGENT_PROBE_BUDGET_S": "1",
            **(env or {}),
        }
        agent = ManagedProcess(
            f"agent-{index}",
            argv,
            env=agent_env,
            log_file=self.state_dir / "logs" / f"agent-{index}.log",
        )
        agent.start()
        self.agents.append(agent)
        return agent

    def _enroll(self, name: str, state: Path) -> None:
        with self.client() as admin:
            made = admin.post("/api/v1/enroll-tokens", json={"name": name})
        made.raise_for_status()
        argv = [program("fl-edge-agent"), "enroll", "--coordinator", self.api_url]
        argv += ["--token", made.json()["token"], "--ca-file", str(self.ca_file)]
        argv += ["--state-dir", str(state), "--name", name]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, env=self._env_for(), check=False
        )
        if done.returncode != 0:
            raise FleetError(f"fl-edge-agent enroll {name} failed: {done.stderr or done.stdout}")

    def wait_devices_online(self, count: int, timeout_s: float = 90.0) -> list[dict[str, Any]]:
        """Wait until ``count`` devices are online, their SuperNode and ClientApp runtime ready."""
        found: list[dict[str, Any]] = []

        def ready() -> bool:
            nonlocal found
            devices = self._get("/api/v1/devices") or []
            found = [d for d in devices if d["online"] and _ready(d)]
            return len(found) >= count

        self._wait(ready, timeout_s, None)
        return found

    def start_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST a run request; returns the run."""
        with self.client() as api:
            response = api.post("/api/v1/runs", json=request)
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        return run

    def get_run(self, run_id: int) -> dict[str, Any]:
        """GET one run."""
        with self.client(10) as api:
            run: dict[str, Any] = api.get(f"/api/v1/runs/{run_id}").json()
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        """GET every run, newest first."""
        with self.client(10) as api:
            runs: list[dict[str, Any]] = api.get("/api/v1/runs").json()
        return runs

    def _get(self, path: str) -> Any:
        try:
            with self.client(5) as api:
                response = api.get(path)
        except (httpx.HTTPError, OSError):
            return None
        return response.json() if response.status_code == 200 else None

    def _wait(
        self, ready: Callable[[], bool], timeout_s: float, proc: ManagedProcess | None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if proc is not None and proc.poll() is not None:
                tail = "\n".join(proc.tail()[-15:])
                raise FleetError(f"{proc.name} exited with {proc.poll()}:\n{tail}")
            time.sleep(0.3)
        raise FleetError(f"local fleet not ready after {timeout_s:.0f} s; logs: {self.state_dir}")

    def stop(self) -> None:
        """Stop agents first (their SuperNodes deregister), then the coordinator."""
        for agent in self.agents:
            agent.stop(grace_s=15)
        if self.coordinator is not None:
            self.coordinator.stop(grace_s=20)

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _ready(device: dict[str, Any]) -> bool:
    """SuperNode running and, for a warm ClientApp runtime, warmed up."""
    status = device.get("last_status") or {}
    return device["supernode_state"] == "running" and status.get("runtime_state") in (
        None,
        "running",
    )
