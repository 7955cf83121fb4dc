"""UpdateScreening: non-finite, malformed and far-out updates are kept out of a round."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.coordinator.flower_messages import arrays, enter_task, error_reply, plus, reply

from fl_coordinator.update_screening import UpdateScreening

GLOBAL = {"w": np.zeros((4, 3), dtype=np.float32), "b": np.zeros(3, dtype=np.float32)}
NORM_PER_DELTA = math.sqrt(15)  # 15 parameters


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    enter_task(monkeypatch)


def _screen(replies: list, screening: UpdateScreening | None = None):  # type: ignore[no-untyped-def]
    return (screening or UpdateScreening()).screen(replies, arrays(GLOBAL))


def _with(key: str, value: float, base: float = 0.1) -> dict[str, np.ndarray]:
    model = plus(GLOBAL, base)
    model[key] = model[key].copy()
    model[key][0] = value
    return model


def test_a_normal_spread_of_updates_is_kept() -> None:
    replies = [reply(n, plus(GLOBAL, d)) for n, d in [(1, 0.10), (2, 0.12), (3, 0.09), (4, 0.15)]]
    result = _screen(replies)
    assert result.kept == replies and result.rejected == []
    assert result.norms[2] == pytest.approx(0.12 * NORM_PER_DELTA, rel=1e-5)


def test_nan_and_inf_are_rejected_and_the_rest_kept() -> None:
    good = [reply(1, plus(GLOBAL, 0.1)), reply(2, plus(GLOBAL, 0.11))]
    nan = reply(3, _with("w", math.nan), device_id="dev-nan")
    inf = reply(4, _with("b", -math.inf), device_id="dev-inf")
    result = _screen([good[0], nan, good[1], inf])
    assert result.kept == good
    assert [(r.device_id, r.node_id, r.reason, r.norm) for r in result.rejected] == [
        ("dev-nan", 3, "non-finite", None),
        ("dev-inf", 4, "non-finite", None),
    ]
    assert "'w'" in result.rejected[0].detail


def test_an_update_far_above_the_others_is_rejected() -> None:
    replies = [reply(n, plus(GLOBAL, d)) for n, d in [(1, 0.10), (2, 0.12), (3, 0.09)]]
    boosted = reply(4, plus(GLOBAL, 5.0), device_id="dev-boosted")
    result = _screen([*replies, boosted])
    assert result.kept == replies
    (rejected,) = result.rejected
    assert (rejected.device_id, rejected.reason) == ("dev-boosted", "norm-outlier")
    assert rejected.norm == pytest.approx(5.0 * NORM_PER_DELTA, rel=1e-5)
    # median 0.105 and MAD 0.015 of the four norms; the MAD floor (25 % of the median) wins
    median = 0.11 * NORM_PER_DELTA
    assert rejected.limit == pytest.approx(median * (1 + 6 * 0.25), rel=1e-5)


def test_the_outlier_rule_follows_k_and_can_be_turned_off() -> None:
    replies = [reply(n, plus(GLOBAL, d)) for n, d in [(1, 0.10), (2, 0.11), (3, 0.10), (4, 0.22)]]
    assert len(_screen(replies).rejected) == 0  # 2.1x the median: within median + 6 MAD (floored)
    strict = _screen(replies, UpdateScreening(mad_k=2.0))
    assert [r.node_id for r in strict.rejected] == [4]
    assert _screen(replies, UpdateScreening(mad_k=None)).rejected == []


def test_with_fewer_than_three_replies_only_non_finite_updates_are_rejected() -> None:
    far = reply(1, plus(GLOBAL, 50.0))
    near = reply(2, plus(GLOBAL, 0.1))
    assert _screen([far, near]).kept == [far, near]  # no distribution to judge by
    nan = reply(3, _with("b", math.nan))
    result = _screen([far, nan])
    assert result.kept == [far] and [r.reason for r in result.rejected] == ["non-finite"]


def test_an_absolute_cap_applies_whatever_the_count() -> None:
    far = reply(1, plus(GLOBAL, 50.0))
    near = reply(2, plus(GLOBAL, 0.1))
    result = _screen([far, near], UpdateScreening(max_norm=10.0))
    assert result.kept == [near]
    assert [(r.reason, r.limit) for r in result.rejected] == [("norm-above-cap", 10.0)]


def test_replies_that_cannot_be_aggregated_are_rejected_not_fatal() -> None:
    good = [reply(1, plus(GLOBAL, 0.1)), reply(2, plus(GLOBAL, 0.1))]
    wrong_keys = reply(3, {"w": GLOBAL["w"] + 0.1})
    wrong_shape = reply(4, {"w": np.zeros((3, 4), dtype=np.float32), "b": GLOBAL["b"]})
    no_weight = reply(5, plus(GLOBAL, 0.1), examples=0)
    result = _screen([*good, wrong_keys, wrong_shape, no_weight])
    assert result.kept == good
    assert [(r.node_id, r.reason) for r in result.rejected] == [
        (3, "malformed"),
        (4, "malformed"),
        (5, "malformed"),
    ]
    assert "shape" in result.rejected[1].detail and "num-examples" in result.rejected[2].detail


def test_failed_replies_are_neither_kept_nor_rejected() -> None:
    good = reply(1, plus(GLOBAL, 0.1))
    result = _screen([good, error_reply(2, GLOBAL)])
    assert result.kept == [good] and result.rejected == []
