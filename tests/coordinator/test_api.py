"""REST API tests on a real SQLite registry, with the SuperLink's Control API faked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.coordinator.api_harness import api_harness

from fl_coordinator.errors import SuperLinkUnreachable
from fl_coordinator.flower_control import FlowerRunState
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService, run_config_for, token_file
from fl_coordinator.settings import CoordinatorSettings


class FakeControl:
    """Stands in for the SuperLink's Control API."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.state: FlowerRunState | None = None
        self.down = False

    def start_run(self, run_config: dict[str, Any]) -> int:
        if self.down:
            raise SuperLinkUnreachable("SuperLink Control API unreachable: connection refused")
        self.configs.append(run_config)
        return 4242

    def run_state(self, flower_run_id: int) -> FlowerRunState | None:
        return self.state


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, FakeControl, CoordinatorSettings]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness.client, harness.registry, control, harness.settings


def test_device_register_heartbeat_list(env: Any) -> None:
    client, _, _, _ = env
    answer = client.post("/api/v1/devices", json={"name": "jetson-7", "future_field": 1})
    assert answer.status_code == 201
    device_id = answer.json()["device_id"]
    assert answer.json()["heartbeat_interval_s"] == 15.0
    listed = client.get("/api/v1/devices").json()
    assert listed[0]["last_status"] is None  # enrolled, no heartbeat yet
    beat = client.post(
        f"/api/v1/devices/{device_id}/heartbeat",
        json={
            "device_id": device_id,
            "supernode_state": "running",
            "activity": "training run 3 round 2",
            "max_temp_c": 51.5,
            "power_mode": "MODE_15W_6CORE",
        },
    )
    assert beat.status_code == 200 and beat.json()["device_id"] == device_id
    listed = client.get("/api/v1/devices").json()
    assert [(d["name"], d["online"]) for d in listed] == [("jetson-7", True)]
    status = listed[0]["last_status"]
    assert status["activity"] == "training run 3 round 2"
    assert (status["max_temp_c"], status["power_mode"]) == (51.5, "MODE_15W_6CORE")


def test_capabilities_are_stored_and_listed(env: Any) -> None:
    client, _, _, _ = env
    device_id = client.post("/api/v1/devices", json={"name": "orin"}).json()["device_id"]
    caps = {
        "cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "cores": 12},
        "jetson": {"model": "NVIDIA Jetson AGX Orin", "soc": "tegra234", "jetpack": "6.0"},
        "onnxruntime": {"verified_providers": ["CPUExecutionProvider"]},
        "from_a_newer_agent": True,
    }
    answer = client.put(f"/api/v1/devices/{device_id}/capabilities", json=caps)
    assert answer.status_code == 204
    listed = client.get("/api/v1/devices").json()[0]["capabilities"]
    assert listed["jetson"]["soc"] == "tegra234" and listed["cpu"]["cores"] == 12
    missing = client.put("/api/v1/devices/dev-nope/capabilities", json=caps)
    assert missing.status_code == 404
    old = client.put(f"/api/v1/devices/{device_id}/capabilities", json={"schema_version": "0.1"})
    assert old.status_code == 426


def test_heartbeat_from_unknown_device_is_404_with_fix(env: Any) -> None:
    client, _, _, _ = env
    answer = client.post("/api/v1/devices/dev-x/heartbeat", json={"device_id": "dev-x"})
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "detail": answer.json()["detail"]}
    assert "register again" in answer.json()["detail"]


def test_too_old_agent_gets_426_telling_it_to_upgrade(env: Any) -> None:
    client, _, _, _ = env
    answer = client.post("/api/v1/devices", json={"name": "old", "schema_version": "0.9"})
    assert answer.status_code == 426
    assert "upgrade fl-edge-agent" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", "vgg99"), ("dataset", "imagenet"), ("partitioner", "random"), ("num_rounds", 0)],
)
def test_bad_run_request_is_422_naming_the_field(env: Any, field: str, value: Any) -> None:
    client, registry, control, _ = env
    answer = client.post("/api/v1/runs", json={field: value})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert body["fields"] == [field]
    assert body["detail"].startswith(f"{field}: ")
    assert control.configs == [] and registry.list_runs() == []


def test_unknown_model_error_lists_valid_models(env: Any) -> None:
    client, _, _, _ = env
    detail = client.post("/api/v1/runs", json={"model": "vgg99"}).json()["detail"]
    assert "cnn" in detail and "resnet18" in detail and "mlp" in detail


def test_start_run_submits_config_and_keeps_token_off_it(env: Any) -> None:
    client, registry, control, settings = env
    answer = client.post("/api/v1/runs", json={"model": "mlp", "dataset": "digits"})
    assert answer.status_code == 201
    run = answer.json()
    assert run["status"] == "starting" and run["flower_run_id"] == 4242
    config = control.configs[0]
    assert config["model"] == "mlp" and config["registry-run-id"] == run["run_id"]
    token = registry.report_token(run["run_id"])
    assert token not in str(config)  # devices see the run config; the token stays home
    path = token_file(settings, run["run_id"])
    assert path.read_text() == token and path.stat().st_mode & 0o777 == 0o600
    assert client.get(f"/api/v1/runs/{run['run_id']}").json()["status"] == "starting"


def test_start_run_with_superlink_down_is_503_and_run_failed(env: Any) -> None:
    client, registry, control, _ = env
    control.down = True
    answer = client.post("/api/v1/runs", json={})
    assert answer.status_code == 503 and "unreachable" in answer.json()["detail"]
    assert registry.list_runs()[0].status == "failed"


def test_reports_need_the_run_token(env: Any) -> None:
    client, registry, _, _ = env
    run_id = client.post("/api/v1/runs", json={}).json()["run_id"]
    report = {"round": 1, "eval_accuracy": 0.5, "devices": []}
    assert client.post(f"/api/v1/runs/{run_id}/rounds", json=report).status_code == 403
    wrong = {"X-Run-Token": "nope"}
    assert (
        client.post(f"/api/v1/runs/{run_id}/rounds", json=report, headers=wrong).status_code == 403
    )
    good = {"X-Run-Token": registry.report_token(run_id)}
    assert (
        client.post(f"/api/v1/runs/{run_id}/rounds", json=report, headers=good).status_code == 204
    )
    done = client.post(
        f"/api/v1/runs/{run_id}/status", json={"status": "completed"}, headers=good
    ).json()
    assert done["status"] == "completed" and done["final_accuracy"] == 0.5
    assert client.post("/api/v1/runs/999/rounds", json=report, headers=good).status_code == 404


def test_missing_run_is_404_json(env: Any) -> None:
    client, _, _, _ = env
    answer = client.get("/api/v1/runs/77")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"


def test_healthz_and_openapi(env: Any) -> None:
    client, _, _, _ = env
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/devices", "/api/v1/runs", "/api/v1/runs/{run_id}"} <= set(paths)


def test_reconcile_fails_a_run_whose_serverapp_crashed(env: Any) -> None:
    _, registry, control, settings = env
    service = RunService(registry, control, settings)
    from fl_shared.wire import RunRequest

    run = service.start_run(RunRequest())
    control.state = FlowerRunState("running", "", "")
    service.reconcile()
    assert registry.get_run(run.run_id).status == "running"  # as the SuperLink says
    control.state = FlowerRunState("finished", "failed", "ServerApp exited with code 1")
    service.reconcile()
    after = registry.get_run(run.run_id)
    assert after.status == "failed" and "exited" in after.detail


def test_run_config_uses_flower_kebab_case(tmp_path: Path) -> None:
    from fl_shared.wire import RunRequest

    settings = CoordinatorSettings(state_dir=tmp_path, port=9999)
    config = run_config_for(RunRequest(max_train_samples=5), 3, settings)
    assert config["max-train-samples"] == 5
    # Secure by default: the ServerApp reports over TLS and trusts the coordinator's CA.
    assert config["coordinator-url"] == "https://127.0.0.1:9999"
    assert config["coordinator-ca-file"] == str(tmp_path / "pki" / "ca.crt")
    assert all("_" not in key for key in config)
    dev = CoordinatorSettings(state_dir=tmp_path, port=9999, insecure=True)
    dev_config = run_config_for(RunRequest(), 3, dev)
    assert (dev_config["coordinator-url"], dev_config["coordinator-ca-file"]) == (
        "http://127.0.0.1:9999",
        "",
    )
