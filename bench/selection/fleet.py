"""SimulatedFleet: heterogeneous devices with a virtual clock, in the style of FedScale's traces.

Every device gets, once per seed:

- a compute latency per training sample, lognormal (median ``latency_median_s``, sigma
  ``latency_sigma``); ``straggler_share`` of the devices are extreme stragglers, 10-50x slower
  (log-uniform), and their probe measures that;
- a link bandwidth, lognormal (median ``bandwidth_median_mbit``, sigma ``bandwidth_sigma``),
  clipped to ``bandwidth_range_mbit``;
- an availability trace: alternating online / offline sessions with lognormal lengths, from a
  random phase at time 0. A device offline at a round's start is no candidate; one that goes
  offline before its update is sent never replies;
- ``throttled_share`` of the devices train ``throttle_range`` (uniform) times slower than their
  probe measured; half of them say so (``Candidate.throttled``, the heartbeat's temperature),
  the others do not.

What a selector sees (``Candidate``) are the measurements: ``samples_per_s`` = 1 / latency of the
unthrottled device times lognormal noise (sigma ``speed_noise``), bandwidth the same way
(``bandwidth_noise``), the exact number of examples. The time a device really takes is
``examples x latency x jitter + 2 x model bytes / bandwidth`` (jitter: lognormal per device and
round, sigma ``round_jitter``; drawn once per seed and round number, so that every policy meets
the same fleet).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fl_coordinator.device_selector import Candidate

MBIT = 1e6 / 8  # bytes per second in one Mbit/s


@dataclass(frozen=True)
class FleetConfig:
    """Distributions of the simulated fleet (see the module docstring)."""

    num_devices: int = 250
    latency_median_s: float = 0.02
    latency_sigma: float = 0.9
    straggler_share: float = 0.05
    straggler_range: tuple[float, float] = (10.0, 50.0)
    bandwidth_median_mbit: float = 10.0
    bandwidth_sigma: float = 1.0
    bandwidth_range_mbit: tuple[float, float] = (1.0, 100.0)
    throttled_share: float = 0.04
    throttle_range: tuple[float, float] = (2.0, 4.0)
    speed_noise: float = 0.15
    bandwidth_noise: float = 0.2
    round_jitter: float = 0.1
    online_median_s: float = 300.0
    online_sigma: float = 1.0
    offline_median_s: float = 150.0
    offline_sigma: float = 1.0
    horizon_s: float = 400_000.0
    max_rounds: int = 2_000  # rows of the per-round jitter table


@dataclass(frozen=True)
class Attempt:
    """What one selected device does in a round that starts at ``start_s``."""

    device: int
    duration_s: float  # from sending the model to receiving its update, had it stayed online
    dropped: bool  # went offline before sending its update

    @property
    def replied(self) -> bool:
        return not self.dropped


class SimulatedFleet:
    """The devices of one seed: true speeds, what they report, and when they are online."""

    def __init__(self, config: FleetConfig, num_examples: np.ndarray, seed: int) -> None:
        """Draw every device's speed, link and availability trace from ``seed``."""
        n = config.num_devices
        if len(num_examples) != n:
            raise ValueError(f"num_examples has {len(num_examples)} entries for {n} devices")
        self.config = config
        self.num_examples = np.asarray(num_examples, dtype=np.int64)
        self.device_ids = [f"dev-{i:03d}" for i in range(n)]
        rng = np.random.default_rng([seed, 0xF1EE7])

        base = config.latency_median_s * np.exp(config.latency_sigma * rng.standard_normal(n))
        self.straggler = np.zeros(n, dtype=bool)
        self.straggler[rng.choice(n, round(config.straggler_share * n), replace=False)] = True
        low, high = config.straggler_range
        slow = np.exp(rng.uniform(math.log(low), math.log(high), n))
        base = np.where(self.straggler, base * slow, base)  # the probe sees a straggler's speed

        self.throttled = np.zeros(n, dtype=bool)
        self.throttled[rng.choice(n, round(config.throttled_share * n), replace=False)] = True
        self.throttle_factor = np.where(self.throttled, rng.uniform(*config.throttle_range, n), 1.0)
        # Half the throttled devices report it; the others are slow in silence.
        self.reports_throttled = self.throttled & (rng.random(n) < 0.5)
        self.latency_s = base * self.throttle_factor  # true seconds per sample

        bw_low, bw_high = config.bandwidth_range_mbit
        mbit = config.bandwidth_median_mbit * np.exp(
            config.bandwidth_sigma * rng.standard_normal(n)
        )
        self.bandwidth_bytes_per_s = np.clip(mbit, bw_low, bw_high) * MBIT

        self.reported_samples_per_s = np.exp(config.speed_noise * rng.standard_normal(n)) / base
        self.reported_bandwidth = self.bandwidth_bytes_per_s * np.exp(
            config.bandwidth_noise * rng.standard_normal(n)
        )
        self.jitter = np.exp(config.round_jitter * rng.standard_normal((config.max_rounds + 1, n)))
        self._online_at_zero, self._toggles = self._availability(rng)

    def _availability(self, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per device: online at time 0?, and the times its state flips, up to the horizon."""
        c = self.config
        mean_on = c.online_median_s * math.exp(c.online_sigma**2 / 2)
        mean_off = c.offline_median_s * math.exp(c.offline_sigma**2 / 2)
        online0 = rng.random(c.num_devices) < mean_on / (mean_on + mean_off)
        toggles = []
        for online in online0:
            times: list[float] = []
            state = bool(online)
            # The session under way at time 0 is partly over: a uniform share of one is left.
            t = self._session(rng, state) * rng.random()
            while t < c.horizon_s:
                times.append(t)
                state = not state
                t += self._session(rng, state)
            toggles.append(np.asarray(times))
        return online0, toggles

    def _session(self, rng: np.random.Generator, online: bool) -> float:
        c = self.config
        if online:
            return c.online_median_s * math.exp(c.online_sigma * rng.standard_normal())
        return c.offline_median_s * math.exp(c.offline_sigma * rng.standard_normal())

    # -- the virtual clock ---------------------------------------------------------------------

    def online(self, device: int, t: float) -> bool:
        """Whether ``device`` is online at virtual time ``t``."""
        self._check(t)
        flips = int(np.searchsorted(self._toggles[device], t, side="right"))
        return bool(self._online_at_zero[device]) ^ (flips % 2 == 1)

    def next_change_s(self, device: int, t: float) -> float:
        """The first time after ``t`` that ``device`` changes state (inf: not before the end)."""
        toggles = self._toggles[device]
        index = int(np.searchsorted(toggles, t, side="right"))
        return float(toggles[index]) if index < len(toggles) else math.inf

    def online_devices(self, t: float) -> list[int]:
        """The devices online at ``t``."""
        return [d for d in range(self.config.num_devices) if self.online(d, t)]

    def _check(self, t: float) -> None:
        if t > self.config.horizon_s:
            raise ValueError(f"virtual time {t:.0f} s is past the fleet's horizon; raise horizon_s")

    def candidate(self, device: int) -> Candidate:
        """What the coordinator knows about ``device``: its measured capabilities."""
        return Candidate(
            device_id=self.device_ids[device],
            num_examples=int(self.num_examples[device]),
            samples_per_s=float(self.reported_samples_per_s[device]),
            bandwidth_bytes_per_s=float(self.reported_bandwidth[device]),
            throttled=bool(self.reports_throttled[device]),
        )

    def attempt(self, device: int, round_number: int, start_s: float, model_bytes: int) -> Attempt:
        """Train-and-send of ``device`` in round ``round_number`` from ``start_s``, for real."""
        jitter = self.jitter[min(round_number, self.config.max_rounds), device]
        compute = self.num_examples[device] * self.latency_s[device] * jitter
        duration = float(compute + 2 * model_bytes / self.bandwidth_bytes_per_s[device])
        dropped = self.next_change_s(device, start_s) < start_s + duration
        return Attempt(device=device, duration_s=duration, dropped=dropped)

    # -- description ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts and quantiles of the fleet, for the JSON record."""
        c = self.config
        probe = np.arange(0.0, min(c.horizon_s, 20_000.0), 60.0)
        online_share = [len(self.online_devices(t)) / c.num_devices for t in probe[:50]]
        sessions = [np.diff(t) for t in self._toggles if len(t) > 1]
        flips = np.concatenate(sessions) if sessions else np.zeros(0)
        true_duration = self.num_examples * self.latency_s
        return {
            "num_devices": c.num_devices,
            "stragglers": int(self.straggler.sum()),
            "throttled": int(self.throttled.sum()),
            "throttled_reported": int(self.reports_throttled.sum()),
            "latency_ms_quantiles": _quantiles(self.latency_s * 1000),
            "bandwidth_mbit_quantiles": _quantiles(self.bandwidth_bytes_per_s / MBIT),
            "examples_quantiles": _quantiles(self.num_examples),
            "compute_s_quantiles": _quantiles(true_duration),
            "devices_with_churn": int(sum(len(t) > 0 for t in self._toggles)),
            "mean_online_share": float(np.mean(online_share)),
            "median_session_s": float(np.median(flips)) if len(flips) else None,
            "config": asdict(c),
        }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    qs = np.quantile(np.asarray(values, dtype=float), [0.0, 0.05, 0.5, 0.95, 1.0])
    return dict(zip(("min", "p5", "p50", "p95", "max"), (float(q) for q in qs), strict=True))
