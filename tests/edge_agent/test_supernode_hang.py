"""Hang detection: a SuperNode that stops answering health checks is killed and restarted."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fl_edge_agent.supernode_process import SuperNodeProcess
from fl_shared.backoff import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeHealth:
    def __init__(self) -> None:
        self.healthy = True
        self.checks = 0

    def check(self, timeout_s: float = 2.0) -> bool:
        self.checks += 1
        return self.healthy


def _process(tmp_path: Path, clock: FakeClock, health: FakeHealth) -> SuperNodeProcess:
    process = SuperNodeProcess(
        superlink="127.0.0.1:1",
        port=9999,
        state_dir=tmp_path,
        node_config={"device-id": "dev-1"},
        insecure=True,
        clock=clock,
        backoff=Backoff(base_s=0.0, cap_s=0.0),
        health=health,
        health_interval_s=10.0,
        startup_grace_s=30.0,
        hang_after_failures=3,
    )
    process.argv = lambda: [sys.executable, "-c", "import time; time.sleep(60)"]  # type: ignore[method-assign]
    return process


def test_three_failed_checks_mean_hung_then_restart(tmp_path: Path) -> None:
    clock, health = FakeClock(), FakeHealth()
    process = _process(tmp_path, clock, health)
    try:
        process.start()
        first_pid = process.pid
        process.check()
        assert health.checks == 0  # within the startup grace nothing is asked
        clock.now += 30
        process.check()
        assert health.checks == 1 and process.state == "running"

        health.healthy = False
        for _ in range(2):
            clock.now += 10
            process.check()
        assert process.state == "running" and process.hangs == 0  # two misses: not yet
        clock.now += 5
        process.check()
        assert health.checks == 3  # checks are paced by the interval
        clock.now += 5
        started = time.monotonic()
        process.check()
        assert process.hangs == 1 and process.state == "restarting"
        assert time.monotonic() - started < 8  # SIGTERM grace, then SIGKILL

        health.healthy = True
        process.check()  # the backoff (0 s here) has passed: a new SuperNode
        assert process.state == "running" and process.restarts == 1
        assert process.pid != first_pid
    finally:
        process.stop(grace_s=1)


def test_argv_starts_flowers_health_server(tmp_path: Path) -> None:
    process = SuperNodeProcess(
        superlink="127.0.0.1:1",
        port=9999,
        state_dir=tmp_path,
        node_config={},
        insecure=True,
        health_port=9123,
    )
    argv = process.argv()
    assert argv[argv.index("--health-server-address") + 1] == "127.0.0.1:9123"
