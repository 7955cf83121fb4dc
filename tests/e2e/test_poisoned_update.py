"""End to end: one device of a real fleet sends NaN weights; the run completes without them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_training_run import wait_run

from fl_coordinator.local_fleet import LocalFleet, program

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "poisoned_app"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 2)  # warm ClientApp runtime
        fleet.start_agent(1, 2, env={"FL_AGENT_CLIENTAPP_RUNTIME": "isolated"})  # poisoned
        fleet.wait_devices_online(2)
        yield fleet


def test_a_device_sending_nan_weights_is_rejected_and_the_run_completes(
    fleet: LocalFleet,
) -> None:
    argv = [program("flctl"), "--url", fleet.api_url, "--json", "runs", "start", "--app", str(APP)]
    started = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 0, started.stderr
    run = wait_run(fleet, json.loads(started.stdout)["run_id"])
    assert run["status"] == "completed", run["detail"]

    listed = httpx.get(f"{fleet.api_url}/api/v1/devices", timeout=30).json()
    devices = {d["name"]: d["device_id"] for d in listed}
    honest, poisoned = devices["device-0"], devices["device-1"]
    logs = httpx.get(f"{fleet.api_url}/api/v1/runs/{run['run_id']}/logs", timeout=30).text
    rounds = [line.split() for line in logs.splitlines() if line.startswith("poison-test round")]
    by_round = {int(words[2]): words for words in rounds}
    assert sorted(by_round) == [0, 1, 2], logs[-3000:]
    for number in (1, 2):
        words = by_round[number]
        assert words[words.index("trained") + 1] == honest
        assert words[words.index("rejected") + 1] == f"{poisoned}:non-finite"
    # The honest device's updates alone: a finite model that learned.
    assert float(by_round[2][4]) > 0.5, by_round[2]
    assert "update_rejected" in logs  # the strategy's own warning, in the ServerApp's log
