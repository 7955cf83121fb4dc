"""Experiment: the settings of a benchmark invocation and the work of one seed (one worker task).

A seed fixes the fleet (speeds, links, availability, jitter), the data split of each alpha, the
initial model and every selector's random draws: all policies of a seed meet the same fleet.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench.selection.fleet import FleetConfig, SimulatedFleet
from bench.selection.partition import lognormal_dirichlet
from bench.selection.simulation import Data, Goal, RoundConfig, run_policy

from fl_shared.catalog import DEFAULT_FASHION_MNIST_DIR
from fl_shared.datasets import load_dataset

POLICIES = ("random", "oort", "capability")
# Target test accuracy per Dirichlet alpha.
TARGETS = {0.5: 0.80, 0.1: 0.75}


@dataclass(frozen=True)
class Experiment:
    """Everything that defines a benchmark invocation (recorded in the JSON)."""

    seeds: tuple[int, ...] = tuple(range(10))
    alphas: tuple[float, ...] = (0.5, 0.1)
    policies: tuple[str, ...] = POLICIES
    fleet: FleetConfig = field(default_factory=FleetConfig)
    rounds: RoundConfig = field(default_factory=RoundConfig)
    # Accuracy at this much simulated time is reported.
    budget_s: float = 600.0
    # A run goes on at least this long (or max_rounds), so that the mean curves cover it.
    horizon_s: float = 1200.0
    # Training examples spread over the fleet (of Fashion-MNIST's 60,000).
    total_examples: int = 48_000
    size_sigma: float = 1.0
    # Test images evaluated after every round (None: the whole 10,000).
    eval_size: int | None = None
    data_dir: str = DEFAULT_FASHION_MNIST_DIR


@contextlib.contextmanager
def _one_blas_thread(enabled: bool) -> Iterator[None]:
    """One BLAS thread per worker process, so that two workers share two cores cleanly."""
    if not enabled:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it BLAS keeps its default
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def load_data(experiment: Experiment) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST train and evaluation images, flattened to (N, 784)."""
    train = load_dataset("fashion-mnist", "train", data_dir=experiment.data_dir)
    test = load_dataset("fashion-mnist", "test", data_dir=experiment.data_dir)
    rows = np.arange(len(test))
    if experiment.eval_size is not None and experiment.eval_size < len(test):
        rows = np.sort(np.random.default_rng(0).permutation(len(test))[: experiment.eval_size])
    return (
        train.images.reshape(len(train), -1),
        train.labels,
        test.images.reshape(len(test), -1)[rows],
        test.labels[rows],
    )


def run_seed(experiment: Experiment, seed: int, single_thread: bool = True) -> dict[str, Any]:
    """Every alpha x policy run of ``seed``: their records, the fleet and the splits."""
    started = time.perf_counter()
    with _one_blas_thread(single_thread):
        train_x, train_y, test_x, test_y = load_data(experiment)
        runs: list[dict[str, Any]] = []
        splits: dict[str, Any] = {}
        fleet_summary: dict[str, Any] = {}
        for alpha in experiment.alphas:
            partition = lognormal_dirichlet(
                train_y,
                num_devices=experiment.fleet.num_devices,
                alpha=alpha,
                seed=seed,
                total=experiment.total_examples,
                size_sigma=experiment.size_sigma,
            )
            # Same seed, same speeds, links and availability for both alphas; only the data
            # sizes (and so the compute times) differ with the split.
            fleet = SimulatedFleet(experiment.fleet, partition.sizes, seed)
            fleet_summary[str(alpha)] = fleet.summary()
            splits[str(alpha)] = {
                "examples": int(partition.sizes.sum()),
                "moved_examples": partition.moved,
                "labels_per_device_median": float(
                    np.median([len(np.unique(train_y[rows])) for rows in partition.indices])
                ),
            }
            data = Data(train_x, train_y, partition.indices, test_x, test_y)
            goal = Goal(
                accuracy=TARGETS[alpha],
                budget_s=experiment.budget_s,
                horizon_s=experiment.horizon_s,
            )
            for policy in experiment.policies:
                run = run_policy(
                    policy, seed=seed, fleet=fleet, data=data, config=experiment.rounds, goal=goal
                )
                run["alpha"] = alpha
                runs.append(run)
    return {
        "seed": seed,
        "runs": runs,
        "fleet": fleet_summary,
        "splits": splits,
        "wall_s": time.perf_counter() - started,
    }


def data_available(experiment: Experiment) -> bool:
    """Whether the Fashion-MNIST IDX files are where ``experiment`` looks for them."""
    directory = Path(experiment.data_dir)
    return any(directory.glob("train-images-idx3-ubyte*"))
