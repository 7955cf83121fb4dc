"""`flctl runs ...`: start, list and inspect training runs."""

from __future__ import annotations

import argparse
import base64
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

from fl_coordinator.flctl_api import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Api, CliError
from fl_coordinator.flctl_output import dump_json, fmt, table
from fl_coordinator.flctl_run_options import (
    ROBUST_FLAGS,
    SELECTION_FLAGS,
    add_wire_flags,
    given,
)
from fl_coordinator.flctl_selection import print_selection, selection_summary
from fl_shared.wire import TERMINAL_RUN_STATUSES

_RAW = argparse.RawDescriptionHelpFormatter

# RunRequest's robust-training and privacy fields (flctl_run_options.ROBUST_FLAGS).
ROBUST_FIELDS = tuple(flag.field for flag in ROBUST_FLAGS)


def add_commands(sub: Any) -> None:
    """Register `runs` and its actions on the top-level subparsers."""
    runs = sub.add_parser(
        "runs",
        help="training runs",
        epilog="examples:\n  flctl runs list\n  flctl runs start --dataset digits --follow",
        formatter_class=_RAW,
    ).add_subparsers(dest="action", required=True)
    runs.add_parser(
        "list",
        help="every run, newest first",
        epilog="examples:\n  flctl runs list\n  flctl --json runs list",
        formatter_class=_RAW,
    )
    show = runs.add_parser(
        "show",
        help="one run with per-round metrics",
        epilog="example:\n  flctl runs show 7",
        formatter_class=_RAW,
    )
    show.add_argument("run_id", type=int)
    start = runs.add_parser(
        "start",
        help="start a training run",
        epilog="examples:\n"
        "  flctl runs start --model cnn --dataset digits --rounds 5 --min-devices 2 --wait\n"
        "  flctl runs start --label site=lab --follow\n"
        "  flctl runs start --app ./my-app --config num-server-rounds=3 --wait\n\n"
        "robust run (Krum tolerating 1 poisoned update of 5, updates above norm 20 rejected):\n"
        "  flctl runs start --aggregation krum --krum-malicious-devices 1 --min-devices 5 \\\n"
        "      --screening-max-norm 20 --follow\n"
        "  flctl runs start --aggregation fedtrimmedavg --trimmed-avg-beta 0.25 --wait\n\n"
        "differential privacy (`flctl runs show ID` prints the epsilon spent):\n"
        "  flctl runs start --privacy central --dp-noise-multiplier 1.0 --dp-clipping-norm 1.0 \\\n"
        "      --dp-delta 1e-5 --rounds 10 --wait\n"
        "  flctl runs start --privacy local --dp-epsilon 8 --dp-clipping-norm 0.5 --wait\n\n"
        "central DP works with --aggregation fedavg only: the coordinator refuses it with\n"
        "another aggregation, in one line naming the field.\n\n"
        "device selection (`flctl runs show ID` prints who was selected each round, and why):\n"
        "  flctl runs start --devices-per-round 10 --overcommit 1.3 --selection capability\n"
        "  flctl runs start --devices-per-round 4 --min-memory-mb 4096 \\\n"
        "      --required-accelerator cuda --follow",
        formatter_class=_RAW,
    )
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
    start.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only devices with this label take part (repeatable; drained devices never do)",
    )
    start.add_argument("--wait", action="store_true", help="wait quietly until the run ends")
    start.add_argument(
        "--follow",
        action="store_true",
        help="show each round's accuracy on a progress bar as it lands, then the outcome",
    )
    start.add_argument(
        "--app",
        type=Path,
        default=None,
        metavar="PATH",
        help="run your own Flower App (a directory with pyproject.toml) instead of ours",
    )
    start.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --app: override a key of its [tool.flwr.app.config] (repeatable)",
    )
    add_wire_flags(
        start,
        "robust training and privacy (docs/robust-training.md; each sent only when given)",
        ROBUST_FLAGS,
    )
    add_wire_flags(
        start,
        "device selection (docs/device-selection.md; each sent only when given)",
        SELECTION_FLAGS,
    )
    stop = runs.add_parser(
        "stop",
        help="stop a run that has not ended",
        epilog="example:\n  flctl runs stop 7",
        formatter_class=_RAW,
    )
    stop.add_argument("run_id", type=int)
    resume = runs.add_parser(
        "resume",
        help="continue a failed or stopped run from its last checkpoint",
        epilog="example:\n  flctl runs resume 7 --wait",
        formatter_class=_RAW,
    )
    resume.add_argument("run_id", type=int)
    resume.add_argument("--wait", action="store_true", help="wait quietly until the run ends")
    resume.add_argument("--follow", action="store_true", help="show rounds as they land")
    logs = runs.add_parser(
        "logs",
        help="the run's ServerApp log",
        epilog="example:\n  flctl runs logs 7 --follow   (live until the run ends)",
        formatter_class=_RAW,
    )
    logs.add_argument("run_id", type=int)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")


def _what(run: dict[str, Any]) -> tuple[str, str]:
    """MODEL and DATASET columns; a user's own app shows its name instead."""
    source = run.get("app_source", "builtin")
    if source != "builtin":
        return source.removeprefix("app:"), "-"
    return run["request"]["model"], run["request"]["dataset"]


def print_runs(runs: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            r["run_id"],
            r["status"],
            *_what(r),
            f"{max((x['round'] for x in r['rounds']), default=0)}/{r['request']['num_rounds']}",
            fmt(r["final_accuracy"]),
            r["created_at"][:19],
        )
        for r in runs
    ]
    table(rows, ("RUN", "STATUS", "MODEL", "DATASET", "ROUNDS", "ACCURACY", "CREATED"), out)


def print_run(run: dict[str, Any], out: TextIO) -> None:
    req = run["request"]
    source = run.get("app_source", "builtin")
    out.write(
        f"run {run['run_id']}: {run['status']}"
        + (f" ({run['detail']})" if run["detail"] else "")
        + (
            f"\n  {req['model']} on {req['dataset']} ({req['partitioner']}), "
            f"{req['num_rounds']} rounds, at least {req['min_devices']} devices\n"
            if source == "builtin"
            else f"\n  your own app {source.removeprefix('app:')}\n"
        )
    )
    if source == "builtin" and (robust := _robust_summary(req)):
        out.write(f"  {robust}\n")
    if source == "builtin":
        out.write(f"  {selection_summary(req)}\n")
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
    print_robust_training(run["rounds"], out)
    print_selection(run["rounds"], out)
    if run["checkpoint"]:
        out.write(f"checkpoint: {run['checkpoint']}\n")


def _robust_summary(req: dict[str, Any]) -> str:
    """The run's aggregation and privacy when not plain FedAvg without DP ('' when plain)."""
    aggregation = req.get("aggregation", "fedavg")
    privacy = req.get("privacy", "none")
    if aggregation == "fedavg" and privacy == "none":
        return ""
    if aggregation == "fedtrimmedavg":
        aggregation += f" (beta {req.get('trimmed_avg_beta')})"
    elif aggregation == "krum":
        aggregation += f" (tolerating {req.get('krum_malicious_devices')} poisoned)"
    return f"aggregation {aggregation}, privacy {privacy}"


def print_robust_training(rounds: list[dict[str, Any]], out: TextIO) -> None:
    """Updates the screening kept out of each round, and the privacy budget spent so far."""
    rejected = [(r["round"], u) for r in rounds for u in r.get("rejected_updates") or []]
    if rejected:
        out.write("rejected updates:\n")
        for number, update in rejected:
            detail = f": {update['detail']}" if update.get("detail") else ""
            out.write(
                f"  round {number}: {update['device_id'] or '?'} (node {update['node_id']}) "
                f"{update['reason']}{detail}\n"
            )
    spent = [r["privacy"] for r in sorted(rounds, key=lambda r: r["round"]) if r.get("privacy")]
    if spent:
        last = spent[-1]
        out.write(
            f"privacy: {last['mechanism']}, epsilon {last['epsilon']:.4g} at delta "
            f"{last['delta']:g} after {last['releases']} rounds (noise multiplier "
            f"{last['noise_multiplier']:.4g}, clipping norm {last['clipping_norm']:g})\n"
        )


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one `runs` command."""
    if args.action == "list":
        runs = api.call("GET", "/api/v1/runs")
        dump_json(runs, out) if args.json else print_runs(runs, out)
        return EXIT_OK
    if args.action == "logs":
        params = {"follow": "true"} if args.follow else None
        for chunk in api.stream_text(f"/api/v1/runs/{args.run_id}/logs", params):
            out.write(chunk)
            out.flush()
        return EXIT_OK
    if args.action == "show":
        run = api.call("GET", f"/api/v1/runs/{args.run_id}")
    elif args.action == "stop":
        run = api.call("POST", f"/api/v1/runs/{args.run_id}/stop")
    elif args.action == "resume":
        run = api.call("POST", f"/api/v1/runs/{args.run_id}/resume")
    elif args.app is not None:
        if chosen := given(args, (*ROBUST_FLAGS, *SELECTION_FLAGS)):
            flag = "--" + next(iter(chosen)).replace("_", "-")
            raise CliError(
                f"{flag} applies to the built-in training, not to --app: your own app "
                "aggregates as its ServerApp does",
                EXIT_USAGE,
            )
        run = api.call(
            "POST",
            "/api/v1/runs/app",
            {"fab_base64": _build_app(args.app), "config": _overrides(args.config)},
        )
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
                "target_labels": _labels(args.label),
                **given(args, (*ROBUST_FLAGS, *SELECTION_FLAGS)),
            },
        )
    if getattr(args, "follow", False):
        run = follow_progress(api, run, out, quiet=args.json)
    elif getattr(args, "wait", False):
        run = _follow(api, run)
    dump_json(run, out) if args.json else print_run(run, out)
    return EXIT_OK if run["status"] != "failed" else EXIT_FAILURE


def _follow(api: Api, run: dict[str, Any]) -> dict[str, Any]:
    """Poll the run until it ends; returns it as it ended."""
    while run["status"] not in TERMINAL_RUN_STATUSES:
        time.sleep(1.0)
        run = api.call("GET", f"/api/v1/runs/{run['run_id']}")
    return run


def _labels(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs as a dict; CliError for anything else."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--label {pair!r}: expected KEY=VALUE", 2)
        labels[key.strip()] = value.strip()
    return labels


def progress_line(round_report: dict[str, Any], total: int | None, width: int = 20) -> str:
    """One round as a line with a text progress bar (readable in a terminal and in a log)."""
    number = int(round_report["round"])
    if total:
        done = min(width, round(width * number / total))
        bar = f"[{'#' * done}{'.' * (width - done)}] {number}/{total}"
    else:
        bar = f"round {number}"
    return (
        f"{bar}  accuracy {fmt(round_report.get('eval_accuracy'))}  "
        f"devices {len(round_report.get('devices') or [])}  "
        f"{fmt(round_report.get('seconds'), 1)} s"
    )


def follow_progress(
    api: Api, run: dict[str, Any], out: TextIO, *, quiet: bool = False, poll_s: float = 1.0
) -> dict[str, Any]:
    """Print each new round as it is recorded, then the outcome; returns the ended run."""
    total = run["request"]["num_rounds"] if run.get("app_source", "builtin") == "builtin" else None
    shown: set[int] = set()
    while True:
        for report in sorted(run["rounds"], key=lambda r: r["round"]):
            if report["round"] > 0 and report["round"] not in shown:
                shown.add(report["round"])
                if not quiet:
                    out.write(progress_line(report, total) + "\n")
                    out.flush()
        if run["status"] in TERMINAL_RUN_STATUSES:
            break
        time.sleep(poll_s)
        run = api.call("GET", f"/api/v1/runs/{run['run_id']}")
    if not quiet:
        detail = f": {run['detail']}" if run["detail"] else ""
        out.write(f"run {run['run_id']} {run['status']}{detail}\n")
    return run


def _build_app(path: Path) -> str:
    """The app directory as a Flower App Bundle, base64 (flwr's own builder and checks)."""
    from flwr.cli.build import build_fab_from_disk

    if not (path / "pyproject.toml").is_file():
        raise CliError(f"{path} has no pyproject.toml: --app takes a Flower App directory", 2)
    try:
        fab = build_fab_from_disk(path.resolve())
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot build the app in {path}: {exc}", 2) from exc
    except SystemExit as exc:  # flwr's builder exits on an invalid pyproject
        raise CliError(f"cannot build the app in {path}: its pyproject.toml is invalid", 2) from exc
    return base64.b64encode(fab).decode()


def _overrides(pairs: list[str]) -> dict[str, bool | int | float | str]:
    """KEY=VALUE pairs; values typed as TOML would type them (3 → int, 0.1 → float, true)."""
    config: dict[str, bool | int | float | str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--config {pair!r}: expected KEY=VALUE", 2)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        if not isinstance(value, bool | int | float | str):
            raise CliError(f"--config {pair!r}: only numbers, true/false and strings", 2)
        config[key.strip()] = value
    return config
