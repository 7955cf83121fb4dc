"""Faults a device meets in the field, with real processes: crash, hang, coordinator outage."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fl_coordinator.local_fleet import LocalFleet, program

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 2.0
AGENT_ENV = {
    "FL_AGENT_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
    "FL_AGENT_SUPERNODE_HEALTH_INTERVAL_S": "1",
}


def _device(fleet: LocalFleet) -> dict[str, Any]:
    devices = httpx.get(f"{fleet.api_url}/api/v1/devices", timeout=10).json()
    assert len(devices) == 1
    device: dict[str, Any] = devices[0]
    return device


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if predicate():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _agent_status(state_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [program("fl-edge-agent"), "status", "--json", "--insecure", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    status: dict[str, Any] = json.loads(out.stdout)
    return status


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 1, env=AGENT_ENV)
        fleet.wait_devices_online(1)
        yield fleet


def test_killed_supernode_is_restarted_and_reported(fleet: LocalFleet) -> None:
    state_dir = fleet.state_dir / "agent-0"
    first = _agent_status(state_dir)["supernode_pid"]
    os.kill(first, signal.SIGKILL)
    _wait_for(
        lambda: (
            (_device(fleet)["last_status"] or {}).get("supernode_restarts") == 1
            and _device(fleet)["last_status"]["supernode_state"] == "running"
        ),
        60,
        "the restart to show in a heartbeat",
    )
    # `status` reads the file the agent writes on every change and heartbeat.
    _wait_for(
        lambda: _agent_status(state_dir)["supernode_pid"] not in (None, first),
        10,
        "fl-edge-agent status to show the new SuperNode PID",
    )


def test_killed_warm_runtime_is_restarted_and_reported(fleet: LocalFleet) -> None:
    state_dir = fleet.state_dir / "agent-0"
    status = _agent_status(state_dir)
    assert status["clientapp_runtime"] == "warm"
    first = status["runtime_pid"]
    os.kill(first, signal.SIGKILL)
    _wait_for(
        lambda: (
            (_device(fleet)["last_status"] or {}).get("runtime_restarts") == 1
            and _device(fleet)["last_status"]["runtime_state"] == "running"
        ),
        60,
        "the runtime's restart to show in a heartbeat",
    )
    _wait_for(
        lambda: _agent_status(state_dir)["runtime_pid"] not in (None, first),
        10,
        "fl-edge-agent status to show the new runtime PID",
    )
    assert _device(fleet)["last_status"]["supernode_restarts"] == 0  # the SuperNode kept running


def test_hung_supernode_is_detected_and_restarted(fleet: LocalFleet) -> None:
    state_dir = fleet.state_dir / "agent-0"
    hung = _agent_status(state_dir)["supernode_pid"]
    os.kill(hung, signal.SIGSTOP)  # alive but answering nothing: a hang
    try:
        _wait_for(
            lambda: (_device(fleet)["last_status"] or {}).get("supernode_hangs") == 1,
            60,
            "the hang to be detected and reported",
        )
        _wait_for(
            lambda: (
                _agent_status(state_dir)["supernode_pid"] not in (None, hung)
                and _device(fleet)["last_status"]["supernode_state"] == "running"
            ),
            60,
            "a new SuperNode",
        )
        assert (
            not Path(f"/proc/{hung}").exists()
            or "State:\tZ" in Path(f"/proc/{hung}/status").read_text()
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)


def test_agent_reconnects_within_one_backoff_step_after_an_outage(
    fleet: LocalFleet, leftover_processes: Callable[[str], list[int]]
) -> None:
    agent = fleet.agents[0]
    assert fleet.coordinator is not None
    fleet.coordinator.stop(grace_s=20)
    time.sleep(60)
    assert agent.poll() is None  # no crash loop: the agent kept supervising
    fleet.start_coordinator()
    restarted = time.monotonic()
    _wait_for(lambda: _device(fleet)["online"], 60, "the device to report again")
    # Backoff is capped at the heartbeat interval (±10 % jitter), plus a little slack.
    assert time.monotonic() - restarted < HEARTBEAT_S * 1.1 + 3.0
    status = _device(fleet)["last_status"]
    assert status["supernode_state"] == "running"

    # SIGTERM: a clean exit and nothing left behind on this device.
    children = leftover_processes(str(fleet.state_dir / "agent-0"))
    status_now = _agent_status(fleet.state_dir / "agent-0")
    assert {status_now["supernode_pid"], status_now["runtime_pid"]} <= set(children)
    assert agent.stop(grace_s=15) == 0
    assert leftover_processes(str(fleet.state_dir / "agent-0")) == []
