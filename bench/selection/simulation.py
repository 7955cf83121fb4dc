"""SelectionRun: federated training of one policy on a SimulatedFleet, on a virtual clock.

Each round, from the virtual time the last one ended:

1. the candidates are the devices online now, as ``Candidate`` (their measured capabilities);
2. the product's selector (``build_selector(policy, seed=seed)``) picks
   ``overcommitted(target, overcommit)`` of them;
3. each picked device really takes ``examples x latency x jitter + 2 x model / bandwidth``
   (``SimulatedFleet.attempt``); one that goes offline before it is done never replies;
4. the round ends at the ``target``-th reply; if fewer will come, when the last reply is in
   and every other picked device has gone (a disconnect is noticed at once), and at the latest
   at the deadline, ``deadline_factor`` x the median capability-predicted duration
   (``prior_duration_s``) of the picked devices. The first ``target`` replies by then are
   aggregated (FedAvg weighted by examples); only those devices are trained;
5. the selector observes an ``Outcome`` per picked device: the aggregated ones
   ``completed=True`` with ``duration_s``, ``num_examples`` and ``loss_rms``; every other one
   ``completed=False, duration_s=None`` (the strategy stopped waiting for it);
6. the global model is evaluated on the fixed test subset.

A run stops once it has reached its target accuracy and passed the horizon, or after
``max_rounds`` rounds, or past ``max_time_s`` of virtual time.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from bench.selection.fleet import SimulatedFleet
from bench.selection.mlp import Mlp, fedavg

from fl_coordinator.device_selector import Outcome, build_selector, overcommitted, prior_duration_s

LATE_FEEDBACK = ("bound", "none", "duration")
# A round that picked nobody lasts this long (virtual seconds).
IDLE_WAIT_S = 10.0


@dataclass(frozen=True)
class RoundConfig:
    """The round protocol and the training, the same for every policy."""

    target: int = 20  # updates aggregated per round
    overcommit: float = 1.3
    deadline_factor: float = 5.0
    lr: float = 0.1
    batch_size: int = 32
    max_rounds: int = 300
    max_time_s: float = 200_000.0
    # What a picked device that was not aggregated tells the selector: "none" as the product's
    # RoundSelection does (no update came: duration_s=None), or "duration": one that replied
    # after the round ended reports its duration, as FedScale's simulator tells Oort.
    late_feedback: str = "bound"

    def __post_init__(self) -> None:
        if self.late_feedback not in LATE_FEEDBACK:
            raise ValueError(f"late_feedback must be one of {LATE_FEEDBACK}")


@dataclass(frozen=True)
class Goal:
    """When a run has done its job: the target accuracy of its alpha, and how long it goes on.

    ``budget_s``: the accuracy at this simulated time is reported. ``horizon_s``: a run that
    has reached its target still goes on to here, so that every run's curve covers it.
    """

    accuracy: float
    budget_s: float
    horizon_s: float


@dataclass(frozen=True)
class Data:
    """Training rows per device and the evaluation set, flattened to (N, 784) float32."""

    train_x: np.ndarray
    train_y: np.ndarray
    device_rows: list[np.ndarray]
    test_x: np.ndarray
    test_y: np.ndarray


def run_policy(
    policy: str,
    *,
    seed: int,
    fleet: SimulatedFleet,
    data: Data,
    config: RoundConfig,
    goal: Goal,
) -> dict[str, Any]:
    """Train with ``policy``'s selector until ``goal`` (or the limits); the run's record."""
    started = time.perf_counter()
    selector = build_selector(policy, seed=seed)
    model = Mlp.initial(seed)
    model_bytes = model.num_bytes
    count = overcommitted(config.target, config.overcommit)
    n = fleet.config.num_devices
    selected_count = np.zeros(n, dtype=np.int64)
    aggregated_count = np.zeros(n, dtype=np.int64)
    now = 0.0
    rounds: list[dict[str, Any]] = []
    accuracy = model.accuracy(data.test_x, data.test_y)
    curve_t, curve_acc = [0.0], [accuracy]
    reached_s: float | None = None
    reached_round: int | None = None
    never_by_budget: float | None = None
    for round_number in range(1, config.max_rounds + 1):
        online = fleet.online_devices(now)
        candidates = [fleet.candidate(d) for d in online]
        selection = selector.select(
            round_number, candidates, count, target=config.target, model_bytes=model_bytes
        )
        index = {fleet.device_ids[d]: d for d in online}
        picked = [index[device_id] for device_id in selection.selected]
        selected_count[picked] += 1
        attempts = [fleet.attempt(d, round_number, now, model_bytes) for d in picked]
        priors = [prior_duration_s(fleet.candidate(d), model_bytes) or 0.0 for d in picked]
        deadline = config.deadline_factor * statistics.median(priors) if priors else 0.0
        replies = sorted((a for a in attempts if a.replied), key=lambda a: a.duration_s)
        if len(replies) >= config.target:
            length = replies[config.target - 1].duration_s
        else:
            # Nothing more will come once the last reply is in and the others have gone.
            gone = [fleet.next_change_s(a.device, now) - now for a in attempts if a.dropped]
            length = max([a.duration_s for a in replies] + gone, default=0.0)
        length = min(length, deadline)
        if not picked:
            length = IDLE_WAIT_S  # nobody online or nobody picked: wait, then try again
        arrived = [a for a in replies if a.duration_s <= length][: config.target]

        updates, weights, outcomes = [], [], []
        for attempt in arrived:
            device = attempt.device
            rows = data.device_rows[device]
            rng = np.random.default_rng([seed, round_number, device])
            trained, loss_rms = model.train_epoch(
                data.train_x[rows],
                data.train_y[rows],
                lr=config.lr,
                batch_size=config.batch_size,
                rng=rng,
            )
            updates.append(trained)
            weights.append(len(rows))
            aggregated_count[device] += 1
            outcomes.append(
                Outcome(
                    device_id=fleet.device_ids[device],
                    completed=True,
                    duration_s=attempt.duration_s,
                    num_examples=len(rows),
                    loss_rms=loss_rms,
                )
            )
        done = {a.device for a in arrived}
        outcomes += [
            Outcome(
                device_id=fleet.device_ids[a.device],
                completed=False,
                duration_s=_late_duration(a, length, config.late_feedback),
            )
            for a in attempts
            if a.device not in done
        ]
        selector.observe(round_number, outcomes)
        if updates:
            model = fedavg(updates, weights)
        now += length
        accuracy = model.accuracy(data.test_x, data.test_y)
        curve_t.append(now)
        curve_acc.append(accuracy)
        rounds.append(
            {
                "round": round_number,
                "candidates": len(candidates),
                "selected": len(picked),
                "aggregated": len(arrived),
                "dropped": sum(a.dropped for a in attempts),
                "duration_s": length,
                "hit_deadline": length >= deadline,
                "accuracy": accuracy,
            }
        )
        if never_by_budget is None and now >= goal.budget_s:
            never_by_budget = float(np.mean(selected_count == 0))
        if reached_s is None and accuracy >= goal.accuracy:
            reached_s, reached_round = now, round_number
        if (reached_s is not None and now >= goal.horizon_s) or now >= config.max_time_s:
            break

    durations = [r["duration_s"] for r in rounds]
    return {
        "policy": policy,
        "selector_class": f"{type(selector).__module__}.{type(selector).__qualname__}",
        "seed": seed,
        "late_feedback": config.late_feedback,
        "target_accuracy": goal.accuracy,
        "tta_s": reached_s if reached_s is not None else now,
        "censored": reached_s is None,
        "rounds_to_target": reached_round,
        "rounds_run": len(rounds),
        "total_time_s": now,
        "final_accuracy": accuracy,
        "budget_s": goal.budget_s,
        "accuracy_at_budget": accuracy_at(curve_t, curve_acc, goal.budget_s),
        "budget_reached": now >= goal.budget_s,
        "horizon_s": goal.horizon_s,
        "mean_round_s": statistics.fmean(durations) if durations else math.nan,
        "median_round_s": statistics.median(durations) if durations else math.nan,
        "deadline_rounds": sum(r["hit_deadline"] for r in rounds),
        "never_selected_share": float(np.mean(selected_count == 0)),
        "never_selected_share_at_budget": (
            never_by_budget if never_by_budget is not None else float(np.mean(selected_count == 0))
        ),
        "never_aggregated_share": float(np.mean(aggregated_count == 0)),
        "selection_counts": selected_count.tolist(),
        "aggregation_counts": aggregated_count.tolist(),
        "times_s": curve_t,
        "accuracies": curve_acc,
        "rounds": rounds,
        "wall_s": time.perf_counter() - started,
    }


def accuracy_at(times: list[float], accuracies: list[float], t: float) -> float:
    """Accuracy of the last model evaluated at or before virtual time ``t``."""
    index = int(np.searchsorted(np.asarray(times), t, side="right")) - 1
    return accuracies[max(index, 0)]


def _late_duration(attempt: Any, round_s: float, mode: str) -> float | None:
    """What a device the round did not wait for reports: as the product does ("bound": the
    round's length, a lower bound of its duration), nothing, or its true duration (FedScale)."""
    if mode == "bound":
        return round_s
    if mode == "duration" and attempt.replied:
        return float(attempt.duration_s)
    return None
