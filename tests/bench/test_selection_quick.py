"""The device-selection benchmark: its simulated fleet, its rounds, its quick mode end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bench.selection.fleet import MBIT, FleetConfig, SimulatedFleet
from bench.selection.partition import lognormal_dirichlet
from bench.selection.simulation import Data, Goal, RoundConfig, run_policy

REPO = Path(__file__).resolve().parents[2]
PRODUCT_SELECTORS = {
    "random": "fl_coordinator.random_selector.RandomSelector",
    "oort": "fl_coordinator.oort_selector.OortSelector",
    "capability": "fl_coordinator.capability_selector.CapabilitySelector",
}
LABELS = np.repeat(np.arange(10), 6000)  # Fashion-MNIST's balanced 60,000 training labels


def make_fleet(seed: int = 0, config: FleetConfig | None = None) -> SimulatedFleet:
    config = config or FleetConfig()
    split = lognormal_dirichlet(
        LABELS, num_devices=config.num_devices, alpha=0.5, seed=seed, total=48_000
    )
    return SimulatedFleet(config, split.sizes, seed)


def test_fleet_is_large_heavy_tailed_with_stragglers_and_churn() -> None:
    fleet = make_fleet()
    n = fleet.config.num_devices
    assert n >= 200
    assert 0.04 <= fleet.straggler.mean() <= 0.06
    typical = fleet.latency_s[~fleet.straggler & ~fleet.throttled]
    assert np.median(fleet.latency_s[fleet.straggler]) >= 10 * np.median(typical)
    assert typical.max() / typical.min() >= 100  # about two orders of magnitude
    mbit = fleet.bandwidth_bytes_per_s / MBIT
    assert mbit.min() >= 1.0 and mbit.max() <= 100.0
    assert np.quantile(mbit, 0.95) / np.quantile(mbit, 0.05) >= 10

    summary = fleet.summary()
    assert summary["devices_with_churn"] == n
    assert 0.4 <= summary["mean_online_share"] <= 0.9
    assert set(fleet.online_devices(0.0)) != set(fleet.online_devices(3600.0))


def test_candidates_show_noisy_measurements_and_only_some_throttling() -> None:
    fleet = make_fleet()
    plain = ~fleet.throttled
    # Measured speed vs the real one: unbiased, ~15 % noise.
    log_error = np.log(fleet.reported_samples_per_s[plain] * fleet.latency_s[plain])
    assert abs(np.median(log_error)) < 0.05
    assert 0.1 < np.std(log_error) < 0.2
    # Throttled devices are 2-4x slower than measured; some say so, some do not.
    slower = (fleet.reported_samples_per_s * fleet.latency_s)[fleet.throttled]
    assert np.median(slower) > 1.8
    assert 0 < fleet.reports_throttled.sum() < fleet.throttled.sum()
    reported = [fleet.candidate(d).throttled for d in range(fleet.config.num_devices)]
    assert sum(reported) == fleet.reports_throttled.sum()
    candidate = fleet.candidate(7)
    assert candidate.num_examples == fleet.num_examples[7]
    assert candidate.samples_per_s and candidate.bandwidth_bytes_per_s


def test_a_device_that_goes_offline_mid_round_never_replies() -> None:
    fleet = make_fleet()
    device = next(d for d in fleet.online_devices(0.0) if fleet.next_change_s(d, 0.0) > 1.0)
    leaves = fleet.next_change_s(device, 0.0)
    # A model so large that sending it takes longer than the session has left.
    huge = int(leaves * fleet.bandwidth_bytes_per_s[device])
    assert fleet.attempt(device, 1, 0.0, huge).dropped
    quick = fleet.attempt(device, 1, 0.0, 0)
    assert quick.dropped == (quick.duration_s > leaves)


def test_partition_sizes_are_lognormal_and_labels_skewed() -> None:
    split = lognormal_dirichlet(LABELS, num_devices=250, alpha=0.1, seed=3, total=48_000)
    sizes = split.sizes
    assert abs(sizes.sum() - 48_000) < 500
    assert sizes.max() / np.median(sizes) > 5
    every = np.concatenate(split.indices)
    assert len(np.unique(every)) == len(every)  # no example on two devices
    labels_held = [len(np.unique(LABELS[rows])) for rows in split.indices]
    assert np.median(labels_held) <= 4  # alpha 0.1: a few classes per device


def test_rounds_use_the_products_selectors() -> None:
    rng = np.random.default_rng(0)
    config = FleetConfig(num_devices=60, max_rounds=10)
    split = lognormal_dirichlet(LABELS, num_devices=60, alpha=0.5, seed=1, total=6_000)
    fleet = SimulatedFleet(config, split.sizes, 1)
    images = rng.random((len(LABELS), 784), dtype=np.float32)
    data = Data(images, LABELS, split.indices, images[:200], LABELS[:200])
    for policy, cls in PRODUCT_SELECTORS.items():
        run = run_policy(
            policy,
            seed=1,
            fleet=fleet,
            data=data,
            config=RoundConfig(target=5, max_rounds=4),
            goal=Goal(accuracy=1.1, budget_s=1e9, horizon_s=1e9),
        )
        assert run["selector_class"] == cls
        assert run["rounds_run"] == 4 and run["censored"]
        assert all(r["selected"] == 7 and r["aggregated"] <= 5 for r in run["rounds"])
        assert sum(run["selection_counts"]) == 4 * 7
        assert run["times_s"] == sorted(run["times_s"])


@pytest.mark.e2e  # needs Fashion-MNIST (make e2e installs it); ~30 s on 2 cores
def test_quick_mode_compares_all_policies_on_both_alphas(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.selection.run", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "capability vs random" in result.stdout

    png = tmp_path / "accuracy_vs_time.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "results.json").read_text())
    runs = record["runs"]
    assert {(r["policy"], r["alpha"]) for r in runs} == {
        (p, a) for p in PRODUCT_SELECTORS for a in (0.5, 0.1)
    }
    assert len(runs) == 3 * 2 * 2
    assert set(record["selector_classes"]) == set(PRODUCT_SELECTORS.values())
    for run in runs:
        assert run["selector_class"] == PRODUCT_SELECTORS[run["policy"]]
        assert math.isfinite(run["tta_s"]) and run["tta_s"] > 0
        assert run["times_s"] == sorted(run["times_s"])
        accuracies = run["accuracies"]
        assert np.mean(accuracies[-5:]) > np.mean(accuracies[:5]) + 0.2
    for fleets in record["fleets"].values():
        fleet = fleets["0.5"]
        assert fleet["num_devices"] >= 200
        assert 0.04 <= fleet["stragglers"] / fleet["num_devices"] <= 0.06
        assert fleet["devices_with_churn"] == fleet["num_devices"]
    assert sum(r["dropped"] for run in runs for r in run["rounds"]) > 0  # churn mid-round
    speedups = {(s["alpha"], s["comparison"]) for s in record["summary"]["speedups"]}
    assert ("all", "capability vs random") in speedups
