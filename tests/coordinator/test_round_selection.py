"""RoundSelection inside FleetFedAvg: only the selected nodes train, outcomes reach the selector."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message
from tests.coordinator.flower_messages import arrays, enter_task, error_reply, reply

from fl_coordinator.device_selector import Outcome
from fl_coordinator.errors import NotEnoughDevices
from fl_coordinator.fast_grid import FastGrid
from fl_coordinator.fleet_strategy import FleetFedAvg
from fl_coordinator.round_selection import RoundSelection, SelectionSettings
from fl_shared.wire import CandidateListing, SelectionCandidate, SelectionDecision

MODEL = {"w": np.zeros(3, dtype=np.float32)}
NODES = {101: "dev-a", 102: "dev-b", 103: "dev-c", 104: "dev-slow"}


class Grid:
    """A grid of connected nodes that records what is sent (the rest of Grid unused here)."""

    def __init__(self, nodes: Iterable[int]) -> None:
        self.nodes = list(nodes)

    def get_node_ids(self) -> list[int]:
        return self.nodes


def listing(*, excluded: dict[str, str] | None = None, **speeds: float) -> CandidateListing:
    return CandidateListing(
        candidates=[SelectionCandidate(device_id=d, samples_per_s=s) for d, s in speeds.items()],
        excluded=[
            SelectionDecision(device_id=d, selected=False, reason=why)
            for d, why in (excluded or {}).items()
        ],
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def selection(
    candidates: Any,
    *,
    per_round: int | None = 2,
    overcommit: float = 1.0,
    policy: str = "capability",
) -> RoundSelection:
    clock = Clock()
    return RoundSelection(
        settings=SelectionSettings(
            policy=policy, devices_per_round=per_round, overcommit=overcommit
        ),
        devices=dict(NODES),
        candidates=candidates,
        min_devices=2,
        wait_timeout_s=10.0,
        clock=clock,
        sleep=clock.sleep,
    )


def test_settings_read_back_from_the_run_config() -> None:
    settings = SelectionSettings.from_run_config(
        {"selection": "oort", "devices-per-round": 0, "overcommit": 1.5, "seed": 3}
    )
    assert settings == SelectionSettings(
        policy="oort", devices_per_round=None, overcommit=1.5, seed=3
    )


def test_only_the_selected_nodes_are_sent_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    enter_task(monkeypatch)
    chooser = selection(lambda: listing(**{"dev-a": 100, "dev-b": 90, "dev-c": 80, "dev-slow": 1}))
    strategy = FleetFedAvg(min_devices=2, device_wait_timeout_s=5, selection=chooser)
    grid = Grid(NODES)
    messages = list(strategy.configure_train(1, arrays(MODEL), ConfigRecord(), grid))  # type: ignore[arg-type]
    sent_to = sorted(m.metadata.dst_node_id for m in messages)
    assert len(sent_to) == 2 and 104 not in sent_to
    decisions = {d.device_id: d for d in strategy.round_selection}
    assert set(decisions) == set(NODES.values())
    assert not decisions["dev-slow"].selected
    # The Flower strategy's own sampling settings are left as they were.
    assert strategy.min_train_nodes == 2 and strategy.fraction_train == 1.0


def test_over_commit_asks_the_fast_grid_for_the_first_k_replies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enter_task(monkeypatch)
    chooser = selection(lambda: listing(**dict.fromkeys(NODES.values(), 50.0)), overcommit=1.5)
    strategy = FleetFedAvg(min_devices=2, device_wait_timeout_s=5, selection=chooser)
    grid = FastGrid(Grid(NODES))  # type: ignore[arg-type]
    messages = list(strategy.configure_train(1, arrays(MODEL), ConfigRecord(), grid))
    assert len(messages) == 3  # ceil(2 x 1.5)
    assert grid._quorum == 2


def test_outcomes_reach_the_selector(monkeypatch: pytest.MonkeyPatch) -> None:
    enter_task(monkeypatch)
    chooser = selection(lambda: listing(**{"dev-a": 100, "dev-b": 100}), per_round=None)
    seen: list[tuple[int, list[Outcome]]] = []
    monkeypatch.setattr(chooser.selector, "observe", lambda r, o: seen.append((r, list(o))))
    strategy = FleetFedAvg(min_devices=2, device_wait_timeout_s=5, selection=chooser)
    grid = FastGrid(Grid([101, 102]))  # type: ignore[arg-type]
    messages = list(strategy.configure_train(1, arrays(MODEL), ConfigRecord(), grid))
    assert len(messages) == 2
    grid.reply_seconds = {101: 1.5}
    replies: list[Message] = [
        reply(101, MODEL, examples=40, loss=0.7, device_id="dev-a"),
        error_reply(102, MODEL),
    ]
    strategy.aggregate_train(1, replies)
    ((round_number, outcomes),) = seen
    by_device = {o.device_id: o for o in outcomes}
    assert round_number == 1
    assert by_device["dev-a"] == Outcome("dev-a", True, 1.5, 40, 0.7)
    # No update from dev-b: it took at least as long as the round waited (1.5 s).
    assert by_device["dev-b"] == Outcome("dev-b", False, 1.5)


def test_too_few_candidates_wait_then_fail_saying_why() -> None:
    chooser = selection(
        lambda: listing(
            excluded={"dev-b": "no CUDA accelerator, the run requires one"}, **{"dev-a": 1}
        )
    )
    with pytest.raises(NotEnoughDevices) as info:
        chooser.choose(4, lambda: list(NODES))
    message = str(info.value)
    assert "only 1 devices may be selected for round 4 and the run needs 2" in message
    assert "dev-b: no CUDA accelerator" in message
    assert "waited 10 s" in message


def test_candidates_that_arrive_while_waiting_are_taken() -> None:
    answers = iter([listing(**{"dev-a": 1}), listing(**{"dev-a": 1, "dev-b": 1})])
    chooser = selection(lambda: next(answers))
    assert sorted(chooser.choose(1, lambda: list(NODES))) == [101, 102]


def test_a_device_whose_supernode_is_not_connected_is_not_selected() -> None:
    chooser = selection(lambda: listing(**{"dev-a": 1, "dev-b": 1, "dev-c": 1}))
    assert sorted(chooser.choose(1, lambda: [101, 102])) == [101, 102]
    reasons = {d.device_id: d.reason for d in chooser.decisions}
    assert reasons["dev-c"] == "SuperNode not connected"


def test_without_the_registry_every_connected_device_is_a_candidate() -> None:
    chooser = selection(lambda: None, per_round=None)
    assert sorted(chooser.choose(1, lambda: [101, 103])) == [101, 103]
