"""Exponential backoff with full jitter and a cap, for retries that must not stampede."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Yields waits of uniform(0, min(cap, base * 2**attempt)); ``reset()`` after a success."""

    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_wait(self) -> float:
        """Return the next wait in seconds and advance."""
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        """Start again from the smallest wait."""
        self.attempt = 0
