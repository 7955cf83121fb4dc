"""Round latency: plain Flower vs. our platform on the same workload (issue #2 baseline).

Workload, both ways: 2 devices on 127.0.0.1, SimpleCNN, scikit-learn digits split IID in 2,
FedAvg, 3 rounds, 1 local epoch, batch 32, lr 0.01, server-side evaluation on the digits
test split after every round (round 0 = the initial model), 1 torch thread per client.

(a) plain: ``flower-superlink`` + 2 ``flower-supernode`` running bench/plain_app (a minimal
    Message-API app), the run submitted through the SuperLink's Control API.
(b) ours:  ``fl_coordinator.local_fleet.LocalFleet`` (coordinator + 2 edge agents), the run
    submitted through the coordinator's REST API.

Both measure wall-clock time.time() stamps: submit = just before StartRun / POST /runs;
round r = when its server-side evaluation happened (plain: stamped inside evaluate_fn; ours:
when the round first shows up in GET /runs/{id}, polled every 0.1 s).
  submit_to_first_round = t(round 1) - submit
  seconds_per_round     = mean(t(r) - t(r-1) for r in 1..num_rounds)

Usage: .venv/bin/python bench/round_latency.py [--repeat N] [--out FILE] [--wait-quiet S]
       [--keep-dirs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench_machine import machine_info, wait_for_quiet
from fl_coordinator.local_fleet import free_port, program

BENCH_DIR = Path(__file__).resolve().parent
APP_DIR = BENCH_DIR / "plain_app"
DEFAULT_OUT = BENCH_DIR / "results" / "round_latency.json"

NUM_ROUNDS = 3
NUM_DEVICES = 2
RUN_REQUEST: dict[str, Any] = {
    "model": "cnn",
    "dataset": "digits",
    "num_rounds": NUM_ROUNDS,
    "min_devices": NUM_DEVICES,
    "local_epochs": 1,
    "batch_size": 32,
    "learning_rate": 0.01,
}
RUN_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 90.0


class BenchError(RuntimeError):
    """A variant did not produce a complete measurement."""


# ----------------------------------------------------------------------------- helpers


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str, procs: list[Any]) -> None:
    """Poll ``ready`` every 0.2 s; fail early if one of ``procs`` (ManagedProcess) exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        for proc in procs:
            if proc.poll() is not None:
                tail = "\n".join(proc.tail()[-15:])
                raise BenchError(f"{proc.name} exited with {proc.poll()} while {what}:\n{tail}")
        time.sleep(0.2)
    raise BenchError(f"timed out after {timeout_s:.0f} s {what}")


def latency_metrics(submit: float, round_times: dict[int, float]) -> dict[str, Any]:
    """submit_to_first_round and seconds_per_round from the round stamps (0..NUM_ROUNDS)."""
    missing = [r for r in range(NUM_ROUNDS + 1) if r not in round_times]
    if missing:
        raise BenchError(f"no timestamp for round(s) {missing}: {round_times}")
    durations = [round_times[r] - round_times[r - 1] for r in range(1, NUM_ROUNDS + 1)]
    return {
        "submit_to_round0_s": round_times[0] - submit,
        "submit_to_first_round_s": round_times[1] - submit,
        "round_durations_s": durations,
        "seconds_per_round": statistics.fmean(durations),
    }


FLOWER_PROGRAMS = frozenset(
    {
        "flower-superlink",
        "flower-supernode",
        "flower-superexec",
        "flwr-serverapp",
        "flwr-clientapp",
        "fl-coordinator",
        "fl-edge-agent",
    }
)


# Every process this benchmark starts (and their children, which inherit the environment)
# carries this variable; Flower/platform processes without it belong to someone else.
MARKER_ENV = "ROUND_LATENCY_BENCH_ID"


def flower_processes() -> tuple[list[str], list[str]]:
    """(foreign, own) Flower/platform processes on this machine, as "pid program" strings."""
    marker = f"{MARKER_ENV}={os.environ.get(MARKER_ENV, '-')}".encode()
    foreign: list[str] = []
    own: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = {Path(a.decode(errors="replace")).name for a in argv[:2] if a}
        if not names & FLOWER_PROGRAMS:
            continue
        label = f"{entry.name} {' '.join(sorted(names & FLOWER_PROGRAMS))}"
        try:
            mine = marker in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            mine = False
        (own if mine else foreign).append(label)
    return foreign, own


def foreign_processes() -> list[str]:
    """Flower/platform processes that this benchmark did not start."""
    return flower_processes()[0]


class ForeignWatch:
    """Samples foreign Flower/platform processes every second while a run goes on."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="foreign-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.seen.update(foreign_processes())

    def __enter__(self) -> ForeignWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def wait_own_gone(timeout_s: float = 30.0) -> tuple[list[str], float]:
    """Our processes still alive right after a variant stopped, and how long they lingered."""
    started = time.monotonic()
    leftover = flower_processes()[1]
    while flower_processes()[1] and time.monotonic() - started < timeout_s:
        time.sleep(0.2)
    return leftover, time.monotonic() - started


# ----------------------------------------------------------------------------- (a) plain


def start_bare_superlink(
    workdir: Path, port: int, procs: list[Any], extra_env: dict[str, str] | None = None
) -> None:
    """Start a bare `flower-superlink` on 127.0.0.1:``port``; return once it is healthy.

    The process is appended to ``procs`` first, so the caller stops it also on failure.
    """
    from fl_shared.flower_env import flower_env
    from fl_shared.managed_process import ManagedProcess

    home = workdir / "superlink-home"
    home.mkdir(parents=True)
    superlink = ManagedProcess(
        "superlink",
        [
            program("flower-superlink"),
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-runtime-dependency-installation",
            "--database",
            str(workdir / "superlink.db"),
        ],
        env={**flower_env(home), **(extra_env or {})},
        cwd=home,
        log_file=workdir / "logs" / "superlink.log",
    )
    procs.append(superlink)
    superlink.start()

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, READY_TIMEOUT_S, "waiting for the SuperLink", procs)


def run_plain(workdir: Path) -> dict[str, Any]:
    """One run of bench/plain_app on a bare SuperLink and two bare SuperNodes."""
    from flwr.cli.build import build_fab_from_disk
    from flwr.common.serde import fab_to_proto, run_status_from_proto, user_config_to_proto
    from flwr.proto.control_pb2 import (  # pylint: disable=no-name-in-module
        ListNodesRequest,
        ListRunsRequest,
        StartRunRequest,
    )
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.fab import Fab

    from fl_shared.flower_env import flower_env
    from fl_shared.managed_process import ManagedProcess

    port = free_port()
    address = f"127.0.0.1:{port}"
    logs = workdir / "logs"
    timings_file = workdir / "timings.json"
    procs: list[ManagedProcess] = []
    client: ControlHttpClient | None = None
    try:
        start_bare_superlink(workdir, port, procs)

        for i in range(NUM_DEVICES):
            node_home = workdir / f"supernode-{i}-home"
            node_home.mkdir(parents=True)
            node = ManagedProcess(
                f"supernode-{i}",
                [
                    program("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    address,
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i} num-partitions={NUM_DEVICES} torch-threads=1",
                ],
                env=flower_env(node_home),
                cwd=node_home,
                log_file=logs / f"supernode-{i}.log",
            )
            procs.append(node)
            node.start()

        client = ControlHttpClient.from_server_address(address, True, None, ())

        def nodes_online() -> bool:
            try:
                nodes = client.ListNodes(ListNodesRequest()).nodes_info
            except (httpx.HTTPError, OSError):
                return False
            return sum(1 for n in nodes if n.status == "online") >= NUM_DEVICES

        t_ready = time.time()
        wait_until(nodes_online, READY_TIMEOUT_S, "waiting for 2 SuperNodes online", procs)
        nodes_wait_s = time.time() - t_ready

        fab_bytes = build_fab_from_disk(APP_DIR)
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto({"timings-file": str(timings_file)}),
            federation="",
        )
        submit = time.time()
        response = client.StartRun(request)
        submit_call_s = time.time() - submit
        if not response.HasField("run_id"):
            raise BenchError("the SuperLink refused the run")
        run_id = int(response.run_id)

        deadline = time.monotonic() + RUN_TIMEOUT_S
        status = None
        while time.monotonic() < deadline:
            runs = client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
            if run_id in runs:
                status = run_status_from_proto(runs[run_id].status)
                if status.status == "finished":
                    break
            for proc in procs:
                if proc.poll() is not None:
                    raise BenchError(f"{proc.name} exited with {proc.poll()} during the run")
            time.sleep(0.5)
        else:
            raise BenchError(f"plain run {run_id} not finished after {RUN_TIMEOUT_S:.0f} s")
        finished = time.time()
        if status is None or status.sub_status != "completed":
            detail = status.details if status is not None else "unknown"
            raise BenchError(f"plain run {run_id} ended {status}: {detail}; logs in {logs}")

        stamps = json.loads(timings_file.read_text())["rounds"]
        round_times = {int(s["round"]): float(s["time"]) for s in stamps}
        result = {
            "variant": "plain",
            "flower_run_id": run_id,
            "submit_time": submit,
            "finished_seen_time": finished,
            "round_times": {str(k): v for k, v in sorted(round_times.items())},
            "eval_accuracy": {str(s["round"]): s["eval-accuracy"] for s in stamps},
            "nodes_wait_s": nodes_wait_s,
            "submit_call_s": submit_call_s,
            "submit_to_finished_seen_s": finished - submit,
        }
        result.update(latency_metrics(submit, round_times))
        return result
    finally:
        if client is not None:
            client.close()
        # SuperNodes first (SIGTERM deactivates them at once), then the SuperLink.
        for proc in reversed(procs):
            proc.stop(grace_s=15)


# ----------------------------------------------------------------------------- (b) ours


def run_ours(workdir: Path, secure: bool = False) -> dict[str, Any]:
    """One run through the platform: coordinator + 2 edge agents, REST-submitted.

    ``secure``: the production path (TLS, enrolled agents, authenticated SuperNodes through
    the Fleet API gateway); otherwise the development mode.
    """
    from fl_coordinator.local_fleet import LocalFleet

    fleet = LocalFleet(workdir, torch_threads=1, secure=secure)
    try:
        fleet.start_coordinator()
        for i in range(NUM_DEVICES):
            fleet.start_agent(i, NUM_DEVICES)
        t_ready = time.time()
        fleet.wait_devices_online(NUM_DEVICES, timeout_s=READY_TIMEOUT_S)
        devices_wait_s = time.time() - t_ready

        submit = time.time()
        run = fleet.start_run(dict(RUN_REQUEST))
        submit_call_s = time.time() - submit
        run_id = int(run["run_id"])

        first_seen: dict[int, float] = {}
        # When each (status, detail) the ServerApp reports was first seen, after submit.
        status_seen: dict[str, float] = {}
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                run = fleet.get_run(run_id)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            now = time.time()
            status_seen.setdefault(f"{run['status']}: {run.get('detail', '')}", now - submit)
            for report in run.get("rounds", []):
                first_seen.setdefault(int(report["round"]), now)
            if run["status"] in ("completed", "failed", "stopped"):
                break
            if fleet.coordinator is not None and fleet.coordinator.poll() is not None:
                raise BenchError(f"the coordinator exited with {fleet.coordinator.poll()}")
            time.sleep(0.1)
        else:
            raise BenchError(f"run {run_id} not finished after {RUN_TIMEOUT_S:.0f} s")
        finished = time.time()
        if run["status"] != "completed":
            raise BenchError(
                f"run {run_id} ended {run['status']}: {run.get('detail')}; logs in "
                f"{workdir / 'logs'}"
            )
        rounds = sorted(run["rounds"], key=lambda r: int(r["round"]))
        reported = {int(r["round"]): float(r["seconds"]) for r in rounds}
        result = {
            "variant": "ours-secure" if secure else "ours",
            "run_id": run_id,
            "flower_run_id": run.get("flower_run_id"),
            "submit_time": submit,
            "finished_seen_time": finished,
            "round_times": {str(k): v for k, v in sorted(first_seen.items())},
            "reported_round_seconds": {str(k): v for k, v in reported.items()},
            "reported_seconds_per_round": statistics.fmean(
                reported[r] for r in range(1, NUM_ROUNDS + 1) if r in reported
            ),
            "eval_accuracy": {str(r["round"]): r.get("eval_accuracy") for r in rounds},
            "devices_wait_s": devices_wait_s,
            "submit_call_s": submit_call_s,
            "status_seen_after_submit_s": status_seen,
            "submit_to_finished_seen_s": finished - submit,
        }
        result.update(latency_metrics(submit, first_seen))
        return result
    finally:
        fleet.stop()


# ----------------------------------------------------------------------------- main


def summarize(results: list[dict[str, Any]], variant: str) -> dict[str, float]:
    """Means over the repeats of one variant."""
    mine = [r for r in results if r["variant"] == variant]
    out = {
        "seconds_per_round": statistics.fmean(r["seconds_per_round"] for r in mine),
        "submit_to_first_round_s": statistics.fmean(r["submit_to_first_round_s"] for r in mine),
        "submit_to_round0_s": statistics.fmean(r["submit_to_round0_s"] for r in mine),
        "submit_call_s": statistics.fmean(r["submit_call_s"] for r in mine),
        "rounds_2_on_s": statistics.fmean(d for r in mine for d in r["round_durations_s"][1:]),
    }
    if variant.startswith("ours"):
        out["reported_seconds_per_round"] = statistics.fmean(
            r["reported_seconds_per_round"] for r in mine
        )
    return out


def print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Per-run lines, then the means and the ratios."""
    print()
    print(f"{'run':<10} {'s/round':>9} {'submit->r1 s':>13} {'submit->r0 s':>13}  rounds (s)")
    for r in results:
        name = f"{r['variant']}#{r['repeat']}" + ("!" if r.get("disturbed") else "")
        rounds = " ".join(f"{d:.2f}" for d in r["round_durations_s"])
        extra = ""
        if r["variant"].startswith("ours"):
            rep = " ".join(f"{r['reported_round_seconds'][str(k)]:.2f}" for k in (1, 2, 3))
            extra = f"  [reported 'seconds': {rep}]"
        print(
            f"{name:<10} {r['seconds_per_round']:>9.2f} {r['submit_to_first_round_s']:>13.2f}"
            f" {r['submit_to_round0_s']:>13.2f}  {rounds}{extra}"
        )
    first, second = summary["variants"]
    plain, ours = summary[first], summary[second]
    ratio = summary[f"ratio_{second}_over_{first}"]
    print()
    print(f"{'mean':<24} {first:>11} {second:>11} {second + '/' + first:>20}")
    for key, label in (
        ("seconds_per_round", "seconds per round"),
        ("submit_to_first_round_s", "submit -> round 1 (s)"),
        ("submit_to_round0_s", "submit -> round 0 (s)"),
        ("rounds_2_on_s", "rounds 2.. only (s)"),
        ("submit_call_s", "submit call (s)"),
    ):
        ratio_text = f"{ratio[key]:>20.2f}" if key in ratio else f"{ours[key] / plain[key]:>20.2f}"
        print(f"{label:<24} {plain[key]:>11.2f} {ours[key]:>11.2f} {ratio_text}")
    print(f"{second}, mean of the rounds' own 'seconds': {ours['reported_seconds_per_round']:.2f}")
    if any(r.get("disturbed") for r in results):
        print("! = other load on the machine around that run (see the JSON)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (alternating)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600.0,
        metavar="S",
        help="before each run wait up to S s for no other Flower processes and idle CPUs",
    )
    parser.add_argument(
        "--keep-dirs", action="store_true", help="keep the temporary state/log directories"
    )
    parser.add_argument(
        "--compare",
        choices=("plain", "secure"),
        default="plain",
        help="plain: plain Flower vs ours (development mode); secure: ours in the development "
        "mode vs ours on the production path (TLS + SuperNode authentication + gateway)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    machine = machine_info()
    print(f"machine: {json.dumps(machine)}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="round-latency-"))
    os.environ[MARKER_ENV] = base.name
    results: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    pairs: list[tuple[str, Callable[[Path], dict[str, Any]]]] = (
        [("plain", run_plain), ("ours", run_ours)]
        if args.compare == "plain"
        else [("ours", run_ours), ("ours-secure", lambda w: run_ours(w, secure=True))]
    )
    error: str | None = None
    try:
        for repeat in range(args.repeat):
            for variant, fn in pairs:
                workdir = base / f"{variant}-{repeat}"
                workdir.mkdir(parents=True)
                print(f"[{repeat + 1}/{args.repeat}] {variant} ... (logs: {workdir})", flush=True)
                quiet = wait_for_quiet(foreign_processes, args.wait_quiet)
                with ForeignWatch() as watch:
                    result = fn(workdir)
                leftover, lingered_s = wait_own_gone()
                result["repeat"] = repeat
                result.update(quiet)
                result["foreign_processes_during"] = sorted(watch.seen)
                result["own_processes_left_after_stop"] = leftover
                result["own_processes_gone_after_s"] = lingered_s
                result["disturbed"] = bool(
                    quiet["foreign_processes_before"]
                    or watch.seen
                    or quiet["cpu_busy_before"] >= 0.25
                )
                if result["disturbed"]:
                    print("  WARNING: other load on the machine around this run", flush=True)
                results.append(result)
                print(
                    f"  {result['seconds_per_round']:.2f} s/round, submit->round 1 "
                    f"{result['submit_to_first_round_s']:.2f} s",
                    flush=True,
                )
    except Exception as exc:  # noqa: BLE001 - reported below, partial results still written
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep_dirs or error is not None:
            print(f"state and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    summary: dict[str, Any] = {}
    variants = {r["variant"] for r in results}
    names = [name for name, _fn in pairs]
    for variant in names:
        if variant in variants:
            summary[variant] = summarize(results, variant)
    if all(name in summary for name in names):
        first, second = names
        summary["variants"] = names
        summary[f"ratio_{second}_over_{first}"] = {
            key: summary[second][key] / summary[first][key]
            for key in ("seconds_per_round", "submit_to_first_round_s")
        }
        print_table(results, summary)

    payload = {
        "benchmark": "round_latency",
        "started_at": started.isoformat(),
        "command": " ".join(["python", "bench/round_latency.py", *(argv or sys.argv[1:])]),
        "workload": {
            **RUN_REQUEST,
            "partitioner": "iid",
            "torch_threads": 1,
            "server_eval": "digits test split after every round",
        },
        "machine": machine,
        "repeat": args.repeat,
        "summary": summary,
        "runs": results,
        "error": error,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if error is not None:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
