"""End to end: the capability policy stops waiting on a slow device, yet never starves it.

Three real agents train a real run twice, once with ``random`` selection and once with
``capability``; one agent is made a straggler with the test-only knob
``FL_AGENT_TEST_TRAIN_DELAY_S`` (every local training takes that much longer).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.test_training_run import wait_run

from fl_coordinator.local_fleet import LocalFleet

pytestmark = pytest.mark.e2e

DELAY_S = 3.0
ROUNDS = 8
STALENESS = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("selection-fleet")) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 3)
        fleet.start_agent(1, 3)
        fleet.start_agent(2, 3, env={"FL_AGENT_TEST_TRAIN_DELAY_S": str(DELAY_S)})
        fleet.wait_devices_online(3)
        yield fleet


def _run(fleet: LocalFleet, policy: str) -> dict[str, Any]:
    run = fleet.start_run(
        {
            "model": "mlp",
            "dataset": "digits",
            "num_rounds": ROUNDS,
            "min_devices": 2,
            "devices_per_round": 2,
            "overcommit": 1.0,
            "selection": policy,
            "max_staleness_rounds": STALENESS,
            "seed": 5,
        }
    )
    run = wait_run(fleet, run["run_id"], timeout_s=300)
    assert run["status"] == "completed", run["detail"]
    return run


def _slow_device(fleet: LocalFleet) -> str:
    with fleet.client() as client:
        devices = client.get("/api/v1/devices").json()
    return next(d["device_id"] for d in devices if d["name"] == "device-2")


def test_capability_stops_waiting_on_the_straggler_and_still_selects_it(
    fleet: LocalFleet,
) -> None:
    slow = _slow_device(fleet)
    by_policy = {policy: _run(fleet, policy) for policy in ("random", "capability")}

    def trained_rounds(run: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in run["rounds"] if r["round"] > 0]

    for policy, run in by_policy.items():
        assert run["selection_policy"] == policy
        for round_ in trained_rounds(run):
            decisions = {d["device_id"]: d for d in round_["selection"]}
            assert len(decisions) == 3  # every candidate, selected or not, with a reason
            assert sum(d["selected"] for d in decisions.values()) == 2
            assert all(d["reason"] for d in decisions.values())
            trained = {d["device_id"] for d in round_["devices"]}
            assert trained == {k for k, d in decisions.items() if d["selected"]}

    capability = trained_rounds(by_policy["capability"])
    slow_rounds = [
        r["round"] for r in capability if any(d["device_id"] == slow for d in r["devices"])
    ]
    assert slow_rounds, "the slow device was never selected"
    # Once it has trained (the selector has seen how slow it is), the straggler trains only when
    # the staleness bound makes it: never starved, never waited on otherwise. Before that its
    # prediction comes from its probe and the fleet's ratio, and may well say it is fast.
    seen = [r for r in capability if r["round"] > slow_rounds[0]]
    for round_ in seen:
        decision = next(d for d in round_["selection"] if d["device_id"] == slow)
        if decision["selected"]:
            assert decision["reason"] == "staleness bound"
        else:
            # Left out, knowing it is the slow one (the deciding factor depends on the deadline
            # chosen: "slower than the round's deadline" or "lower utility than the selected").
            # Relative, not >= DELAY_S: the prediction blends history and was seen at 2.5 s.
            chosen = [d["predicted_s"] for d in round_["selection"] if d["selected"]]
            assert decision["predicted_s"] is not None and all(p is not None for p in chosen)
            assert decision["predicted_s"] > max(chosen), round_["selection"]
    gaps = [b - a for a, b in itertools.pairwise(slow_rounds)]
    assert all(gap <= STALENESS + 1 for gap in gaps), slow_rounds
    assert ROUNDS - slow_rounds[-1] <= STALENESS, slow_rounds

    # Waiting on the straggler costs time, and capability waits on it less often than random
    # does in the same fleet. (Comparing the two runs' mean round times directly is noise on a
    # loaded 2-core CI machine, about +-1 s a round; bench/selection measures the speed-up.)
    def joined(round_: dict[str, Any]) -> bool:
        return any(d["device_id"] == slow for d in round_["devices"])

    later_rounds = {
        policy: [r for r in trained_rounds(run) if r["round"] > 2]
        for policy, run in by_policy.items()
    }
    waited = [r["seconds"] for rounds in later_rounds.values() for r in rounds if joined(r)]
    not_waited = [r["seconds"] for rounds in later_rounds.values() for r in rounds if not joined(r)]
    assert statistics.mean(waited) > statistics.mean(not_waited) + DELAY_S / 4, (waited, not_waited)
    random_slow = sum(joined(r) for r in later_rounds["random"])
    capability_slow = sum(joined(r) for r in later_rounds["capability"])
    assert random_slow > capability_slow  # random kept waiting on it more often
