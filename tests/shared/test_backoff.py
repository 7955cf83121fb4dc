"""Tests for fl_shared.backoff: full jitter, doubling ceiling, cap, reset."""

from __future__ import annotations

import random

from fl_shared.backoff import Backoff


class MaxRandom(random.Random):
    """Always draws the top of the range, exposing each ceiling exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_waits_stay_within_the_doubling_ceiling() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1234))
    for n in range(12):
        wait = backoff.next_wait()
        assert 0.0 <= wait <= min(4.0, 0.5 * 2**n), (n, wait)


def test_waits_are_uniform_draws_from_the_seeded_rng() -> None:
    backoff = Backoff(base_s=0.25, cap_s=3.0, rng=random.Random(7))
    reference = random.Random(7)
    expected = [reference.uniform(0, min(3.0, 0.25 * 2**n)) for n in range(8)]
    assert [backoff.next_wait() for _ in range(8)] == expected


def test_same_seed_same_waits() -> None:
    a = Backoff(rng=random.Random(99))
    b = Backoff(rng=random.Random(99))
    assert [a.next_wait() for _ in range(6)] == [b.next_wait() for _ in range(6)]


def test_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(base_s=0.5, cap_s=5.0, rng=MaxRandom())
    assert [backoff.next_wait() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_reset_goes_back_to_the_base_ceiling() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0, rng=MaxRandom())
    for _ in range(5):
        backoff.next_wait()
    assert backoff.next_wait() == 32.0
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_wait() == 1.0
    assert backoff.next_wait() == 2.0


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=MaxRandom())
    waits = [backoff.next_wait() for _ in range(1000)]
    assert waits[-1] == 30.0
    assert all(0.0 <= w <= 30.0 for w in waits)


def test_zero_base_never_waits() -> None:
    backoff = Backoff(base_s=0.0, cap_s=0.0, rng=random.Random(1))
    assert [backoff.next_wait() for _ in range(5)] == [0.0] * 5
