"""A run survives its coordinator: SIGKILL the coordinator and its Flower processes mid-run."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fl_coordinator.local_fleet import LocalFleet

pytestmark = pytest.mark.e2e

NUM_ROUNDS = 6


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 2, env={"FL_AGENT_HEARTBEAT_INTERVAL_S": "2"})
        fleet.start_agent(1, 2, env={"FL_AGENT_HEARTBEAT_INTERVAL_S": "2"})
        fleet.wait_devices_online(2)
        yield fleet


def _kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and all its descendants at once, like a power cut of the service."""
    root = psutil.Process(pid)
    victims = [root, *root.children(recursive=True)]
    for proc in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_a_killed_coordinator_resumes_the_run_from_its_last_checkpoint(fleet: LocalFleet) -> None:
    run = fleet.start_run(
        {"model": "cnn", "dataset": "digits", "num_rounds": NUM_ROUNDS, "min_devices": 2}
    )
    run_id = run["run_id"]
    _wait(lambda: len(fleet.get_run(run_id)["rounds"]) >= 3, 180, "rounds 0-2")  # 0 = initial

    assert fleet.coordinator is not None and fleet.coordinator.pid is not None
    killed = _kill_tree(fleet.coordinator.pid)
    assert len(killed) >= 3  # coordinator, SuperLink, SuperExec (and maybe the ServerApp)
    fleet.coordinator.stop(grace_s=0)

    fleet.start_coordinator()  # same state dir and ports; resumes interrupted runs by default
    before = {r["round"]: r for r in fleet.get_run(run_id)["rounds"]}
    last_before = max(before)
    assert last_before >= 2

    _wait(lambda: fleet.get_run(run_id)["status"] in ("completed", "failed"), 300, "the run")
    after = fleet.get_run(run_id)
    assert after["status"] == "completed", after["detail"]
    assert after["attempt"] == 2
    assert 2 <= after["resumed_from_round"] <= last_before
    rounds = {r["round"]: r for r in after["rounds"]}
    assert sorted(rounds) == list(range(NUM_ROUNDS + 1))  # every round, numbering continued
    for number in range(1, after["resumed_from_round"] + 1):
        assert rounds[number]["eval_accuracy"] == before[number]["eval_accuracy"]  # kept as is
    assert rounds[NUM_ROUNDS]["eval_accuracy"] > rounds[0]["eval_accuracy"] + 0.2
    assert Path(rounds[NUM_ROUNDS]["checkpoint"]).is_file()
