"""Tests for fl_coordinator.oort_selector: Oort's exploration, exploitation, pacer and blacklist."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from fl_coordinator.device_selector import Candidate, Outcome, Selection, build_selector
from fl_coordinator.oort_selector import OortSelector


def device(index: int, examples: int = 100, seconds: float | None = None) -> Candidate:
    """A candidate whose capability estimate is ``seconds`` (examples / speed, no model)."""
    speed = None if seconds is None else examples / seconds
    return Candidate(device_id=f"d{index:02d}", num_examples=examples, samples_per_s=speed)


def done(device_id: str, loss: float = 1.0, seconds: float = 1.0, examples: int = 100) -> Outcome:
    return Outcome(device_id, True, duration_s=seconds, num_examples=examples, loss_rms=loss)


def reasons(selection: Selection) -> dict[str, str]:
    return {d.device_id: d.reason for d in selection.decisions}


def scores(selection: Selection) -> dict[str, float | None]:
    return {d.device_id: d.score for d in selection.decisions}


def simulate(seed: int, rounds: int = 40) -> list[list[str]]:
    """Availability churn, failures, stragglers and feedback: the selections of each round."""
    fleet = [device(i, examples=20 + 7 * i, seconds=1.0 + (i % 9)) for i in range(40)]
    churn = random.Random(99)
    selector = OortSelector(seed=seed)
    history = []
    for round_number in range(1, rounds + 1):
        available = [c for c in fleet if churn.random() < 0.7]
        selection = selector.select(round_number, available, 8)
        history.append(selection.selected)
        outcomes = []
        for device_id in selection.selected:
            index = int(device_id[1:])
            if index % 7 == 0:
                outcomes.append(Outcome(device_id, False))  # went away
            elif index % 5 == 0:
                outcomes.append(Outcome(device_id, False, duration_s=30.0))  # late
            else:
                outcomes.append(done(device_id, loss=0.5 + index / 40, seconds=1.0 + index % 9))
        selector.observe(round_number, outcomes)
    return history


def test_picks_at_most_count_only_among_candidates_with_a_decision_each() -> None:
    fleet = [device(i, examples=10 + i, seconds=1.0 + i % 4) for i in range(60)]
    churn = random.Random(3)
    selector = OortSelector(seed=1)
    for round_number in range(1, 80):
        available = churn.sample(fleet, churn.randint(0, len(fleet)))
        count = churn.randint(0, 30)
        selection = selector.select(round_number, available, count)
        ids = sorted(c.device_id for c in available)
        assert len(selection.selected) <= count
        assert len(set(selection.selected)) == len(selection.selected)
        assert set(selection.selected) <= set(ids)
        assert [d.device_id for d in selection.decisions] == ids
        assert {d.device_id for d in selection.decisions if d.selected} == set(selection.selected)
        if count < len(ids):
            assert len(selection.selected) == count  # the fill keeps every place taken
        selector.observe(round_number, [done(d) for d in selection.selected])


def test_same_seed_same_selections() -> None:
    assert simulate(seed=5) == simulate(seed=5)
    assert simulate(seed=5) != simulate(seed=6)


def test_without_history_it_explores_the_larger_devices() -> None:
    fleet = [device(i, examples=10 * (i + 1)) for i in range(100)]
    selection = OortSelector(seed=0).select(1, fleet, 10)
    assert len(selection.selected) == 10
    why = reasons(selection)
    assert {why[d] for d in selection.selected} == {"explore: unexplored"}
    assert all(scores(selection)[d] is None for d in selection.selected)
    # Drawn by size among the sample_window (5) x 10 largest.
    largest = {f"d{i:02d}" for i in range(50, 100)}
    assert set(selection.selected) <= largest
    assert why["d00"] == "outside explore window"


def test_without_history_devices_slower_than_the_preferred_duration_are_penalised() -> None:
    fast = [device(i, seconds=1.0) for i in range(10)]
    slow = [device(i, seconds=100.0) for i in range(10, 20)]
    picks: Counter[str] = Counter()
    for seed in range(30):
        selector = OortSelector(seed=seed)
        selection = selector.select(1, fast + slow, 5)
        assert selector.preferred_duration_s == 1.0  # the 30th percentile of the estimates
        picks.update("fast" if int(d[1:]) < 10 else "slow" for d in selection.selected)
    assert picks["fast"] == 150
    # Without a preferred duration (percentile 100 and above), speed does not matter.
    unpaced = OortSelector(seed=0, round_threshold=101)
    unpaced.select(1, fast + slow, 5)
    assert unpaced.preferred_duration_s == math.inf


def test_after_feedback_it_exploits_useful_fast_devices() -> None:
    good = [device(i, seconds=1.0) for i in range(20)]
    bad = [device(i, seconds=100.0) for i in range(20, 40)]
    selector = OortSelector(seed=2)
    chosen: Counter[str] = Counter()
    exploited: Counter[str] = Counter()
    for round_number in range(1, 81):
        selection = selector.select(round_number, good + bad, 8)
        why = reasons(selection)
        outcomes = []
        for device_id in selection.selected:
            kind = "good" if int(device_id[1:]) < 20 else "bad"
            chosen[kind] += 1
            if why[device_id] == "exploit: utility":
                exploited[kind] += 1
            if kind == "good":
                outcomes.append(done(device_id, loss=2.0, seconds=1.0))
            else:
                outcomes.append(done(device_id, loss=0.2, seconds=100.0))
        selector.observe(round_number, outcomes)
    assert chosen["good"] > 2.5 * chosen["bad"]  # the bad ones come from fills
    assert exploited["good"] > 20 * exploited["bad"]


def test_epsilon_decays_to_its_minimum() -> None:
    fleet = [device(i) for i in range(50)]
    selector = OortSelector(seed=0)
    selector.select(1, fleet, 10)
    assert selector.exploration == pytest.approx(0.9 * 0.98)
    seen = [selector.exploration]
    for round_number in range(2, 80):
        selector.select(round_number, fleet, 10)
        seen.append(selector.exploration)
    assert seen == sorted(seen, reverse=True)
    assert selector.exploration == 0.3
    # With every device explored, 10 - int(10 * 0.3) = 7 places are exploited.
    selector.observe(80, [done(c.device_id) for c in fleet])
    selection = selector.select(81, fleet, 10)
    assert Counter(reasons(selection)[d] for d in selection.selected) == {
        "exploit: utility": 7,
        "fill: random": 3,
    }


def test_a_selection_that_takes_every_candidate_leaves_epsilon_alone() -> None:
    fleet = [device(i) for i in range(5)]
    selector = OortSelector(seed=0)
    selection = selector.select(1, fleet, 5)
    assert selection.selected == [c.device_id for c in fleet]
    assert set(reasons(selection).values()) == {"all candidates fit"}
    assert selector.exploration == 0.9
    assert OortSelector().select(1, fleet, 0).selected == []


def paced(
    selector: OortSelector, fleet: list[Candidate], runs: int, loss_from: dict[int, float]
) -> tuple[list[float], list[float]]:
    """Run ``runs`` rounds, every selected device reporting the loss of the latest key <= round.

    Returns the round threshold and the preferred duration after each selection.
    """
    thresholds: list[float] = []
    durations: list[float] = []
    for round_number in range(1, runs + 1):
        selection = selector.select(round_number, fleet, 6)
        thresholds.append(selector.round_threshold)
        durations.append(selector.preferred_duration_s)
        loss = loss_from[max(k for k in loss_from if k <= round_number)]
        seconds = {c.device_id: float(int(c.device_id[1:]) + 1) for c in fleet}
        selector.observe(
            round_number, [done(d, loss=loss, seconds=seconds[d]) for d in selection.selected]
        )
    return thresholds, durations


def test_pacer_relaxes_the_preferred_duration_when_utility_stalls() -> None:
    fleet = [device(i, seconds=float(i + 1)) for i in range(30)]
    selector = OortSelector(seed=0, pacer_step=2)
    selector.observe(0, [done(c.device_id, seconds=float(i + 1)) for i, c in enumerate(fleet)])
    thresholds, durations = paced(selector, fleet, 8, {0: 1.0})
    # Checked every 2 runs from run 4: run 4 compares a window without exploitation yet.
    assert thresholds == [30, 30, 30, 30, 30, 35, 35, 40]
    assert durations[0] == 10.0  # 30th percentile of 1..30 s
    assert durations[-1] == 13.0  # 40th
    frozen = OortSelector(seed=0, pacer_step=2, pacer_delta=0)
    frozen.observe(0, [done(c.device_id, seconds=float(i + 1)) for i, c in enumerate(fleet)])
    assert set(paced(frozen, fleet, 8, {0: 1.0})[0]) == {30}


def test_pacer_tightens_the_preferred_duration_when_utility_jumps() -> None:
    fleet = [device(i, seconds=float(i + 1)) for i in range(30)]
    selector = OortSelector(seed=0, pacer_step=2)
    selector.observe(0, [done(c.device_id, seconds=float(i + 1)) for i, c in enumerate(fleet)])
    thresholds, durations = paced(selector, fleet, 6, {0: 1.0, 4: 10.0})
    assert thresholds[-1] == 25
    assert durations[-1] < durations[0]


def test_blacklist_leaves_out_devices_used_too_often() -> None:
    fleet = [device(i) for i in range(10)]

    def trained(selector: OortSelector) -> OortSelector:
        for round_number in (1, 2, 3):
            selector.observe(round_number, [done("d00")])
        selector.observe(3, [done(c.device_id) for c in fleet[1:]])
        return selector

    selection = trained(OortSelector(seed=0, blacklist_rounds=2)).select(4, fleet, 5)
    assert reasons(selection)["d00"] == "blacklisted"
    assert "d00" not in selection.selected
    assert len(selection.selected) == 5
    # Off by default.
    selection = trained(OortSelector(seed=0)).select(4, fleet, 5)
    assert "blacklisted" not in reasons(selection).values()


def test_blacklist_takes_the_most_used_first_up_to_its_share() -> None:
    fleet = [device(i) for i in range(10)]
    selector = OortSelector(seed=0, blacklist_rounds=2)  # blacklist_max_len 0.3: 3 of 10
    for round_number in (1, 2, 3):
        selector.observe(round_number, [done(c.device_id) for c in fleet])
    selector.observe(4, [done(d) for d in ("d04", "d05", "d06")])
    selection = selector.select(5, fleet, 5)
    blacklisted = {d for d, why in reasons(selection).items() if why == "blacklisted"}
    assert blacklisted == {"d04", "d05", "d06"}


def stale_device_picks(stale_round: int, seeds: range) -> tuple[int, float, float]:
    """How often d00 (low utility, last heard from in round 1) is drawn in round stale_round."""
    fleet = [device(i) for i in range(20)]
    drawn, score, others = 0, 0.0, 0.0
    for seed in seeds:
        selector = OortSelector(seed=seed, exploration_factor=0.0, exploration_min=0.0)
        selector.observe(1, [done("d00", loss=0.1)] + [done(c.device_id) for c in fleet[1:]])
        selector.observe(stale_round - 1, [done(c.device_id) for c in fleet[1:]])
        selection = selector.select(stale_round, fleet, 5)
        drawn += "d00" in selection.selected
        score = scores(selection)["d00"] or 0.0
        others = scores(selection)["d01"] or 0.0
    return drawn, score, others


def test_staleness_bonus_brings_back_a_long_unpicked_device() -> None:
    fresh_drawn, fresh_score, fresh_others = stale_device_picks(3, range(200))
    stale_drawn, stale_score, stale_others = stale_device_picks(100, range(200))
    assert stale_score > fresh_score  # sqrt(0.1 ln R / 1) grows with R
    assert stale_others < fresh_others  # recently heard from: the bonus shrinks
    assert stale_drawn > 2 * fresh_drawn


def test_failures_teach_nothing_and_stragglers_get_the_round_mean() -> None:
    fleet = [device(i, seconds=5.0) for i in range(10)]
    selector = OortSelector(seed=0)
    selector.observe(
        1,
        [
            done("d01", loss=2.0),
            done("d02", loss=1.0),
            Outcome("d03", False, duration_s=50.0),  # late
            Outcome("d04", False),  # went away
        ],
    )
    selection = selector.select(2, fleet, 3)
    got = scores(selection)
    predicted = {d.device_id: d.predicted_s for d in selection.decisions}
    assert got["d04"] is None and predicted["d04"] == 5.0  # still unexplored, estimate kept
    assert got["d03"] is not None and predicted["d03"] == 50.0
    assert got["d01"] is not None and got["d02"] is not None
    assert got["d01"] > got["d02"]


def test_settings_are_checked_and_the_policy_is_built_by_name() -> None:
    with pytest.raises(ValueError, match="exploration_min"):
        OortSelector(exploration_min=2.0)
    with pytest.raises(TypeError):
        OortSelector(no_such_knob=1)
    selector = build_selector("oort", seed=3)
    assert isinstance(selector, OortSelector)
    assert selector.settings.round_penalty == 2.0
