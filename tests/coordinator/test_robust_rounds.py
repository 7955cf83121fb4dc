"""Whole rounds with Flower's own strategies: a poisoned device is kept out of the aggregate."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import structlog.testing
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Krum
from tests.coordinator.flower_messages import (
    NDArrays,
    arrays,
    enter_task,
    error_reply,
    reply,
    train_message,
)

from fl_coordinator.aggregation_choice import AggregationChoice
from fl_coordinator.fleet_strategy import FleetRounds
from fl_coordinator.model_store import ModelStore
from fl_coordinator.round_recorder import RoundRecorder
from fl_shared.models import create_model
from fl_shared.wire import RoundReport

# What a node does with the model it receives: its new weights (None: its ClientApp fails).
Answer = Callable[[NDArrays, int], NDArrays | None]


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    enter_task(monkeypatch)


class ScriptedGrid:
    """A Grid whose nodes answer training with scripted weights (and examples counts)."""

    def __init__(self, answers: dict[int, Answer], examples: dict[int, int]) -> None:
        self.answers = answers
        self.examples = examples
        self.replies: list[list[Message]] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.answers)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            model = {k: v.numpy() for k, v in msg.content.array_records["arrays"].items()}
            round_ = int(msg.content.config_records["config"]["server-round"])  # type: ignore[arg-type]
            new = self.answers[node](model, round_)
            if new is None:
                replies.append(error_reply(node, model))
            else:
                replies.append(reply(node, new, examples=self.examples[node], to=msg))
        if replies:  # the round's training replies (evaluation is off)
            self.replies.append(list(replies))
        # Each reply is sent as a copy: Flower's strategies may change what they receive.
        return [_copy(r) for r in replies]


def _copy(msg: Message) -> Message:
    if msg.has_error():
        return msg
    record = msg.content.array_records["arrays"]
    model = {k: v.numpy().copy() for k, v in record.items()}
    metrics = next(iter(msg.content.metric_records.values()))
    device = str(msg.content.config_records["device"]["device-id"])
    return reply(
        msg.metadata.src_node_id,
        model,
        examples=int(metrics["num-examples"]),  # type: ignore[arg-type]
        device_id=device,
        to=train_message(msg.metadata.src_node_id, {}),
    )


def honest(step: float) -> Answer:
    """A device whose training moves every weight by ``step`` (times a per-round factor)."""

    def answer(model: NDArrays, round_: int) -> NDArrays:
        rng = np.random.default_rng(int(step * 1000) + round_)
        return {
            k: (v + step * (1 + 0.1 * rng.standard_normal(v.shape))).astype(v.dtype)
            for k, v in model.items()
        }

    return answer


def nan_weights(model: NDArrays, _round: int) -> NDArrays:
    return {k: np.full_like(v, math.nan) if v.dtype.kind == "f" else v for k, v in model.items()}


def boosted(model: NDArrays, _round: int) -> NDArrays:
    return {k: (v + 100.0).astype(v.dtype) for k, v in model.items()}


GLOBAL: NDArrays = {"w": np.zeros((8, 4), dtype=np.float32), "b": np.zeros(4, dtype=np.float32)}


def run_rounds(
    strategy: FleetRounds, grid: ScriptedGrid, rounds: int, initial: NDArrays = GLOBAL
) -> dict[int, NDArrays]:
    """Run ``rounds`` rounds; the global model after each."""
    models: dict[int, NDArrays] = {}

    def evaluate_fn(server_round: int, record: ArrayRecord) -> None:
        models[server_round] = {k: v.numpy().copy() for k, v in record.items()}

    strategy.start(
        grid=grid,  # type: ignore[arg-type]
        initial_arrays=arrays(initial),
        num_rounds=rounds,
        timeout=10,
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate_fn,
    )
    return models


def build(aggregation: str = "fedavg", **options: object) -> FleetRounds:
    choice = AggregationChoice(aggregation=aggregation, **options)  # type: ignore[arg-type]
    return choice.build(min_devices=3, device_wait_timeout_s=1.0, fraction_evaluate=0.0, run_id=7)


FLOWER_CLASSES = {
    "fedavg": FedAvg(),
    "fedmedian": FedMedian(),
    "fedtrimmedavg": FedTrimmedAvg(beta=0.2),
    "krum": Krum(num_malicious_nodes=1),
}


@pytest.mark.parametrize("poison", [nan_weights, boosted], ids=["nan", "boosted"])
@pytest.mark.parametrize("aggregation", list(FLOWER_CLASSES))
def test_the_aggregate_is_that_of_the_devices_that_were_not_poisoned(
    aggregation: str, poison: Answer
) -> None:
    answers = {1: honest(0.10), 2: honest(0.12), 3: honest(0.09), 4: honest(0.11), 5: poison}
    examples = {1: 100, 2: 300, 3: 200, 4: 250, 5: 10_000}
    grid = ScriptedGrid(answers, examples)
    options = {"krum_malicious_devices": 1} if aggregation == "krum" else {}
    strategy = build(aggregation, **options)
    models = run_rounds(strategy, grid, rounds=2)

    assert [r.node_id for r in strategy.round_rejected] == [5]
    assert {d.node_id for d in strategy.round_devices} == {1, 2, 3, 4}
    # Flower's own class, given only the honest replies of round 2, gives the same model.
    honest_replies = [_copy(r) for r in grid.replies[1] if r.metadata.src_node_id != 5]
    expected, _ = FLOWER_CLASSES[aggregation].aggregate_train(2, honest_replies)
    assert expected is not None
    for key, value in expected.items():
        np.testing.assert_allclose(models[2][key], value.numpy(), rtol=1e-6)
    assert all(np.all(np.isfinite(v)) for v in models[2].values())


def test_failed_devices_and_a_poisoned_one_leave_the_round_to_the_rest() -> None:
    answers = {1: honest(0.1), 2: honest(0.2), 3: lambda _m, _r: None, 4: nan_weights}
    grid = ScriptedGrid(answers, {1: 10, 2: 30, 3: 10, 4: 10})
    strategy = build()
    models = run_rounds(strategy, grid, rounds=1)
    round_1 = {r.metadata.src_node_id: r for r in grid.replies[0]}
    one, two = (
        {k: v.numpy() for k, v in round_1[n].content.array_records["arrays"].items()}
        for n in (1, 2)
    )
    for key in GLOBAL:  # FedAvg: weighted by examples, 10 and 30
        np.testing.assert_allclose(models[1][key], 0.25 * one[key] + 0.75 * two[key], rtol=1e-6)
    assert [(r.node_id, r.reason) for r in strategy.round_rejected] == [(4, "non-finite")]


def test_every_device_rejected_keeps_the_global_model() -> None:
    grid = ScriptedGrid({1: nan_weights, 2: nan_weights, 3: nan_weights}, {1: 1, 2: 1, 3: 1})
    strategy = build()
    models = run_rounds(strategy, grid, rounds=1)
    for key, value in GLOBAL.items():
        np.testing.assert_array_equal(models[1][key], value)
    assert len(strategy.round_rejected) == 3


def test_central_dp_clips_averages_unweighted_and_accounts_each_release() -> None:
    # Near-zero noise, so the clipped unweighted mean shows through.
    answers = {1: honest(0.1), 2: honest(0.2), 3: honest(10.0), 4: lambda _m, _r: None}
    grid = ScriptedGrid(answers, {1: 10, 2: 1000, 3: 10, 4: 10})
    strategy = build(
        privacy="central", dp_clipping_norm=1.0, dp_noise_multiplier=1e-9, screening_mad_k=None
    )
    assert type(strategy).__name__ == "FleetCentralDp"
    models = run_rounds(strategy, grid, rounds=2)

    expected = {}
    for key in GLOBAL:
        updates = []
        for r in grid.replies[1]:
            if r.has_error():
                continue
            new = {k: v.numpy() for k, v in r.content.array_records["arrays"].items()}
            flat = np.concatenate([(new[k] - models[1][k]).ravel() for k in GLOBAL])
            scale = min(1.0, 1.0 / float(np.linalg.norm(flat)))
            updates.append(models[1][key] + scale * (new[key] - models[1][key]))
        expected[key] = np.mean(updates, axis=0)
    for key in GLOBAL:
        np.testing.assert_allclose(models[2][key], expected[key], atol=1e-6)
    assert strategy.privacy is not None
    spent = strategy.privacy.spent()
    assert (spent.mechanism, spent.releases, spent.sampling_rate) == ("central-gaussian", 2, 1.0)
    # the device-level record keeps the examples each device reported
    assert sorted(d.num_examples for d in strategy.round_devices) == [10, 10, 1000]


class Reports:
    """Stands in for RunReporter: keeps what would be posted."""

    def __init__(self) -> None:
        self.rounds: list[RoundReport] = []

    def round(self, report: RoundReport) -> None:
        self.rounds.append(report)


def test_rejections_and_privacy_reach_the_round_reports(tmp_path: Path) -> None:
    model = create_model("mlp", 10)
    initial = {k: v.numpy() for k, v in model.state_dict().items()}
    answers = {1: honest(0.01), 2: honest(0.012), 3: nan_weights}
    grid = ScriptedGrid(answers, {1: 10, 2: 10, 3: 10})
    strategy = AggregationChoice(privacy="local", dp_epsilon=2.0).build(
        min_devices=2, device_wait_timeout_s=1.0, fraction_evaluate=0.0, run_id=7
    )
    reports = Reports()
    recorder = RoundRecorder(
        run_id=7,
        architecture="mlp",
        num_classes=10,
        model=model,
        test_data=None,
        strategy=strategy,
        store=ModelStore(tmp_path),
        reporter=reports,  # type: ignore[arg-type]
    )
    strategy.start(
        grid=grid,  # type: ignore[arg-type]
        initial_arrays=arrays(initial),
        num_rounds=2,
        timeout=10,
        train_config=ConfigRecord({}),
        evaluate_fn=recorder,
    )
    assert [r.round for r in reports.rounds] == [0, 1, 2]
    assert reports.rounds[0].rejected_updates == []
    for report in reports.rounds[1:]:
        (rejected,) = report.rejected_updates
        assert (rejected.device_id, rejected.node_id, rejected.reason) == ("dev-3", 3, "non-finite")
        assert {d.device_id for d in report.devices} == {"dev-1", "dev-2"}
    privacy = [r.privacy for r in reports.rounds]
    assert all(p is not None and p.mechanism == "local-gaussian" for p in privacy)
    assert [p.releases for p in privacy if p] == [0, 1, 2]
    assert [p.epsilon_per_round for p in privacy if p] == [2.0, 2.0, 2.0]
    epsilons = [p.epsilon for p in privacy if p]
    assert epsilons[0] == 0.0 < epsilons[1] < epsilons[2]
    # the report survives the JSON the registry stores
    again = RoundReport.model_validate_json(reports.rounds[1].model_dump_json())
    assert again == reports.rounds[1]


def test_krum_with_too_few_updates_for_its_tolerance_says_so() -> None:
    grid = ScriptedGrid({1: honest(0.1), 2: honest(0.2), 3: honest(0.3)}, {1: 1, 2: 1, 3: 1})
    strategy = build("krum", krum_malicious_devices=1)  # needs 2f + 3 = 5 updates
    with structlog.testing.capture_logs() as logs:
        run_rounds(strategy, grid, rounds=1)
    (warning,) = [e for e in logs if e["event"] == "krum_below_tolerance"]
    assert (warning["updates"], warning["needed"], warning["round"]) == (3, 5, 1)
