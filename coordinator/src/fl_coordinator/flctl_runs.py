"""`flctl runs ...`: start, list and inspect training runs."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from fl_coordinator.flctl_api import EXIT_FAILURE, EXIT_OK, Api
from fl_coordinator.flctl_output import dump_json, fmt, table
from fl_shared.wire import TERMINAL_RUN_STATUSES


def add_commands(sub: Any) -> None:
    """Register `runs` and its actions on the top-level subparsers."""
    runs = sub.add_parser("runs", help="training runs").add_subparsers(dest="action", required=True)
    runs.add_parser("list", help="every run, newest first")
    show = runs.add_parser("show", help="one run with per-round metrics")
    show.add_argument("run_id", type=int)
    start = runs.add_parser("start", help="start a training run")
    start.add_argument("--model", default="cnn", help="cnn, resnet18 or mlp")
    start.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, digits, ...")
    start.add_argument("--rounds", type=int, default=3)
    start.add_argument("--min-devices", type=int, default=2)
    start.add_argument("--partitioner", default="iid", help="iid or dirichlet")
    start.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    start.add_argument("--local-epochs", type=int, default=1)
    start.add_argument("--batch-size", type=int, default=32)
    start.add_argument("--learning-rate", type=float, default=0.01)
    start.add_argument("--max-train-samples", type=int, default=0, help="per device and round")
    start.add_argument("--device-wait-timeout", type=float, default=120.0)
    start.add_argument("--seed", type=int, default=42)
    start.add_argument("--wait", action="store_true", help="follow the run until it ends")


def print_runs(runs: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            r["run_id"],
            r["status"],
            r["request"]["model"],
            r["request"]["dataset"],
            f"{max((x['round'] for x in r['rounds']), default=0)}/{r['request']['num_rounds']}",
            fmt(r["final_accuracy"]),
            r["created_at"][:19],
        )
        for r in runs
    ]
    table(rows, ("RUN", "STATUS", "MODEL", "DATASET", "ROUNDS", "ACCURACY", "CREATED"), out)


def print_run(run: dict[str, Any], out: TextIO) -> None:
    req = run["request"]
    out.write(
        f"run {run['run_id']}: {run['status']}"
        + (f" ({run['detail']})" if run["detail"] else "")
        + f"\n  {req['model']} on {req['dataset']} ({req['partitioner']}), "
        f"{req['num_rounds']} rounds, at least {req['min_devices']} devices\n"
    )
    rows = [
        (
            r["round"],
            len(r["devices"]),
            fmt(r["train_loss"]),
            fmt(r["eval_loss"]),
            fmt(r["eval_accuracy"]),
            fmt(r["seconds"], 1),
        )
        for r in run["rounds"]
    ]
    table(rows, ("ROUND", "DEVICES", "TRAIN LOSS", "EVAL LOSS", "ACCURACY", "SECONDS"), out)
    if run["checkpoint"]:
        out.write(f"checkpoint: {run['checkpoint']}\n")


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `runs` command."""
    if args.action == "list":
        runs = api.call("GET", "/api/v1/runs")
        dump_json(runs, out) if args.json else print_runs(runs, out)
        return EXIT_OK
    if args.action == "show":
        run = api.call("GET", f"/api/v1/runs/{args.run_id}")
    else:
        run = api.call(
            "POST",
            "/api/v1/runs",
            {
                "model": args.model,
                "dataset": args.dataset,
                "num_rounds": args.rounds,
                "min_devices": args.min_devices,
                "partitioner": args.partitioner,
                "dirichlet_alpha": args.alpha,
                "local_epochs": args.local_epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "max_train_samples": args.max_train_samples,
                "device_wait_timeout_s": args.device_wait_timeout,
                "seed": args.seed,
            },
        )
        while args.wait and run["status"] not in TERMINAL_RUN_STATUSES:
            time.sleep(1.0)
            run = api.call("GET", f"/api/v1/runs/{run['run_id']}")
    dump_json(run, out) if args.json else print_run(run, out)
    return EXIT_OK if run["status"] != "failed" else EXIT_FAILURE
