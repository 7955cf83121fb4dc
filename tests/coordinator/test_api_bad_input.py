"""Bad input gets a clear 4xx that names the field, and changes nothing (real app and registry).

Malformed heartbeats first; then the cases the schemathesis fuzz (test_api_fuzz.py) found.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.body_limit import DEFAULT_LIMIT_BYTES
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import RunRequest


class NoControl:
    """No request here may reach the SuperLink."""

    def start_run(self, run_config: dict[str, Any]) -> int:
        raise AssertionError("bad input must never start a run")

    def start_fab(self, fab: bytes, overrides: dict[str, Any]) -> int:
        raise AssertionError("bad input must never start a run")


class Api:
    """A TestClient on the app, the registry behind it, and one enrolled device."""

    def __init__(self, client: TestClient, registry: Registry) -> None:
        self.client = client
        self.registry = registry
        answer = client.post("/api/v1/devices", json={"name": "orin", "labels": {"site": "lab"}})
        assert answer.status_code == 201
        self.device_id: str = answer.json()["device_id"]
        beat = {"device_id": self.device_id, "cpu_percent": 10.0, "activity": "idle"}
        assert self.beat(json=beat).status_code == 200

    def beat(self, **request: Any) -> Any:
        return self.client.post(f"/api/v1/devices/{self.device_id}/heartbeat", **request)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every device with its last status and heartbeat history, as the registry has them."""
        return [
            self.registry.device_detail(d.device_id, history="1h").model_dump(mode="json")
            for d in self.registry.list_devices()
        ]


@pytest.fixture
def api(tmp_path: Path, fake_clock: Any) -> Iterator[Api]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    registry = Registry(settings.resolved_database_url, clock=fake_clock)
    registry.create_schema()
    service = RunService(registry, NoControl(), settings)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(registry, service, settings)) as client:
            yield Api(client, registry)
    finally:
        registry.close()


def _invalid(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 422, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == "invalid_request"
    assert body["detail"].startswith(f"{body['fields'][0]}: ")
    return body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"supernode_state": "exploded"}, "supernode_state"),
        ({"cpu_percent": "hot"}, "cpu_percent"),
        ({"supernode_restarts": "many"}, "supernode_restarts"),
        ({"last_contact_at": "yesterday"}, "last_contact_at"),
        ({"clientapp_runtime": "docker"}, "clientapp_runtime"),
        ({"device_id": None}, "device_id"),
    ],
)
def test_a_heartbeat_with_a_wrong_type_is_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    before = api.snapshot()
    body = _invalid(api.beat(json={"device_id": api.device_id, **change}))
    assert body["fields"] == [field]
    assert api.snapshot() == before


@pytest.mark.parametrize(
    "content",
    [
        b'{"device_id": ',  # cut off
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"[]",  # JSON, but not an object
    ],
)
def test_a_heartbeat_that_is_no_json_object_is_422_naming_the_body(
    api: Api, content: bytes
) -> None:
    before = api.snapshot()
    answer = api.beat(content=content, headers={"content-type": "application/json"})
    assert _invalid(answer)["fields"] == ["body"]
    assert api.snapshot() == before


def test_a_huge_heartbeat_is_413_and_changes_nothing(api: Api) -> None:
    before = api.snapshot()
    answer = api.beat(json={"device_id": api.device_id, "activity": "x" * DEFAULT_LIMIT_BYTES})
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"
    assert api.snapshot() == before


def test_a_heartbeat_for_another_device_is_refused(api: Api) -> None:
    before = api.snapshot()
    answer = api.beat(json={"device_id": "dev-someone-else"})
    assert answer.status_code == 422
    assert "differs from the path" in answer.json()["detail"]
    assert api.snapshot() == before


def test_a_405_lists_every_method_the_path_serves(api: Api) -> None:
    answer = api.client.delete("/api/v1/runs")  # served by two routes: GET and POST
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert answer.json()["error"] == "method_not_allowed"
    labels = api.client.delete(f"/api/v1/devices/{api.device_id}/labels")
    assert labels.headers["allow"] == "PUT, PATCH"


def test_an_app_bundle_that_is_not_ascii_is_422_not_500(api: Api) -> None:
    body = _invalid(api.client.post("/api/v1/runs/app", json={"fab_base64": "\u0080"}))
    assert body["fields"] == ["fab_base64"] and "base64" in body["detail"]
    assert api.registry.list_runs() == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/runs/2147483648", "run_id"),  # past the registry's 32-bit column: was a 500
        ("/api/v1/runs/0", "run_id"),
        ("/api/v1/models/99999999999999999999", "run_id"),
        ("/api/v1/models?run_id=2147483648", "run_id"),
        ("/api/v1/devices?offset=9223372036854775808", "offset"),  # past SQL's OFFSET: was a 500
    ],
)
def test_an_id_or_offset_out_of_range_is_422_not_500(api: Api, url: str, field: str) -> None:
    assert _invalid(api.client.get(url))["fields"] == [field]


def test_what_the_registry_cannot_store_is_422_not_500(api: Api) -> None:
    run_id, token = api.registry.create_run(RunRequest())
    report = {
        "round": 1,
        "devices": [
            {
                "device_id": api.device_id,
                "node_id": 1,
                "num_examples": 2**63,  # was an OverflowError from the database: a 500
                "train_loss": 0.5,
                "train_seconds": 1.0,
            }
        ],
    }
    answer = api.client.post(
        f"/api/v1/runs/{run_id}/rounds", json=report, headers={"X-Run-Token": token}
    )
    assert _invalid(answer)["fields"] == ["devices.0.num_examples"]
    assert api.registry.get_run(run_id).rounds == []
    before = api.snapshot()
    long_id = {"name": "x", "device_id": "d" * 65}  # PostgreSQL's VARCHAR(64) refused it: 500
    assert _invalid(api.client.post("/api/v1/devices", json=long_id))["fields"] == ["device_id"]
    # PostgreSQL's text holds no NUL character: these were 500s there.
    nul_name = {"name": "orin\x00"}
    assert _invalid(api.client.post("/api/v1/devices", json=nul_name))["fields"] == ["name"]
    nul_label = {"labels": {"site": "lab\x00"}}
    answer = api.client.put(f"/api/v1/devices/{api.device_id}/labels", json=nul_label)
    assert _invalid(answer)["fields"] == ["labels"] and "NUL" in answer.json()["detail"]
    assert api.snapshot() == before


def test_a_body_that_is_not_json_is_422_naming_the_body(api: Api) -> None:
    answer = api.client.post(
        "/api/v1/runs", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    body = _invalid(answer)
    assert body["fields"] == ["body"] and "not valid JSON" in body["detail"]
    assert api.registry.list_runs() == []


def test_the_spec_documents_the_422_body_the_api_sends(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's, not ours
    documented = spec["paths"]["/api/v1/runs"]["post"]["responses"]["422"]
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvalidRequestBody"
    }
    answer = api.client.post("/api/v1/runs", json={"model": "vgg99"})
    assert set(_invalid(answer)) == set(
        spec["components"]["schemas"]["InvalidRequestBody"]["properties"]
    )
    run_request = spec["components"]["schemas"]["RunRequest"]["properties"]
    assert run_request["model"]["enum"] == ["cnn", "resnet18", "mlp"]
