"""`fl-coordinator demo`: train on a local fleet of agents and report round by round."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fl_coordinator.local_fleet import FleetError, LocalFleet
from fl_shared.wire import TERMINAL_RUN_STATUSES


@dataclass(frozen=True)
class DemoOptions:
    """What the demo trains and on how many local devices."""

    state_dir: Path
    devices: int = 3
    rounds: int = 3
    model: str = "cnn"
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    max_train_samples: int = 0
    learning_rate: float = 0.01
    batch_size: int = 32


def run_demo(opts: DemoOptions, out: TextIO) -> int:
    """Start the fleet, train, print progress and the result; always stop what it started."""
    started = time.monotonic()

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    opts.state_dir.mkdir(parents=True, exist_ok=True)
    fleet = LocalFleet(opts.state_dir, data_dir=opts.data_dir)
    try:
        say(f"starting a coordinator and {opts.devices} edge agents on 127.0.0.1 ...")
        fleet.start_coordinator()
        for index in range(opts.devices):
            fleet.start_agent(index, opts.devices)
        fleet.wait_devices_online(opts.devices)
        say(
            f"{opts.devices} devices online ({time.monotonic() - started:.1f} s); logs: "
            f"{opts.state_dir / 'logs'}"
        )
        sampling = (
            f"a random sample of {opts.max_train_samples} local examples per device and round"
            if opts.max_train_samples
            else "each device's whole partition every round"
        )
        say(
            f"training {opts.model} with FedAvg on {opts.dataset} split IID across "
            f"{opts.devices} devices, {opts.rounds} rounds, {sampling}"
        )
        run = fleet.start_run(
            {
                "model": opts.model,
                "dataset": opts.dataset,
                "partitioner": "iid",
                "num_rounds": opts.rounds,
                "min_devices": opts.devices,
                "max_train_samples": opts.max_train_samples,
                "learning_rate": opts.learning_rate,
                "batch_size": opts.batch_size,
            }
        )
        printed = 0
        while True:
            run = fleet.get_run(run["run_id"])
            for report in run["rounds"][printed:]:
                say(_round_line(report, opts.rounds))
            printed = len(run["rounds"])
            if run["status"] in TERMINAL_RUN_STATUSES:
                break
            if fleet.coordinator is not None and fleet.coordinator.poll() is not None:
                say("the coordinator exited; see its log")
                return 1
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        if run["status"] != "completed":
            say(f"run {run['run_id']} {run['status']}: {run['detail']}")
            return 1
        say(f"final global test accuracy: {run['final_accuracy']:.4f}")
        say(f"checkpoint: {run['checkpoint']}")
        say(f"total wall time: {elapsed:.1f} s")
        return 0
    except FleetError as exc:
        say(f"demo failed: {exc}")
        return 1
    finally:
        say("stopping every process the demo started ...")
        fleet.stop()


def _round_line(report: dict[str, object], rounds: int) -> str:
    accuracy = report.get("eval_accuracy")
    loss = report.get("eval_loss")
    devices = report.get("devices") or []
    assert isinstance(devices, list)
    acc_text = f"{accuracy:.4f}" if isinstance(accuracy, float) else "n/a"
    loss_text = f"{loss:.4f}" if isinstance(loss, float) else "n/a"
    if report["round"] == 0:
        return f"round 0/{rounds} (initial model)  loss {loss_text}  accuracy {acc_text}"
    seconds = report.get("seconds")
    assert isinstance(seconds, float)
    return (
        f"round {report['round']}/{rounds}  devices {len(devices)}  loss {loss_text}  "
        f"accuracy {acc_text}  {seconds:.1f} s"
    )
