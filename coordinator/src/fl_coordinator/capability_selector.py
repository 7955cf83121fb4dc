"""CapabilitySelector: the fleet's default policy, from measured capabilities and history.

Every round it predicts, per candidate, the seconds from sending the model to receiving the
update, and picks the devices that bring the most statistical utility per second of round:

1. **Predicted duration.** Before a device has trained, from its measured capabilities
   (``prior_duration_s``: examples / training speed + 2 x model size / bandwidth), scaled by
   the fleet-wide median ratio of observed to predicted durations (a probe measures a
   reference workload, not this run's), and doubled while the device reports throttling.
   Once it has trained, from its own observed durations (exponentially weighted). A device
   the round stopped waiting for is known to take longer than that round: its prediction
   is raised to that bound.
2. **Reliability.** ``(completions + 1) / (selections + 2)`` over the rounds it should have
   finished (predicted within the round's duration) but sent nothing: it went away.
3. **Statistical utility** (Oort's definition): ``examples x sqrt(mean squared loss)`` of
   its last round; an optimistic prior (the fleet's upper-quartile loss) before its first,
   so that fast devices nobody has tried yet are tried early.
4. **Deadline.** For each possible round duration T (the predictions, in order), the
   devices predicted within T are ranked by utility x reliability; the round takes the
   ``count`` best of them. The T that maximises the expected utility of the ``target``
   updates the round aggregates, per second of round, wins. Slow devices are left out
   because they would make every round wait, not because they are slow per se: a slow
   device with much more useful data still gets in when it pays for its time.
5. **Bounded staleness.** A candidate not selected for ``max_staleness_rounds`` rounds
   is selected (stalest first, at most a quarter of the round's places), so that no
   eligible device and its data is starved.

The score in each ``Decision`` is expected utility per predicted second.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from fl_coordinator.device_selector import (
    Candidate,
    Decision,
    DeviceSelector,
    Outcome,
    Selection,
    prior_duration_s,
)

# Weight of the newest observation in a device's duration estimate.
DURATION_EWMA = 0.5
# A throttled device trains this many times slower than its probe measured (until observed).
THROTTLE_FACTOR = 2.0
# A late device that was predicted to finish within this share of the round went away.
DROPOUT_MARGIN = 0.8
# Places of a round that staleness may take.
STALE_SHARE = 0.25


@dataclass
class _History:
    """What the selector has learnt about one device."""

    first_seen: int
    selections: int = 0
    completions: int = 0
    failures: int = 0  # selected, predicted to finish in time, never replied
    last_selected: int | None = None
    duration_s: float | None = None  # observed (EWMA)
    lower_bound_s: float = 0.0  # takes at least this long (a round that did not wait for it)
    prior_s: float | None = None  # the capability prediction when last selected
    predicted_s: float | None = None  # the prediction when last selected
    utility: float | None = None  # examples x loss rms, its last round


@dataclass(frozen=True)
class _Scored:
    candidate: Candidate
    predicted_s: float
    value: float  # utility x reliability
    known: bool  # the prediction rests on a measurement or an observation


class CapabilitySelector(DeviceSelector):
    """Predicted duration, reliability and utility per device; a deadline per round."""

    policy = "capability"

    def __init__(self, seed: int = 0, max_staleness_rounds: int = 20) -> None:
        """Tie-breaks drawn from ``seed``; no device waits over ``max_staleness_rounds``."""
        if max_staleness_rounds < 1:
            raise ValueError("max_staleness_rounds must be at least 1")
        self.max_staleness_rounds = max_staleness_rounds
        self._rng = random.Random(seed)
        self._history: dict[str, _History] = {}
        self._ratios: list[float] = []  # observed / capability-predicted durations

    # -- learning ------------------------------------------------------------------------------

    def observe(self, round_number: int, outcomes: Sequence[Outcome]) -> None:
        """Update durations, reliability and utilities from one round's outcomes."""
        finished = [o.duration_s for o in outcomes if o.completed and o.duration_s is not None]
        round_s = max(finished, default=None)
        for outcome in outcomes:
            history = self._history.get(outcome.device_id)
            if history is None:
                continue
            if outcome.completed:
                self._completed(history, outcome)
            elif round_s is not None:
                history.lower_bound_s = max(history.lower_bound_s, round_s)
                predicted = history.predicted_s
                if predicted is not None and predicted <= DROPOUT_MARGIN * round_s:
                    history.failures += 1
            else:
                history.failures += 1  # nobody finished: count it against every device

    def _completed(self, history: _History, outcome: Outcome) -> None:
        history.completions += 1
        if outcome.duration_s is not None:
            seen = outcome.duration_s
            old = history.duration_s
            history.duration_s = (
                seen if old is None else (1 - DURATION_EWMA) * old + DURATION_EWMA * seen
            )
            history.lower_bound_s = 0.0  # it finished: the old bound says nothing any more
            if history.prior_s:
                self._ratios.append(seen / history.prior_s)
                del self._ratios[:-512]
        if outcome.loss_rms is not None and math.isfinite(outcome.loss_rms):
            history.utility = max(outcome.num_examples, 1) * outcome.loss_rms

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
        """Pick ``count`` devices: the best utility per second of round, stale ones first."""
        ordered = sorted(candidates, key=lambda c: c.device_id)
        for candidate in ordered:
            self._history.setdefault(candidate.device_id, _History(first_seen=round_number))
        count = min(count, len(ordered))
        if count <= 0:
            return Selection([], [self._skipped(c, None, "no places") for c in ordered])
        target = count if target is None else max(1, min(target, count))
        scored = self._score(ordered, model_bytes)
        deadline, chosen = self._best_deadline(scored, count, target)
        stale = self._stale(scored, chosen, round_number, count)
        reasons = dict.fromkeys((s.candidate.device_id for s in chosen), "best utility per second")
        if stale:
            kept = chosen[: count - len(stale)]
            reasons = {s.candidate.device_id: reasons[s.candidate.device_id] for s in kept}
            reasons.update(dict.fromkeys((s.candidate.device_id for s in stale), "staleness bound"))
            chosen = [*kept, *stale]
        priors = {c.device_id: prior_duration_s(c, model_bytes) for c in ordered}
        for item in chosen:
            history = self._history[item.candidate.device_id]
            history.selections += 1
            history.last_selected = round_number
            history.predicted_s = item.predicted_s
            history.prior_s = priors[item.candidate.device_id]
        decisions = []
        for item in scored:
            device_id = item.candidate.device_id
            score = item.value / max(item.predicted_s, 1e-9)
            if device_id in reasons:
                decisions.append(
                    Decision(device_id, True, score, reasons[device_id], item.predicted_s)
                )
            else:
                why = (
                    "slower than the round's deadline"
                    if item.predicted_s > deadline
                    else ("lower utility than the selected")
                )
                decisions.append(Decision(device_id, False, score, why, item.predicted_s))
        return Selection([s.candidate.device_id for s in chosen], decisions)

    def _skipped(self, candidate: Candidate, predicted: float | None, why: str) -> Decision:
        return Decision(candidate.device_id, False, None, why, predicted)

    def _score(self, ordered: list[Candidate], model_bytes: int) -> list[_Scored]:
        ratio = statistics.median(self._ratios) if self._ratios else 1.0
        losses = sorted(
            h.utility / max(c.num_examples or 1, 1)
            for c in ordered
            if (h := self._history[c.device_id]).utility is not None
        )
        prior_loss = losses[(3 * len(losses)) // 4] if losses else 1.0
        predictions: dict[str, float | None] = {}
        for candidate in ordered:
            history = self._history[candidate.device_id]
            predicted = history.duration_s
            if predicted is None:
                prior = prior_duration_s(candidate, model_bytes)
                if prior is not None:
                    predicted = prior * ratio * (THROTTLE_FACTOR if candidate.throttled else 1.0)
            if predicted is not None:
                predicted = max(predicted, history.lower_bound_s * 1.25)
            predictions[candidate.device_id] = predicted
        known = [p for p in predictions.values() if p is not None]
        fallback = statistics.median(known) if known else 1.0
        scored = []
        for candidate in ordered:
            history = self._history[candidate.device_id]
            examples = candidate.num_examples or 1
            utility = history.utility if history.utility is not None else examples * prior_loss
            attempts = history.completions + history.failures
            reliability = (history.completions + 1) / (attempts + 2)
            predicted = predictions[candidate.device_id]
            scored.append(
                _Scored(
                    candidate=candidate,
                    predicted_s=fallback if predicted is None else predicted,
                    value=utility * reliability,
                    known=predicted is not None,
                )
            )
        return scored

    def _best_deadline(
        self, scored: list[_Scored], count: int, target: int
    ) -> tuple[float, list[_Scored]]:
        """The deadline with the most expected utility per second, and the devices it takes."""
        by_time = sorted(scored, key=lambda s: (s.predicted_s, -s.value, self._rng.random()))
        best: tuple[float, float, list[_Scored]] | None = None
        heap: list[tuple[float, int]] = []  # the `count` most valuable so far: (value, index)
        for index, item in enumerate(by_time):
            heapq.heappush(heap, (item.value, index))
            if len(heap) > count:
                heapq.heappop(heap)
            if index + 1 < count:
                continue
            deadline = item.predicted_s
            if index + 1 < len(by_time) and by_time[index + 1].predicted_s == deadline:
                continue  # take every device with the same prediction together
            within = sorted((by_time[i] for _v, i in heap), key=lambda s: s.predicted_s)
            # The round ends when the target-th update arrives, at the latest at the deadline.
            finish = within[target - 1].predicted_s
            rate = sum(s.value for s in within[:target]) / max(finish, 1e-9)
            if best is None or rate > best[0]:
                best = (rate, deadline, sorted(within, key=lambda s: -s.value))
        assert best is not None  # count <= len(scored)
        return best[1], best[2]

    def _stale(
        self, scored: list[_Scored], chosen: list[_Scored], round_number: int, count: int
    ) -> list[_Scored]:
        """Candidates past the staleness bound, stalest first, within their share of places."""
        picked = {s.candidate.device_id for s in chosen}
        waiting = []
        for item in scored:
            if item.candidate.device_id in picked:
                continue
            history = self._history[item.candidate.device_id]
            since = history.first_seen if history.last_selected is None else history.last_selected
            if round_number - since >= self.max_staleness_rounds:
                waiting.append((round_number - since, item))
        waiting.sort(key=lambda pair: (-pair[0], pair[1].predicted_s))
        places = max(1, math.floor(count * STALE_SHARE)) if count > 1 else 1
        return [item for _age, item in waiting[:places]]
