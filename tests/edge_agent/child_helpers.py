"""Helpers for tests that supervise small Python children instead of Flower processes."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable


class FakeClock:
    """A monotonic clock that tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MaxRandom(random.Random):
    """Always draws the top of the range, so a Backoff waits exactly its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def python_child(code: str) -> list[str]:
    """The argv of a child running ``code``."""
    return [sys.executable, "-c", code]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms; its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
