"""RandomSelector: uniform sampling of the round's devices, as Flower's own strategies do."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fl_coordinator.device_selector import (
    Candidate,
    Decision,
    DeviceSelector,
    Outcome,
    Selection,
    prior_duration_s,
)


class RandomSelector(DeviceSelector):
    """``count`` candidates drawn uniformly without replacement; learns nothing."""

    policy = "random"

    def __init__(self, seed: int = 0) -> None:
        """Draw from a generator seeded with ``seed``."""
        self._rng = random.Random(seed)

    def select(
        self,
        round_number: int,
        candidates: Sequence[Candidate],
        count: int,
        *,
        target: int | None = None,
        model_bytes: int = 0,
    ) -> Selection:
        """Sample ``count`` devices uniformly (all of them when there are no more)."""
        ordered = sorted(candidates, key=lambda c: c.device_id)  # same seed, same draw
        chosen = self._rng.sample(ordered, min(count, len(ordered)))
        picked = {c.device_id for c in chosen}
        decisions = [
            Decision(
                device_id=c.device_id,
                selected=c.device_id in picked,
                score=None,
                reason="drawn at random" if c.device_id in picked else "not drawn",
                predicted_s=prior_duration_s(c, model_bytes),
            )
            for c in ordered
        ]
        return Selection([c.device_id for c in chosen], decisions)

    def observe(self, round_number: int, outcomes: Sequence[Outcome]) -> None:
        """Uniform sampling ignores history."""
