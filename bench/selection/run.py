"""Device selection: time to accuracy of random, oort and capability on a simulated fleet.

The product's selectors (``fl_coordinator.device_selector.build_selector``) choose the devices
of every round of FedAvg on a simulated heterogeneous fleet of 250 devices with a virtual
clock (``bench/selection/fleet.py``: lognormal compute latency and bandwidth, 5 % extreme
stragglers, throttled devices, availability churn), Fashion-MNIST split over the devices by
Dirichlet(alpha) with lognormal sizes, a 784-128-10 MLP trained for real (numpy, 1 local
epoch, batch 32). The rules of a round are in ``bench/selection/simulation.py``.

Metric: simulated time to reach 80 % (alpha 0.5) and 75 % (alpha 0.1) test accuracy, over
paired seeds (same fleet and split for every policy); geometric-mean speedups with 95 %
bootstrap intervals over seeds, accuracy at a fixed simulated time budget, and the share of
devices never selected. A run that never reaches its target counts with its total simulated
time (censored).

Usage: .venv/bin/python -m bench.selection.run [--quick] [--out DIR] [--seeds N]
       [--workers N] [--late-feedback bound|none|duration] [--data-dir DIR]
       (or .venv/bin/python bench/selection/run.py ...)

Writes DIR/results.json (every run: per-round times and accuracies, selection counts) and
DIR/accuracy_vs_time.png; prints a table. Default DIR: bench/results/selection/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench.selection`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.bench_machine import machine_info
from bench.selection.experiment import POLICIES, Experiment, data_available, run_seed
from bench.selection.report import plot, summarize, table
from bench.selection.simulation import LATE_FEEDBACK

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "selection"
FULL_SEEDS = 10
QUICK_SEEDS = 2
QUICK_ROUNDS = 60
FULL_ROUNDS = 600


def experiment_from(args: argparse.Namespace) -> Experiment:
    """The Experiment that the command line asks for."""
    base = Experiment()
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else FULL_SEEDS)
    rounds = replace(
        base.rounds,
        max_rounds=args.max_rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS),
        late_feedback=args.late_feedback,
    )
    return replace(
        base,
        seeds=tuple(range(seeds)),
        policies=tuple(args.policies),
        rounds=rounds,
        data_dir=str(args.data_dir) if args.data_dir else base.data_dir,
    )


def run_all(experiment: Experiment, workers: int) -> list[dict[str, Any]]:
    """Every seed's results, in ``workers`` processes (1: in this one)."""
    if workers <= 1:
        return [run_seed(experiment, seed, single_thread=False) for seed in experiment.seeds]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding BLAS threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_seed, experiment, seed) for seed in experiment.seeds]
        results = []
        for future in futures:
            result = future.result()
            print(f"  seed {result['seed']}: {result['wall_s']:.0f} s", flush=True)
            results.append(result)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SEEDS} seeds, {QUICK_ROUNDS} rounds"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seeds", type=int, default=None, help=f"paired seeds ({FULL_SEEDS})")
    parser.add_argument("--max-rounds", type=int, default=None, help=f"per run ({FULL_ROUNDS})")
    parser.add_argument("--workers", type=int, default=2, help="processes (2)")
    parser.add_argument(
        "--policies", nargs="+", choices=POLICIES, default=list(POLICIES), help="to compare"
    )
    parser.add_argument(
        "--late-feedback",
        choices=LATE_FEEDBACK,
        default="bound",
        help="what a device the round stopped waiting for tells the selector: bound (the "
        "round's length, as the product), none, or its true duration (FedScale's simulator)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX files")
    args = parser.parse_args(argv)
    experiment = experiment_from(args)
    if not data_available(experiment):
        print(
            f"Fashion-MNIST not found in {experiment.data_dir}: install Debian's "
            "dataset-fashion-mnist (make fashion-mnist) or pass --data-dir",
            file=sys.stderr,
        )
        return 2

    print(
        f"device selection: {len(experiment.seeds)} seeds x {len(experiment.alphas)} alphas x "
        f"{len(experiment.policies)} policies, up to {experiment.rounds.max_rounds} rounds, "
        f"{args.workers} worker(s)",
        flush=True,
    )
    started = time.perf_counter()
    results = run_all(experiment, args.workers)
    wall_s = time.perf_counter() - started
    runs = [run for result in results for run in result["runs"]]
    summary = summarize(runs)

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "device selection (bench/selection)",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "wall_s": wall_s,
        "workers": args.workers,
        "machine": machine_info(("numpy", "matplotlib", "flwr", "torch")),
        "experiment": asdict(experiment),
        "selector_classes": sorted({run["selector_class"] for run in runs}),
        "fleets": {str(r["seed"]): r["fleet"] for r in results},
        "splits": {str(r["seed"]): r["splits"] for r in results},
        "summary": summary,
        "runs": runs,
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=1))
    plot(runs, args.out / "accuracy_vs_time.png")
    print()
    print(table(summary))
    print(
        f"\n{len(runs)} runs in {wall_s:.0f} s; TTA of a censored run = its total simulated "
        f"time; accuracy at the budget = {experiment.budget_s:.0f} simulated s\n"
        f"wrote {args.out / 'results.json'} and {args.out / 'accuracy_vs_time.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
