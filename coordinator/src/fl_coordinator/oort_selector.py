"""OortSelector: Oort's training participant selector (Lai et al., OSDI 2021), re-implemented.

Oort treats each device as a bandit arm. Its algorithm (the paper's Algorithm 1; the code in
FedScale's ``thirdparty/oort/oort.py``, where Oort lives since its own repository,
SymbioticLab/Oort, was retired) runs once per round:

1. **Feedback.** A device that trained reports its *statistical utility*
   ``|B_i| * sqrt(mean of its squared per-example losses)`` (here ``num_examples * loss_rms``)
   and its round duration. Before it has trained, its reward is its data size and its
   duration the estimate from its device profile (here ``prior_duration_s``).
2. **Blacklist** (off by default). Devices that gave feedback more than ``blacklist_rounds``
   times are left out, the most used first, at most ``blacklist_max_len`` of all known devices.
3. **Pacer.** The preferred round duration T is the ``round_threshold``-th percentile of the
   known durations of every device seen so far. Every ``pacer_step`` rounds, the summed
   utility of the exploited devices over the last window is compared with the window
   before: within 10% (a stall) the percentile is raised by ``pacer_delta`` (T relaxes, up to
   the 100th percentile, where T is infinite); a change of 5 times or more lowers it (not
   below ``pacer_delta``).
4. **Exploitation.** Each explored device scores
   ``(min(reward, clip) - min) / range + sqrt(0.1 * ln(R) / L_i)``: its reward clipped at the
   ``clip_bound`` quantile and normalised (over the positive rewards of every admissible
   candidate, the data sizes of unexplored ones included, as the code does), plus a
   confidence bonus that grows with the round R for a device last heard from in round L_i
   (stale devices come back). A device slower
   than T is multiplied by ``(T / t_i) ** round_penalty``. Of ``count`` places,
   ``int(count * epsilon)`` are for exploration and the rest (at most the number of explored
   devices) are drawn without replacement, with probability proportional to the score, from
   the best-ranked devices down to ``cut_off_util`` times the score at the exploitation
   boundary, but no fewer than 10 times the exploitation places.
5. **Exploration.** The remaining places go to unexplored devices: their reward (data size)
   times the same duration penalty ranks them, and the places are drawn proportionally to it
   from the best ``sample_window`` times as many. epsilon starts at ``exploration_factor``
   and is multiplied by ``exploration_decay`` each round, down to ``exploration_min``.

Defaults are FedScale's (``fedscale/core/config_parser.py``, the maintained code), followed
where the paper or Oort's older ``training/argParser.py`` say otherwise:

=====================  =======  ==========================================================
knob                   default  source and notes
=====================  =======  ==========================================================
exploration_factor     0.9      config_parser and argParser; the paper's initial epsilon
exploration_decay      0.98     config_parser (argParser: 0.98, or 0.95 in one revision)
exploration_min        0.3      config_parser (Oort's argParser: 0.2)
round_threshold        30       config_parser: T is the 30th percentile of durations
                                (argParser: 10 in one revision, 101 = no T in another)
round_penalty          2.0      config_parser and argParser; the paper's alpha
pacer_step             20       config_parser and argParser; the paper's window W
pacer_delta            5        config_parser, in percentile points (argParser: 5 or 10;
                                the paper's Delta adds to T directly)
sample_window          5.0      config_parser and argParser
clip_bound             0.9      config_parser (argParser: 0.95 or 0.98)
cut_off_util           0.05     config_parser, commented "95 percentile": devices under 5% of
                                the boundary score leave the pool (argParser: 0.7)
blacklist_rounds       -1       config_parser and argParser: off (50 in the paper's outlier
                                experiment, Oort's training/README.md)
blacklist_max_len      0.3      config_parser and argParser
=====================  =======  ==========================================================

Constants of the code, not knobs there: the bonus weight 0.1 (also in the paper), the pool
floor of 10 times the exploitation places, the pacer's 10% and 5x thresholds, the minimum
reward scaled by 0.999 and the 1e-4 floors. ``exploration_alpha`` exists in the config but
only feeds a log line, so it is not a knob here.

Where the code and the paper disagree, this follows the code:

- Pacer: the paper relaxes T when the utility of the last window *decreased*; the code relaxes
  it when the utility *stalls* (within 10%) and tightens it when it changes 5-fold.
- T: the paper adds Delta seconds to T; the code moves a percentile of the known durations.
- Cut-off: the paper admits the devices above c% of the boundary device's utility (c = 95%,
  what the config's "95 percentile" comment refers to); the code keeps everything down to
  ``cut_off_util`` = 5% of it, and at least 10 times the places.
- Exploration: the paper samples unexplored devices by speed; the code by initial reward
  (data size), penalised for being slower than T.

Deviations from the code, and why:

- The first round runs the selector (all places explore, by data size). FedScale's client
  manager samples its first round uniformly at random instead; its selector would index past
  the end of the (empty) list of explored devices there. Every such index is bounded here.
- When ``count`` covers every candidate all are selected and the selector's state (epsilon,
  pacer) does not advance, as in FedScale, whose client manager then never calls Oort.
  Blacklisted devices are selected too in that case, as there.
- When exploitation and exploration leave places empty (few unexplored devices), the rest
  are drawn uniformly from the admissible (not blacklisted) candidates, as Oort's own
  repository (``oort/oort.py``) does; FedScale's copy returns fewer devices. That repository
  also sets epsilon to 0 for good once nothing is unexplored; with availability churn new
  devices keep arriving, so epsilon keeps its schedule here.
- FedScale keeps the previous round's exploration picks when no device is unexplored (and
  returns them again); here they are cleared. Its blacklist slices with a float (a
  ``TypeError`` once the cap binds); here the cap is ``int(blacklist_max_len * devices)``.
- Weighted draws without replacement are sequential draws from ``random.Random(seed)`` (what
  numpy's ``choice`` does, without numpy's global state). numpy refuses when fewer weights
  than draws are positive; here zero-weight devices are then drawn uniformly.
- Rounds are our ``round_number`` (R and L_i); the pacer counts the selections that ran the
  algorithm, as FedScale's ``training_round`` does. ``ln(R)`` and ``L_i`` are floored at 1.
- Unknown durations (``prior_duration_s`` is None) carry no penalty and do not count towards
  T's percentile; unknown data sizes give an initial reward of 0 (explored last).
  ``Candidate.throttled`` is not used: Oort has no such notion.
- An unexplored device's data size and duration estimate are refreshed from each round's
  candidate, as measurements change (FedScale reads its static trace once, at registration);
  after its first feedback the observed values are kept.
- Ties in every ranking break by device id, so that a seed reproduces the run.
- ``target`` is ignored: Oort picks ``count`` devices; over-commitment is the caller's.
- ``Selection.selected`` lists the exploitation picks (in draw order), then the exploration
  picks, then the fills; FedScale returns exploration first and its aggregator sorts by id.

Feedback (``observe``), as FedScale's aggregator gives it:

- completed with ``loss_rms``: utility ``num_examples * loss_rms``, observed duration;
- late or rejected (``completed`` False, a ``duration_s``): FedScale's stragglers, which get
  the mean utility of the round's completed devices (0 if none) and their duration; a
  completed device without ``loss_rms`` is treated the same way;
- failed (``completed`` False, no ``duration_s``): nothing is updated, as FedScale does for a
  device that went offline during the round. Such a device stays unexplored (or keeps its
  old utility and last-involved round).

Every feedback sets L_i to the round and counts towards the blacklist.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fl_coordinator.device_selector import (
    Candidate,
    Decision,
    DeviceSelector,
    Outcome,
    Selection,
    prior_duration_s,
)

# Weight of the confidence bonus sqrt(UCB_WEIGHT * ln(R) / L_i) (Algorithm 1 and the code).
UCB_WEIGHT = 0.1
# The exploitation pool stops below the cut-off only once it holds this many times the places.
POOL_FACTOR = 10
# Pacer: a window within this share of the one before is a stall (T relaxes) ...
PACER_STALL = 0.1
# ... and one at least this many times it away is a surge (T tightens).
PACER_SURGE = 5.0
# round_threshold is a percentile of durations; from 100 on, T is infinite.
MAX_THRESHOLD = 100.0
# The worst reward is scaled by this, so that it keeps a positive normalised term.
MIN_REWARD_SCALE = 0.999
# The code's floor for ranges, durations and sums.
FLOOR = 1e-4


@dataclass(frozen=True)
class OortSettings:
    """Oort's knobs, named as in FedScale's config_parser, with its defaults."""

    exploration_factor: float = 0.9
    exploration_decay: float = 0.98
    exploration_min: float = 0.3
    round_threshold: float = 30.0
    round_penalty: float = 2.0
    pacer_step: int = 20
    pacer_delta: float = 5.0
    sample_window: float = 5.0
    clip_bound: float = 0.9
    cut_off_util: float = 0.05
    blacklist_rounds: int = -1
    blacklist_max_len: float = 0.3

    def __post_init__(self) -> None:
        """Refuse values the algorithm cannot run with, naming the knob."""
        problems = {
            "exploration_factor": 0 <= self.exploration_factor <= 1,
            "exploration_decay": 0 < self.exploration_decay <= 1,
            "exploration_min": 0 <= self.exploration_min <= 1,
            "round_threshold": self.round_threshold >= 0,
            "round_penalty": self.round_penalty >= 0,
            "pacer_step": isinstance(self.pacer_step, int) and self.pacer_step >= 1,
            "pacer_delta": self.pacer_delta >= 0,
            "sample_window": self.sample_window >= 1,
            "clip_bound": 0 < self.clip_bound <= 1,
            "cut_off_util": self.cut_off_util >= 0,
            "blacklist_rounds": isinstance(self.blacklist_rounds, int)
            and self.blacklist_rounds >= -1,
            "blacklist_max_len": 0 <= self.blacklist_max_len <= 1,
        }
        bad = [name for name, ok in problems.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid Oort settings: {values} (see OortSettings)")


@dataclass
class _Arm:
    """What Oort knows about one device (FedScale's ``totalArms`` entry)."""

    reward: float  # statistical utility; the data size until the first feedback
    duration_s: float | None  # observed, or the profile's estimate until then
    last_round: int  # L_i: the round of the last feedback (of registration before)
    feedbacks: int = 0

    @property
    def explored(self) -> bool:
        return self.feedbacks > 0


@dataclass(frozen=True)
class _Norm:
    """Min, range and clip value of the rewards (the code's ``get_norm``)."""

    low: float = 0.0
    span: float = 1.0
    clip: float = math.inf

    @classmethod
    def of(cls, rewards: list[float], clip_bound: float) -> _Norm:
        if not rewards:
            return cls()
        ordered = sorted(rewards)
        clip = ordered[min(int(len(ordered) * clip_bound), len(ordered) - 1)]
        low = ordered[0] * MIN_REWARD_SCALE
        return cls(low=low, span=max(ordered[-1] - low, FLOOR), clip=clip)


def _weighted_sample(
    rng: random.Random, items: list[str], weights: list[float], k: int
) -> list[str]:
    """Draw ``k`` of ``items`` without replacement, each draw proportional to its weight.

    Once no positive weight is left, the rest are drawn uniformly.
    """
    pool = list(items)
    left = [max(w, 0.0) for w in weights]
    chosen: list[str] = []
    while pool and len(chosen) < k:
        total = sum(left)
        if total > 0:
            point = rng.random() * total
            index = max(i for i, w in enumerate(left) if w > 0)  # if rounding runs past the end
            running = 0.0
            for i, weight in enumerate(left):
                running += weight
                if point < running:
                    index = i
                    break
        else:
            index = rng.randrange(len(pool))
        chosen.append(pool.pop(index))
        left.pop(index)
    return chosen


class OortSelector(DeviceSelector):
    """Oort's exploration-exploitation selector with its pacer, seeded for reproducibility."""

    policy = "oort"

    def __init__(self, seed: int = 0, **overrides: Any) -> None:
        """Draw from ``random.Random(seed)``; ``overrides`` set ``OortSettings`` fields."""
        self.settings = OortSettings(**overrides)
        self._rng = random.Random(seed)
        self._arms: dict[str, _Arm] = {}
        self._exploration = self.settings.exploration_factor
        self._round_threshold = self.settings.round_threshold
        self._preferred_s = math.inf
        self._runs = 0  # selections that ran the algorithm: FedScale's training_round
        self._exploited: list[str] = []  # the last run's exploitation picks
        self._fed_back: set[str] = set()  # devices heard from since the last run
        self._exploit_utility: list[float] = []  # per run: mean utility of the last picks

    @property
    def exploration(self) -> float:
        """epsilon: the share of places the last selection gave to exploration."""
        return self._exploration

    @property
    def round_threshold(self) -> float:
        """The percentile of known durations that sets the preferred round duration."""
        return self._round_threshold

    @property
    def preferred_duration_s(self) -> float:
        """T of the last selection: slower devices are penalised (inf: none is)."""
        return self._preferred_s

    # -- learning ------------------------------------------------------------------------------

    def observe(self, round_number: int, outcomes: Sequence[Outcome]) -> None:
        """Record utilities and durations; stragglers get the round's mean utility."""
        utilities: list[float] = []
        stragglers: list[Outcome] = []
        for outcome in outcomes:
            loss = outcome.loss_rms
            if outcome.completed and loss is not None and math.isfinite(loss):
                utility = max(outcome.num_examples, 0) * abs(loss)
                utilities.append(utility)
                self._feedback(outcome, utility, round_number)
            elif outcome.completed or outcome.duration_s is not None:
                stragglers.append(outcome)
            # Failed without a reply: FedScale drops such devices without feedback.
        mean = sum(utilities) / max(1, len(utilities))
        for outcome in stragglers:
            self._feedback(outcome, mean, round_number)

    def _feedback(self, outcome: Outcome, utility: float, round_number: int) -> None:
        arm = self._arms.setdefault(
            outcome.device_id, _Arm(reward=0.0, duration_s=None, last_round=round_number)
        )
        arm.reward = utility
        if outcome.duration_s is not None:
            arm.duration_s = outcome.duration_s
        arm.last_round = round_number
        arm.feedbacks += 1
        self._fed_back.add(outcome.device_id)

    # -- choosing ------------------------------------------------------------------------------

    def select(
        self,
        round_number: int,
        candidates: Sequence[Candidate],
        count: int,
        *,
        target: int | None = None,
        model_bytes: int = 0,
    ) -> Selection:
        """Choose up to ``count`` candidates: exploit by utility, explore by data size."""
        by_id = {c.device_id: c for c in candidates}
        ids = sorted(by_id)
        for device_id in ids:
            self._register(by_id[device_id], round_number, model_bytes)
        if count <= 0 or not ids:
            return Selection([], [self._decision(d, False, "no places", None) for d in ids])
        if count >= len(ids):
            return self._take_all(round_number, ids)
        return self._run(round_number, ids, count)

    def _register(self, candidate: Candidate, round_number: int, model_bytes: int) -> None:
        prior = prior_duration_s(candidate, model_bytes)
        size = candidate.num_examples
        arm = self._arms.get(candidate.device_id)
        if arm is None:
            # FedScale caps the initial reward at the samples of one round; ours train one
            # pass over their data, so that is the data size.
            self._arms[candidate.device_id] = _Arm(
                reward=float(size or 0), duration_s=prior, last_round=round_number
            )
        elif not arm.explored:
            if size is not None:
                arm.reward = float(size)
            if prior is not None:
                arm.duration_s = prior

    def _take_all(self, round_number: int, ids: list[str]) -> Selection:
        """Every candidate fits: FedScale's client manager takes them all without Oort."""
        self._preferred_s = self._preferred_duration()
        scores = self._scores(round_number, ids, ids)
        decisions = [self._decision(d, True, "all candidates fit", scores.get(d)) for d in ids]
        return Selection(list(ids), decisions)

    def _run(self, round_number: int, ids: list[str], count: int) -> Selection:
        settings = self.settings
        self._runs += 1
        blacklist = self._blacklist()
        self._pace()
        self._preferred_s = self._preferred_duration()
        admissible = [d for d in ids if d not in blacklist]
        scores = self._scores(round_number, ids, admissible)

        # Exploitation: sample by utility among the devices above the cut-off.
        self._exploration = max(
            self._exploration * settings.exploration_decay, settings.exploration_min
        )
        ranked = sorted(
            (d for d in admissible if self._arms[d].explored), key=lambda d: (-scores[d], d)
        )
        exploit_len = min(count - int(count * self._exploration), len(ranked))
        pool = self._exploit_pool(ranked, scores, exploit_len)
        exploited = _weighted_sample(self._rng, pool, [scores[d] for d in pool], exploit_len)

        # Exploration: unexplored devices, the larger (and not too slow) first.
        unexplored = [d for d in admissible if not self._arms[d].explored]
        weights = {d: self._arms[d].reward * self._penalty(self._arms[d]) for d in unexplored}
        explore_len = min(len(unexplored), count - len(exploited))
        window_len = min(int(settings.sample_window * explore_len), len(unexplored))
        window = sorted(unexplored, key=lambda d: (-weights[d], d))[:window_len]
        explored = _weighted_sample(self._rng, window, [weights[d] for d in window], explore_len)

        # Places still empty: uniformly among the admissible rest (Oort's own repository).
        taken = set(exploited) | set(explored)
        rest = [d for d in admissible if d not in taken]
        filled = self._rng.sample(rest, min(count - len(taken), len(rest)))

        self._exploited = exploited
        reasons = dict.fromkeys(exploited, "exploit: utility")
        reasons.update(dict.fromkeys(explored, "explore: unexplored"))
        reasons.update(dict.fromkeys(filled, "fill: random"))
        in_pool, in_window = set(pool), set(window)
        decisions = []
        for device_id in ids:
            score = scores.get(device_id)
            if device_id in reasons:
                decisions.append(self._decision(device_id, True, reasons[device_id], score))
                continue
            if device_id in blacklist:
                why = "blacklisted"
            elif self._arms[device_id].explored:
                why = "not drawn" if device_id in in_pool else "below cut-off"
            else:
                why = "not drawn" if device_id in in_window else "outside explore window"
            decisions.append(self._decision(device_id, False, why, score))
        return Selection([*exploited, *explored, *filled], decisions)

    def _exploit_pool(
        self, ranked: list[str], scores: dict[str, float], exploit_len: int
    ) -> list[str]:
        """The best-ranked devices down to the cut-off, and at least POOL_FACTOR x the places."""
        if exploit_len <= 0:
            return []
        boundary = scores[ranked[min(exploit_len, len(ranked) - 1)]]
        cut_off = boundary * self.settings.cut_off_util
        pool: list[str] = []
        for device_id in ranked:
            if scores[device_id] < cut_off and len(pool) > POOL_FACTOR * exploit_len:
                break
            pool.append(device_id)
        return pool

    def _scores(self, round_number: int, ids: list[str], admissible: list[str]) -> dict[str, float]:
        """Utility of every explored device in ``ids``, normalised over ``admissible``.

        As in the code, the normalisation takes the positive rewards of all admissible
        candidates, unexplored ones (their data size) included.
        """
        rewards = [self._arms[d].reward for d in admissible if self._arms[d].reward > 0]
        norm = _Norm.of(rewards, self.settings.clip_bound)
        bonus_scale = UCB_WEIGHT * math.log(max(round_number, 1))
        scores = {}
        for device_id in ids:
            arm = self._arms[device_id]
            if not arm.explored:
                continue
            statistical = (min(arm.reward, norm.clip) - norm.low) / norm.span
            bonus = math.sqrt(bonus_scale / max(arm.last_round, 1))
            scores[device_id] = abs((statistical + bonus) * self._penalty(arm))
        return scores

    def _penalty(self, arm: _Arm) -> float:
        """``(T / t_i) ** round_penalty`` for a device slower than T, else 1."""
        duration = arm.duration_s
        if duration is None or duration <= self._preferred_s:
            return 1.0
        return (self._preferred_s / max(FLOOR, duration)) ** self.settings.round_penalty

    def _preferred_duration(self) -> float:
        """T: the ``round_threshold``-th percentile of every known device's duration."""
        if self._round_threshold >= MAX_THRESHOLD:
            return math.inf
        known = sorted(a.duration_s for a in self._arms.values() if a.duration_s is not None)
        if not known:
            return math.inf
        return known[min(int(len(known) * self._round_threshold / 100), len(known) - 1)]

    def _pace(self) -> None:
        """Record the last exploitation's utility; every pacer_step runs, move T's percentile."""
        settings = self.settings
        heard = [self._arms[d].reward for d in self._exploited if d in self._fed_back]
        self._exploit_utility.append(sum(heard) / (len(heard) + FLOOR))
        self._fed_back = set()
        step = settings.pacer_step
        del self._exploit_utility[: -2 * step]
        if self._runs < 2 * step or self._runs % step:
            return
        before = sum(self._exploit_utility[:step])
        latest = sum(self._exploit_utility[step:])
        change = abs(latest - before)
        if change <= before * PACER_STALL:
            self._round_threshold = min(MAX_THRESHOLD, self._round_threshold + settings.pacer_delta)
        elif change >= before * PACER_SURGE:
            self._round_threshold = max(
                settings.pacer_delta, self._round_threshold - settings.pacer_delta
            )

    def _blacklist(self) -> set[str]:
        """Devices heard from more than blacklist_rounds times, the most used first, capped."""
        limit = self.settings.blacklist_rounds
        if limit < 0:
            return set()
        over = sorted(
            (d for d, arm in self._arms.items() if arm.feedbacks > limit),
            key=lambda d: (-self._arms[d].feedbacks, d),
        )
        cap = int(self.settings.blacklist_max_len * len(self._arms))
        return set(over[:cap])

    def _decision(
        self, device_id: str, selected: bool, reason: str, score: float | None
    ) -> Decision:
        return Decision(
            device_id=device_id,
            selected=selected,
            score=score,
            reason=reason,
            predicted_s=self._arms[device_id].duration_s,
        )
