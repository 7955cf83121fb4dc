"""End to end on the production path: enrolled agents train over TLS, SuperNodes authenticated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.test_training_run import wait_run

from fl_coordinator.local_fleet import LocalFleet

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("secure-fleet"), secure=True) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 2)
        fleet.start_agent(1, 2)
        fleet.wait_devices_online(2)
        yield fleet


def test_enrolled_agents_train_to_completion_over_tls(fleet: LocalFleet) -> None:
    for index in range(2):
        identity = Path(fleet.state_dir / f"agent-{index}" / "identity")
        enrolled = json.loads((identity / "enrollment.json").read_text())
        assert enrolled["superlink_address"] == f"127.0.0.1:{fleet.fleet_port}"  # the gateway
        assert (identity / "supernode.key").stat().st_mode & 0o777 == 0o600
    run = fleet.start_run(
        {"model": "cnn", "dataset": "digits", "num_rounds": 2, "min_devices": 2, "seed": 7}
    )
    run = wait_run(fleet, run["run_id"])
    assert run["status"] == "completed", run["detail"]
    assert [r["round"] for r in run["rounds"]] == [0, 1, 2]
    trained = {d["device_id"] for r in run["rounds"] if r["round"] > 0 for d in r["devices"]}
    with fleet.client() as admin:
        devices = {d["device_id"]: d for d in admin.get("/api/v1/devices").json()}
    assert trained == set(devices)  # both enrolled devices trained, known by their node ids
