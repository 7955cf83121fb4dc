"""Throwaway probe for issue 3 (fast rounds): plain Flower vs the fast prototype, same run.

Same workload and timing as bench/round_latency.py's plain variant (2 SuperNodes, SimpleCNN,
digits IID, FedAvg, 3 rounds, evaluate_fn stamps time.time()). Variants:

  plain           bench/plain_app on flower-superlink + 2 flower-supernode (as round_latency.py)
  fast-fork       bench/fast_probe_app (ServerApp on FastGrid) on a SuperLink whose SuperExec
                  polls every 0.05 s, 2 ``python -m bench/fast_rounds/fast_supernode.py --isolation
                  process`` + 2 ``python -m bench/fast_rounds/warm_clientapp.py --mode fork``
  fast-inprocess  the same with ``--mode inprocess``
  fast-grid-only  bench/fast_probe_app on plain SuperNodes (what FastGrid alone gives)

Usage: .venv/bin/python bench/fast_rounds_probe.py [--variants plain,fast-fork] [--repeat N]
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
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from fl_coordinator.local_fleet import free_port, program  # noqa: E402
from round_latency import (  # noqa: E402
    NUM_DEVICES,
    READY_TIMEOUT_S,
    RUN_TIMEOUT_S,
    BenchError,
    latency_metrics,
    start_bare_superlink,
    wait_until,
)

BENCH_DIR = HERE.parent
APPS = {"plain": BENCH_DIR / "plain_app", "fast": HERE / "fast_probe_app"}
PRELOAD = (
    "torch",
    "flwr.supernode.runtime.run_clientapp",
    "fl_shared.models",
    "fl_shared.training",
    "fl_shared.partitioning",
    "fl_shared.datasets",
    "sklearn.datasets",
    "sklearn.model_selection",
)
VARIANTS = ("plain", "fast-fork", "fast-inprocess", "fast-grid-only")


def run_variant(workdir: Path, variant: str) -> dict[str, Any]:
    """One run of ``variant``; every process started here is stopped before returning."""
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

    fast_nodes = variant in ("fast-fork", "fast-inprocess")
    app_dir = APPS["plain" if variant == "plain" else "fast"]
    port = free_port()
    address = f"127.0.0.1:{port}"
    logs = workdir / "logs"
    timings_file = workdir / "timings.json"
    procs: list[ManagedProcess] = []
    client: ControlHttpClient | None = None
    try:
        fast_env = {} if variant == "plain" else {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05"}
        start_bare_superlink(workdir, port, procs, fast_env)

        for i in range(NUM_DEVICES):
            node_home = workdir / f"supernode-{i}-home"
            node_home.mkdir(parents=True)
            node_port = free_port()
            head = (
                [sys.executable, str(HERE / "fast_supernode.py")]
                if fast_nodes
                else [program("flower-supernode")]
            )
            argv = [
                *head,
                "--insecure",
                "--superlink",
                address,
                "--port",
                str(node_port),
                "--node-config",
                f"partition-id={i} num-partitions={NUM_DEVICES} torch-threads=1",
            ]
            if fast_nodes:
                argv += ["--isolation", "process"]
            node = ManagedProcess(
                f"supernode-{i}",
                argv,
                env=flower_env(node_home),
                cwd=node_home,
                log_file=logs / f"supernode-{i}.log",
            )
            procs.append(node)
            node.start()
            if fast_nodes:
                warm_argv = [
                    sys.executable,
                    str(HERE / "warm_clientapp.py"),
                    "--runtime-api-address",
                    f"127.0.0.1:{node_port}",
                    "--insecure",
                    "--mode",
                    variant.removeprefix("fast-"),
                    "--poll",
                    os.environ.get("PROBE_WARM_POLL_S", "0.1"),
                ]
                for module in PRELOAD:
                    warm_argv += ["--preload", module]
                warm = ManagedProcess(
                    f"warm-clientapp-{i}",
                    warm_argv,
                    env=flower_env(node_home),
                    cwd=node_home,
                    log_file=logs / f"warm-clientapp-{i}.log",
                )
                procs.append(warm)
                warm.start()

        client = ControlHttpClient.from_server_address(address, True, None, ())

        def nodes_online() -> bool:
            try:
                nodes = client.ListNodes(ListNodesRequest()).nodes_info
            except (httpx.HTTPError, OSError):
                return False
            return sum(1 for n in nodes if n.status == "online") >= NUM_DEVICES

        wait_until(nodes_online, READY_TIMEOUT_S, "waiting for 2 SuperNodes online", procs)
        if fast_nodes:  # let the warm runtimes finish their imports (not part of a round)
            wait_until(
                lambda: all(
                    any("polling" in line for line in p.tail())
                    or "polling" in (logs / f"{p.name}.log").read_text(errors="replace")
                    for p in procs
                    if p.name.startswith("warm")
                ),
                READY_TIMEOUT_S,
                "waiting for the warm ClientApp runtimes",
                procs,
            )

        fab_bytes = build_fab_from_disk(app_dir)
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto({"timings-file": str(timings_file)}),
            federation="",
        )
        submit = time.time()
        response = client.StartRun(request)
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
            time.sleep(0.2)
        else:
            raise BenchError(f"run {run_id} not finished after {RUN_TIMEOUT_S:.0f} s")
        if status is None or status.sub_status != "completed":
            raise BenchError(f"run {run_id} ended {status}; logs in {logs}")
        stamps = json.loads(timings_file.read_text())["rounds"]
        round_times = {int(s["round"]): float(s["time"]) for s in stamps}
        result: dict[str, Any] = {
            "variant": variant,
            "eval_accuracy": {str(s["round"]): round(s["eval-accuracy"], 4) for s in stamps},
            "submit_to_finished_s": time.time() - submit,
        }
        result.update(latency_metrics(submit, round_times))
        return result
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            proc.stop(grace_s=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="plain,fast-fork,fast-inprocess")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep-dirs", action="store_true")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    base = Path(tempfile.mkdtemp(prefix="fast-rounds-"))
    results: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeat):
            for variant in variants:
                workdir = base / f"{variant}-{repeat}"
                workdir.mkdir(parents=True)
                result = run_variant(workdir, variant)
                results.append(result)
                rounds = " ".join(f"{d:.2f}" for d in result["round_durations_s"])
                print(
                    f"{variant:<15} {result['seconds_per_round']:6.2f} s/round  "
                    f"[{rounds}]  submit->r0 {result['submit_to_round0_s']:.2f}  "
                    f"submit->r1 {result['submit_to_first_round_s']:.2f}  "
                    f"acc {result['eval_accuracy']}",
                    flush=True,
                )
    finally:
        if args.keep_dirs:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    for variant in variants:
        mine = [r["seconds_per_round"] for r in results if r["variant"] == variant]
        if mine:
            print(f"{variant:<15} mean {statistics.fmean(mine):.2f} s/round over {len(mine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
