"""End to end: a real coordinator (SuperLink, ServerApp), real agents (SuperNodes, ClientApps)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fl_coordinator.local_fleet import LocalFleet, program
from fl_coordinator.model_store import ModelStore
from fl_shared.datasets import load_dataset
from fl_shared.training import evaluate
from fl_shared.wire import TERMINAL_RUN_STATUSES

pytestmark = pytest.mark.e2e


def wait_run(fleet: LocalFleet, run_id: int, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = fleet.get_run(run_id)
        if run["status"] in TERMINAL_RUN_STATUSES:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s} s: {run}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.start_coordinator()
        fleet.start_agent(0, 2)  # the default: a warm ClientApp runtime
        # A mixed fleet: this one runs Flower's own fresh ClientApp process per message.
        fleet.start_agent(1, 2, env={"FL_AGENT_CLIENTAPP_RUNTIME": "isolated"})
        fleet.wait_devices_online(2)
        yield fleet


def test_two_agents_train_digits_to_completion(fleet: LocalFleet) -> None:
    run = fleet.start_run(
        {
            "model": "cnn",
            "dataset": "digits",
            "num_rounds": 2,
            "min_devices": 2,
            "seed": 7,
            "fraction_evaluate": 1.0,  # the devices evaluate on their own test shares too
        }
    )
    run = wait_run(fleet, run["run_id"])
    assert run["status"] == "completed", run["detail"]

    rounds = {r["round"]: r for r in run["rounds"]}
    assert sorted(rounds) == [0, 1, 2]
    assert rounds[2]["eval_accuracy"] > rounds[0]["eval_accuracy"] + 0.2
    assert run["final_accuracy"] == rounds[2]["eval_accuracy"]

    listed = httpx.get(f"{fleet.api_url}/api/v1/devices").json()
    devices = {d["device_id"] for d in listed}
    assert len(devices) == 2
    runtimes = {d["name"]: d["last_status"]["clientapp_runtime"] for d in listed}
    assert sorted(runtimes.values()) == ["isolated", "warm"], runtimes
    for number in (1, 2):
        trained = rounds[number]["devices"]
        assert {d["device_id"] for d in trained} == devices  # both devices trained each round
        assert all(d["num_examples"] > 600 for d in trained)  # each on its own half
        assert rounds[number]["seconds"] > 0 and rounds[number]["train_loss"] is not None
        assert 0.0 < rounds[number]["federated_eval_accuracy"] <= 1.0
    assert rounds[2]["federated_eval_accuracy"] > 0.3

    for number in (1, 2):
        path = Path(rounds[number]["checkpoint"])
        assert path.exists()
        model, meta = ModelStore.load(path)
        assert (meta["run_id"], meta["round"], meta["architecture"]) == (
            run["run_id"],
            number,
            "cnn",
        )
    # The last checkpoint is the model whose accuracy the API reports.
    accuracy = evaluate(model, load_dataset("digits", "test")).accuracy
    assert accuracy == pytest.approx(run["final_accuracy"], abs=1e-6)


def _flctl(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [program("flctl"), "--url", fleet.api_url, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_flctl_lists_devices_and_shows_the_run(fleet: LocalFleet) -> None:
    devices = _flctl(fleet, "devices", "list")
    assert devices.returncode == 0
    rows = devices.stdout.splitlines()[2:]  # under the header and its rule
    assert sorted(r.split()[1] for r in rows) == ["device-0", "device-1"]
    assert all(r.split()[2:4] == ["online", "running"] for r in rows)

    run_id = fleet.list_runs()[-1]["run_id"]
    shown = _flctl(fleet, "--json", "runs", "show", str(run_id))
    assert shown.returncode == 0
    assert json.loads(shown.stdout) == fleet.get_run(run_id)
    table = _flctl(fleet, "runs", "show", str(run_id)).stdout
    assert table.startswith(f"run {run_id}: completed")


def test_devices_report_measured_capabilities(fleet: LocalFleet) -> None:
    def reported() -> list[dict[str, Any]]:
        devices = httpx.get(f"{fleet.api_url}/api/v1/devices").json()
        return [d["capabilities"] for d in devices if d["capabilities"]]

    deadline = time.monotonic() + 90
    while len(reported()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    caps = reported()
    assert len(caps) == 2
    for device in caps:
        assert device["cpu"]["cores"] >= 1 and device["memory"]["total_bytes"] > 0
        assert "CPUExecutionProvider" in device["onnxruntime"]["verified_providers"]
        assert device["speed"]["torch_train_samples_per_s"] > 0
        assert device["speed"]["coordinator_rtt_ms"] is not None  # it reached the coordinator


def test_run_with_too_few_devices_fails_with_a_clear_status(fleet: LocalFleet) -> None:
    run = fleet.start_run(
        {
            "model": "mlp",
            "dataset": "digits",
            "num_rounds": 1,
            "min_devices": 3,
            "device_wait_timeout_s": 3,
        }
    )
    run = wait_run(fleet, run["run_id"], timeout_s=90)
    assert run["status"] == "failed"
    assert "only 2 of the 3 devices" in run["detail"]


def test_a_running_run_shows_its_log_and_can_be_stopped(fleet: LocalFleet) -> None:
    run = fleet.start_run(
        {"model": "cnn", "dataset": "digits", "num_rounds": 200, "min_devices": 2}
    )
    run_id = run["run_id"]
    deadline = time.monotonic() + 120
    while not fleet.get_run(run_id)["rounds"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fleet.get_run(run_id)["status"] == "running"

    # The ServerApp ships its output to the SuperLink every few seconds: poll for round 1.
    deadline = time.monotonic() + 60
    while True:
        logs = httpx.get(f"{fleet.api_url}/api/v1/runs/{run_id}/logs", timeout=30)
        assert logs.status_code == 200
        if "round_recorded" in logs.text or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert "FleetFedAvg" in logs.text and "round_recorded" in logs.text  # the ServerApp's log
    assert "\x1b[" not in logs.text  # no terminal colours
    assert "FleetFedAvg" in _flctl(fleet, "runs", "logs", str(run_id)).stdout

    stopped = _flctl(fleet, "--json", "runs", "stop", str(run_id))
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "stopped"
    again = _flctl(fleet, "runs", "stop", str(run_id))
    assert again.returncode == 2
    assert (
        again.stderr.strip() == f"flctl: 409: run {run_id} already ended (stopped): nothing to stop"
    )
    # Flower stops it too: the ServerApp goes away and the devices go back to idle.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        devices = httpx.get(f"{fleet.api_url}/api/v1/devices").json()
        if all(d["last_status"]["activity"] == "idle" for d in devices):
            break
        time.sleep(0.5)
    rounds_at_stop = len(fleet.get_run(run_id)["rounds"])
    time.sleep(3)
    assert len(fleet.get_run(run_id)["rounds"]) == rounds_at_stop  # no round after the stop
    assert fleet.get_run(run_id)["status"] == "stopped"


def test_your_own_flower_app_runs_on_the_fleet(fleet: LocalFleet) -> None:
    app = Path(__file__).resolve().parents[2] / "examples" / "byo-app"
    started = _flctl(
        fleet, "--json", "runs", "start", "--app", str(app), "--config", "num-server-rounds=2"
    )
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    # Up to 4 minutes more than usual: right after the stopped run of the test before, the
    # isolated device's Flower SuperNode (a flwr-clientapp process per message) was seen to
    # sit on this run's first reply for ~4 minutes before sending it (CI, 2026-11-29). The run
    # then completed correctly; the stall is Flower's, the warm runtime does not show it.
    run = wait_run(fleet, run_id, timeout_s=480)
    assert run["status"] == "completed", run["detail"]
    assert run["app_source"] == "app:example/my-fleet-app@1.0.0"
    logs = httpx.get(f"{fleet.api_url}/api/v1/runs/{run_id}/logs", timeout=30).text
    accuracy = [line for line in logs.splitlines() if line.startswith("example-app round 2 ")]
    assert accuracy, logs[-2000:]  # the app's own output, after its second round
    assert float(accuracy[0].split()[-1]) > 0.5
    listed = _flctl(fleet, "runs", "list").stdout
    assert "example/my-fleet-app@1.0.0" in listed


def test_drained_and_unlabelled_devices_stay_out_of_new_runs(fleet: LocalFleet) -> None:
    devices = {
        d["name"]: d["device_id"] for d in httpx.get(f"{fleet.api_url}/api/v1/devices").json()
    }
    drained = _flctl(fleet, "devices", "drain", devices["device-1"])
    assert drained.returncode == 0, drained.stderr
    try:
        request = {"model": "mlp", "dataset": "digits", "num_rounds": 1, "min_devices": 1}
        run = wait_run(fleet, fleet.start_run(request)["run_id"])
        assert run["status"] == "completed", run["detail"]
        assert [d["device_id"] for d in run["rounds"][-1]["devices"]] == [devices["device-0"]]

        too_few = wait_run(fleet, fleet.start_run({**request, "min_devices": 2})["run_id"])
        assert too_few["status"] == "failed"
        assert "may take part" in too_few["detail"] and "undrain" in too_few["detail"]
    finally:
        assert _flctl(fleet, "devices", "undrain", devices["device-1"]).returncode == 0
    labelled = wait_run(
        fleet, fleet.start_run({**request, "target_labels": {"site": "nowhere"}})["run_id"]
    )
    assert labelled["status"] == "failed" and "target labels" in labelled["detail"]


def test_unknown_model_is_rejected_by_the_real_server(fleet: LocalFleet) -> None:
    answer = httpx.post(f"{fleet.api_url}/api/v1/runs", json={"model": "vgg99"})
    assert answer.status_code == 422
    assert answer.json()["fields"] == ["model"]
    assert "vgg99" in answer.json()["detail"]


def _supernode_pid(log_file: Path) -> int:
    for line in log_file.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("logger") == "fl.supernode" and event.get("event") == "process_started":
                return int(event["pid"])
    raise AssertionError(f"no SuperNode start in {log_file}")


def test_agent_waits_for_a_late_coordinator_then_stops_cleanly(tmp_path: Path) -> None:
    with LocalFleet(tmp_path) as fleet:
        agent = fleet.start_agent(0, 1)
        time.sleep(3)
        assert agent.poll() is None  # still retrying, not crashed
        fleet.start_coordinator()
        devices = fleet.wait_devices_online(1, timeout_s=90)
        assert devices[0]["name"] == "device-0"
        log_file = tmp_path / "logs" / "agent-0.log"
        assert "enroll_retry" in log_file.read_text()
        supernode = _supernode_pid(log_file)

        assert agent.stop(grace_s=20) == 0  # SIGTERM: a clean, successful stop
        assert _gone(supernode)  # the agent took its SuperNode down with it


def _gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:  # exited, waiting to be reaped by init
            return True
        time.sleep(0.1)
    return False
