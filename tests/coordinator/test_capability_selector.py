"""Tests for fl_coordinator.capability_selector and the shared selector interface."""

from __future__ import annotations

import itertools

import pytest

from fl_coordinator.capability_selector import CapabilitySelector
from fl_coordinator.device_selector import (
    Candidate,
    Outcome,
    build_selector,
    overcommitted,
    prior_duration_s,
)
from fl_coordinator.random_selector import RandomSelector


def fleet(speeds: dict[str, float], examples: int = 100) -> list[Candidate]:
    return [Candidate(d, num_examples=examples, samples_per_s=s) for d, s in speeds.items()]


def test_prior_duration_is_compute_plus_the_model_both_ways() -> None:
    c = Candidate("a", num_examples=200, samples_per_s=100.0, bandwidth_bytes_per_s=1e6)
    assert prior_duration_s(c, model_bytes=500_000) == pytest.approx(2.0 + 1.0)
    assert prior_duration_s(Candidate("b"), 10) is None


def test_overcommitted_rounds_up_and_refuses_nonsense() -> None:
    assert overcommitted(10, 1.3) == 13
    assert overcommitted(3, 1.0) == 3
    with pytest.raises(ValueError, match=r"at least 1\.0"):
        overcommitted(3, 0.5)


def test_build_selector_knows_the_three_policies() -> None:
    assert isinstance(build_selector("random"), RandomSelector)
    assert isinstance(build_selector("capability"), CapabilitySelector)
    assert build_selector("oort").policy == "oort"
    with pytest.raises(ValueError, match="random, oort, capability"):
        build_selector("fastest")


def test_capability_leaves_out_a_straggler_it_has_measured() -> None:
    selector = CapabilitySelector()
    devices = fleet({"fast-1": 100, "fast-2": 90, "fast-3": 80, "slow": 2})
    selection = selector.select(1, devices, 2, model_bytes=0)
    assert "slow" not in selection.selected
    assert len(selection.selected) == 2
    slow = next(d for d in selection.decisions if d.device_id == "slow")
    assert not slow.selected and slow.reason == "slower than the round's deadline"
    assert slow.predicted_s == pytest.approx(50.0)


def test_every_candidate_gets_a_decision_and_only_candidates_are_selected() -> None:
    selector = CapabilitySelector()
    devices = fleet({f"d{i}": 10.0 + i for i in range(8)})
    selection = selector.select(1, devices, 3, target=2)
    assert {d.device_id for d in selection.decisions} == {c.device_id for c in devices}
    assert len(selection.selected) == 3
    assert set(selection.selected) <= {c.device_id for c in devices}
    assert [d.selected for d in selection.decisions].count(True) == 3


def test_a_device_with_much_more_useful_data_is_worth_waiting_for() -> None:
    selector = CapabilitySelector()
    devices = [
        Candidate("small-fast", num_examples=10, samples_per_s=100),
        Candidate("small-fast-2", num_examples=10, samples_per_s=100),
        Candidate("big-slower", num_examples=2000, samples_per_s=1000),
    ]
    # big-slower takes 2 s, the others 0.1 s; but it brings 200x the utility.
    assert "big-slower" in selector.select(1, devices, 2).selected


def test_observed_durations_replace_the_probe() -> None:
    selector = CapabilitySelector()
    devices = fleet({"a": 100, "b": 100, "c": 100})
    first = selector.select(1, devices, 3)
    assert len(first.selected) == 3
    # "a" turns out to be 20 times slower than its probe said (throttled, busy...).
    selector.observe(
        1,
        [
            Outcome("a", True, duration_s=20.0, num_examples=100, loss_rms=1.0),
            Outcome("b", True, duration_s=1.0, num_examples=100, loss_rms=1.0),
            Outcome("c", True, duration_s=1.0, num_examples=100, loss_rms=1.0),
        ],
    )
    assert sorted(selector.select(2, devices, 2).selected) == ["b", "c"]


def test_a_late_device_is_predicted_slower_than_the_round_it_missed() -> None:
    selector = CapabilitySelector()
    devices = fleet({"a": 100, "b": 100, "c": 100})
    selector.select(1, devices, 3, target=2)
    selector.observe(
        1,
        [
            Outcome("a", True, duration_s=1.0, num_examples=100, loss_rms=1.0),
            Outcome("b", True, duration_s=1.1, num_examples=100, loss_rms=1.0),
            Outcome("c", False),
        ],
    )
    decision = {d.device_id: d for d in selector.select(2, devices, 2).decisions}
    assert decision["c"].predicted_s is not None and decision["c"].predicted_s > 1.1
    assert not decision["c"].selected


def test_throttled_devices_are_expected_to_be_slower() -> None:
    selector = CapabilitySelector()
    devices = [
        Candidate("hot", num_examples=100, samples_per_s=100, throttled=True),
        Candidate("cool", num_examples=100, samples_per_s=80),
    ]
    assert selector.select(1, devices, 1).selected == ["cool"]


def test_no_eligible_device_waits_longer_than_the_staleness_bound() -> None:
    selector = CapabilitySelector(max_staleness_rounds=3)
    devices = fleet({"fast-1": 100, "fast-2": 100, "slow": 1})
    picked_slow = []
    for round_number in range(1, 13):
        selection = selector.select(round_number, devices, 2)
        if "slow" in selection.selected:
            picked_slow.append(round_number)
            reason = next(d.reason for d in selection.decisions if d.device_id == "slow")
            assert reason == "staleness bound"
        selector.observe(
            round_number,
            [
                Outcome(d, True, duration_s=100.0 if d == "slow" else 1.0, num_examples=100)
                for d in selection.selected
            ],
        )
    assert picked_slow, "the slow device was starved"
    gaps = [b - a for a, b in itertools.pairwise([0, *picked_slow])]
    assert max(gaps) <= 4  # selected at the latest 3 rounds after the last time
    assert len(picked_slow) <= 4  # and only then


def test_same_seed_same_choices() -> None:
    devices = fleet({f"d{i}": 50.0 for i in range(10)})
    first = CapabilitySelector(seed=7).select(1, devices, 4).selected
    again = CapabilitySelector(seed=7).select(1, devices, 4).selected
    assert first == again


def test_random_selector_samples_uniformly() -> None:
    selector = RandomSelector(seed=1)
    devices = fleet({f"d{i}": 1.0 for i in range(4)})
    counts = dict.fromkeys((c.device_id for c in devices), 0)
    for round_number in range(400):
        for device in selector.select(round_number, devices, 2).selected:
            counts[device] += 1
    assert all(160 < n < 240 for n in counts.values()), counts
