"""Bounded device wait and per-device round results of FleetFedAvg."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fl_coordinator.errors import NotEnoughDevices
from fl_coordinator.fleet_strategy import device_results, wait_for_nodes


class FakeGrid:
    """Nodes appear one by one as (fake) time passes."""

    def __init__(self, arrivals: list[float]) -> None:
        self.arrivals = arrivals
        self.now = 0.0

    def get_node_ids(self) -> Iterable[int]:
        return [100 + i for i, t in enumerate(self.arrivals) if t <= self.now]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_returns_once_enough_nodes_are_there() -> None:
    grid = FakeGrid([0.0, 3.0, 50.0])
    nodes = wait_for_nodes(grid, 2, 10.0, clock=grid.clock, sleep=grid.sleep)  # type: ignore[arg-type]
    assert nodes == [100, 101]
    assert 3.0 <= grid.now < 4.0


def test_wait_fails_with_clear_message_after_timeout() -> None:
    grid = FakeGrid([0.0])
    with pytest.raises(NotEnoughDevices) as info:
        wait_for_nodes(grid, 3, 5.0, clock=grid.clock, sleep=grid.sleep)  # type: ignore[arg-type]
    assert "only 1 of the 3 devices" in str(info.value)
    assert "min_devices" in str(info.value)
    assert 5.0 <= grid.now < 6.0


def _reply(device_id: str, examples: int, loss: float) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord(),
            "metrics": MetricRecord(
                {"num-examples": examples, "train-loss": loss, "train-seconds": 1.5}
            ),
            "device": ConfigRecord({"device-id": device_id}),
        }
    )
    return Message(content=content, dst_node_id=7, message_type="train")


def test_device_results_map_replies_to_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flower builds messages inside a run; outside one its task identity must be set.
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    replies = [_reply("dev-a", 10, 0.5), _reply("dev-b", 20, 0.25), _reply("dev-c", 5, math.nan)]
    results = device_results(replies)
    assert [(r.device_id, r.num_examples, r.train_loss) for r in results] == [
        ("dev-a", 10, 0.5),
        ("dev-b", 20, 0.25),
        ("dev-c", 5, None),  # a diverged device: no loss, but its round is still recorded
    ]
    assert all(r.train_seconds == 1.5 for r in results)
