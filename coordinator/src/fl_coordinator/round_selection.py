"""RoundSelection: picks a round's Flower nodes with a DeviceSelector, and feeds it outcomes.

It is the bridge between Flower's node ids and the fleet's devices: candidates come from the
registry (live, eligible, within the run's hard constraints), the selector chooses among
those whose SuperNode is connected, and after the round every selected device's outcome
(replied in time and aggregated, or not; how long it took; its loss) goes back to the
selector. Every candidate's decision is kept for the round's report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from flwr.app import ConfigRecord, Message, MetricRecord

from fl_coordinator.device_selector import (
    Candidate,
    DeviceSelector,
    Outcome,
    build_selector,
    overcommitted,
)
from fl_coordinator.errors import NotEnoughDevices
from fl_coordinator.update_screening import DEVICE_RECORD
from fl_shared.wire import CandidateListing, SelectionCandidate, SelectionDecision

log = structlog.get_logger(__name__)

# Until a device has trained, its data size is assumed to be the fleet's median (or this).
DEFAULT_EXAMPLES = 1000


@dataclass(frozen=True)
class SelectionSettings:
    """A run's selection options (RunRequest's, read back from the run config)."""

    policy: str = "capability"
    devices_per_round: int | None = None
    overcommit: float = 1.3
    max_staleness_rounds: int = 20
    seed: int = 0

    @classmethod
    def from_run_config(cls, cfg: Mapping[str, bool | float | int | str]) -> SelectionSettings:
        """Read the options back (a run config without them gets the defaults)."""
        per_round = int(cfg.get("devices-per-round", 0))
        return cls(
            policy=str(cfg.get("selection", "capability")),
            devices_per_round=per_round if per_round > 0 else None,
            overcommit=float(cfg.get("overcommit", 1.3)),
            max_staleness_rounds=int(cfg.get("max-staleness-rounds", 20)),
            seed=int(cfg.get("seed", 0)),
        )


@dataclass
class RoundSelection:
    """One run's selection state: the selector, the node-to-device map, the last decisions."""

    settings: SelectionSettings
    # node id -> device id of the devices that answered the run's wake-up query.
    devices: dict[int, str]
    # The registry's candidates now (None when the registry cannot be reached).
    candidates: Callable[[], CandidateListing | None]
    min_devices: int = 1
    wait_timeout_s: float = 120.0
    model_bytes: int = 0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    selector: DeviceSelector = field(init=False)
    decisions: list[SelectionDecision] = field(default_factory=list, init=False)
    _selected: dict[int, str] = field(default_factory=dict, init=False)
    _examples: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.selector = build_selector(
            self.settings.policy,
            seed=self.settings.seed,
            max_staleness_rounds=self.settings.max_staleness_rounds,
        )

    @property
    def target(self) -> int | None:
        """Updates aggregated per round (None: every selected device's)."""
        return self.settings.devices_per_round

    def choose(self, server_round: int, node_ids: Callable[[], Iterable[int]]) -> list[int]:
        """The node ids to train this round; waits (bounded) for enough candidates."""
        deadline = self.clock() + self.wait_timeout_s
        while True:
            connected = set(node_ids())
            candidates, excluded = self._candidates(connected)
            needed = max(self.min_devices, 1)
            if len(candidates) >= needed:
                break
            if self.clock() >= deadline:
                reasons = "; ".join(f"{d.device_id}: {d.reason}" for d in excluded[:5])
                raise NotEnoughDevices(
                    f"only {len(candidates)} devices may be selected for round {server_round} "
                    f"and the run needs {needed} (waited {self.wait_timeout_s:.0f} s)"
                    + (f"; kept out: {reasons}" if reasons else "")
                    + ": start or undrain devices, relax the run's constraints, or lower "
                    "min_devices"
                )
            self.sleep(1.0)
        target = self.target
        if target is None:
            count = len(candidates)
        else:
            target = min(target, len(candidates))
            count = min(overcommitted(target, self.settings.overcommit), len(candidates))
        selection = self.selector.select(
            server_round, candidates, count, target=target, model_bytes=self.model_bytes
        )
        node_of = {device: node for node, device in self.devices.items()}
        self._selected = {node_of[d]: d for d in selection.selected if d in node_of}
        self.decisions = [
            *excluded,
            *(
                SelectionDecision(
                    device_id=d.device_id,
                    selected=d.selected,
                    score=finite_or_none(d.score),
                    reason=d.reason[:200],
                    predicted_s=finite_or_none(d.predicted_s),
                )
                for d in selection.decisions
            ),
        ]
        log.info(
            "devices_selected",
            round=server_round,
            policy=self.settings.policy,
            selected=list(self._selected.values()),
            candidates=len(candidates),
            target=target,
        )
        return list(self._selected)

    def _candidates(self, connected: set[int]) -> tuple[list[Candidate], list[SelectionDecision]]:
        listing = self.candidates()
        if listing is None:  # the registry is unreachable: every connected device, unmeasured
            listing = CandidateListing(
                candidates=[
                    SelectionCandidate(device_id=d)
                    for n, d in self.devices.items()
                    if n in connected
                ]
            )
        live = {d for n, d in self.devices.items() if n in connected}
        known = sorted(self._examples.values())
        typical = known[len(known) // 2] if known else DEFAULT_EXAMPLES
        candidates = [
            Candidate(
                device_id=c.device_id,
                num_examples=self._examples.get(c.device_id, typical),
                samples_per_s=c.samples_per_s,
                memory_bytes=c.memory_bytes,
                accelerator=c.accelerator,
                throttled=c.throttled,
            )
            for c in listing.candidates
            if c.device_id in live
        ]
        excluded = list(listing.excluded)
        excluded += [
            SelectionDecision(
                device_id=c.device_id, selected=False, reason="SuperNode not connected"
            )
            for c in listing.candidates
            if c.device_id not in live
        ]
        return candidates, excluded

    def learn(
        self,
        server_round: int,
        replies: Sequence[Message],
        rejected: Iterable[str],
        reply_seconds: Mapping[int, float],
    ) -> None:
        """Tell the selector what each selected device did this round."""
        refused = set(rejected)
        outcomes: dict[str, Outcome] = {}
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            device = self._selected.get(node)
            if device is None or msg.has_error():
                continue
            content = msg.content
            record = content.config_records.get(DEVICE_RECORD, ConfigRecord())
            device = str(record.get("device-id", device)) or device
            metrics = next(iter(content.metric_records.values()), MetricRecord())
            examples = int(metric_number(metrics.get("num-examples"), 0))
            if examples > 0:
                self._examples[device] = examples
            in_time = device not in refused
            rms = metric_number(metrics.get("train-loss-rms"), math.nan)
            if not math.isfinite(rms):
                rms = metric_number(metrics.get("train-loss"), math.nan)
            outcomes[device] = Outcome(
                device_id=device,
                completed=in_time,
                duration_s=reply_seconds.get(node),
                num_examples=examples,
                loss_rms=rms if math.isfinite(rms) else None,
            )
        # A device the round stopped waiting for took longer than the round so far: that
        # lower bound is what it reports (Oort treats it as a straggler's duration).
        waited = max(reply_seconds.values(), default=None)
        for device in self._selected.values():
            outcomes.setdefault(
                device, Outcome(device_id=device, completed=False, duration_s=waited)
            )
        self.selector.observe(server_round, list(outcomes.values()))


def metric_number(value: object, default: float) -> float:
    """A metric record's number, or ``default`` when it holds none."""
    return float(value) if isinstance(value, int | float) else default


def finite_or_none(value: object) -> float | None:
    """A finite number, or None (NaN, infinity, not a number)."""
    number = metric_number(value, math.nan)
    return number if math.isfinite(number) else None
