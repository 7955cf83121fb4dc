"""DeviceSelector: the interface of the per-round device selection policies, and its inputs.

A selector is a pure function of what it was told: the round's candidates (live, eligible
devices with their measured capabilities) and the outcomes of earlier rounds. It never reads
a clock, the registry or the network, so the same object runs in a real ServerApp, in Flower's
simulation engine and in the selection benchmark (``bench/selection/``).

Implementations, one per policy (``build_selector`` picks one):

- ``RandomSelector`` (``random``): uniform sampling, as Flower's strategies do;
- ``OortSelector`` (``oort``): Oort's selector (Lai et al., OSDI 2021);
- ``CapabilitySelector`` (``capability``, the default): ours, from measured capabilities.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, get_args

from fl_shared.wire import SelectionPolicy

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "Candidate",
    "Decision",
    "DeviceSelector",
    "Outcome",
    "Selection",
    "SelectionPolicy",
    "build_selector",
    "overcommitted",
    "prior_duration_s",
]

POLICIES: tuple[SelectionPolicy, ...] = get_args(SelectionPolicy)
DEFAULT_POLICY: SelectionPolicy = "capability"


@dataclass(frozen=True)
class Candidate:
    """A device that may train this round (live and within the run's hard constraints).

    Every measurement is optional: a device that reported no capabilities yet is still a
    candidate, with nothing known about it.
    """

    device_id: str
    # Training examples the device holds for this run (what it trains on each round).
    num_examples: int | None = None
    # Measured local training speed (the agent's probe: torch_train_samples_per_s).
    samples_per_s: float | None = None
    # Measured or estimated link speed towards the coordinator, bytes per second.
    bandwidth_bytes_per_s: float | None = None
    memory_bytes: int | None = None
    accelerator: str | None = None
    # Thermal throttling or a reduced power mode right now: it will train slower than measured.
    throttled: bool = False


@dataclass(frozen=True)
class Decision:
    """Why one candidate was or was not selected in one round."""

    device_id: str
    selected: bool
    # The policy's score for the device (higher is better), when the policy computes one.
    score: float | None
    # The deciding factor, in a few words ("fastest predicted", "staleness bound", ...).
    reason: str
    # Predicted seconds from sending the model to receiving the update, when known.
    predicted_s: float | None = None


@dataclass(frozen=True)
class Selection:
    """The devices chosen for a round (in order of preference) and a decision per candidate."""

    selected: list[str]
    decisions: list[Decision] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What one selected device did in a round, as the strategy saw it."""

    device_id: str
    # Its update arrived in time and was aggregated (False: late, failed, dropped or rejected).
    completed: bool
    # Seconds from sending the model to receiving its update; None when none came.
    duration_s: float | None = None
    num_examples: int = 0
    # sqrt(mean of squared per-example training losses): Oort's statistical utility input.
    loss_rms: float | None = None


def prior_duration_s(candidate: Candidate, model_bytes: int) -> float | None:
    """Predicted round duration from measured capabilities alone, or None when unknown.

    ``examples / speed + 2 * model size / bandwidth``: one local pass over the device's
    data, and the model down and the update up.
    """
    if not candidate.samples_per_s or candidate.samples_per_s <= 0:
        return None
    compute = (candidate.num_examples or 0) / candidate.samples_per_s
    link = candidate.bandwidth_bytes_per_s
    transfer = 2 * model_bytes / link if link and link > 0 else 0.0
    return compute + transfer


class DeviceSelector(ABC):
    """Chooses the devices of each round and learns from what they did."""

    policy: ClassVar[SelectionPolicy]

    @abstractmethod
    def select(
        self,
        round_number: int,
        candidates: Sequence[Candidate],
        count: int,
        *,
        target: int | None = None,
        model_bytes: int = 0,
    ) -> Selection:
        """Choose up to ``count`` of ``candidates`` for round ``round_number``.

        ``target`` is how many updates the round will aggregate (the first ``target``
        replies; ``count`` over-commits beyond it); None means all ``count``.
        """

    @abstractmethod
    def observe(self, round_number: int, outcomes: Sequence[Outcome]) -> None:
        """Learn from the outcomes of the devices selected in round ``round_number``."""


def overcommitted(target: int, factor: float) -> int:
    """How many devices to select so that ``target`` replies are likely: ceil(target * factor)."""
    if target < 1:
        raise ValueError("target must be at least 1")
    if factor < 1:
        raise ValueError("the over-commit factor must be at least 1.0")
    return math.ceil(target * factor - 1e-9)


def build_selector(
    policy: str,
    *,
    seed: int = 0,
    max_staleness_rounds: int = 20,
) -> DeviceSelector:
    """The selector of ``policy`` (random, oort, capability), seeded for reproducible runs."""
    if policy == "random":
        from fl_coordinator.random_selector import RandomSelector

        return RandomSelector(seed=seed)
    if policy == "oort":
        from fl_coordinator.oort_selector import OortSelector

        return OortSelector(seed=seed)
    if policy == "capability":
        from fl_coordinator.capability_selector import CapabilitySelector

        return CapabilitySelector(seed=seed, max_staleness_rounds=max_staleness_rounds)
    raise ValueError(f"unknown selection policy {policy!r}: use one of {', '.join(POLICIES)}")
