"""`flctl`: the admin CLI over the REST API of the coordinator: tables, or --json for scripts."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import httpx

from fl_shared.wire import TERMINAL_RUN_STATUSES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CliError(Exception):
    """One line for stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flctl", description=__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get("FLCTL_URL", "http://127.0.0.1:8080"),
        help="coordinator REST API (env FLCTL_URL; default http://127.0.0.1:8080)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="resource", required=True)

    devices = sub.add_parser("devices", help="enrolled devices").add_subparsers(
        dest="action", required=True
    )
    devices.add_parser("list", help="every device with its liveness")

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
    return parser


class Api:
    """The few REST calls flctl makes."""

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=30.0, transport=transport)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the coordinator at {self.url} ({exc}): is `fl-coordinator serve` "
                "running? pass --url or set FLCTL_URL",
                EXIT_UNREACHABLE,
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            code = EXIT_USAGE if response.status_code < 500 else EXIT_FAILURE
            raise CliError(f"{response.status_code}: {detail}", code)
        return response.json()


def _table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _fmt(value: object, digits: int = 4) -> str:
    return (
        f"{value:.{digits}f}"
        if isinstance(value, float)
        else ("-" if value is None else str(value))
    )


def _print_devices(devices: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            d["device_id"],
            d["name"],
            "online" if d["online"] else "offline",
            d["supernode_state"],
            d["platform"],
            d["agent_version"],
            (d["last_heartbeat_at"] or "-")[:19],
        )
        for d in devices
    ]
    headers = ("DEVICE", "NAME", "STATUS", "SUPERNODE", "PLATFORM", "AGENT", "LAST HEARTBEAT")
    _table(rows, headers, out)


def _print_runs(runs: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            r["run_id"],
            r["status"],
            r["request"]["model"],
            r["request"]["dataset"],
            f"{max((x['round'] for x in r['rounds']), default=0)}/{r['request']['num_rounds']}",
            _fmt(r["final_accuracy"]),
            r["created_at"][:19],
        )
        for r in runs
    ]
    _table(rows, ("RUN", "STATUS", "MODEL", "DATASET", "ROUNDS", "ACCURACY", "CREATED"), out)


def _print_run(run: dict[str, Any], out: TextIO) -> None:
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
            _fmt(r["train_loss"]),
            _fmt(r["eval_loss"]),
            _fmt(r["eval_accuracy"]),
            _fmt(r["seconds"], 1),
        )
        for r in run["rounds"]
    ]
    _table(rows, ("ROUND", "DEVICES", "TRAIN LOSS", "EVAL LOSS", "ACCURACY", "SECONDS"), out)
    if run["checkpoint"]:
        out.write(f"checkpoint: {run['checkpoint']}\n")


def execute(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    """Carry out one parsed command."""
    if args.resource == "devices":
        devices = api.call("GET", "/api/v1/devices")
        json.dump(devices, out, indent=2) if args.json else _print_devices(devices, out)
        return EXIT_OK
    if args.action == "list":
        runs = api.call("GET", "/api/v1/runs")
        json.dump(runs, out, indent=2) if args.json else _print_runs(runs, out)
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
    if args.json:
        json.dump(run, out, indent=2)
        out.write("\n")
    else:
        _print_run(run, out)
    return EXIT_OK if run["status"] != "failed" else EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    """Entry point of `flctl`."""
    args = _parser().parse_args(argv)
    try:
        return execute(args, Api(args.url), sys.stdout)
    except CliError as exc:
        print(f"flctl: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
