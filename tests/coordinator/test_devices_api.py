"""REST devices API on a real registry (SQLite and PostgreSQL): filters, pages, detail, admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import DeviceRoundResult, RoundReport, RunRequest

JETSON_CAPS = {
    "identity": {"arch": "aarch64"},
    "jetson": {"model": "NVIDIA Jetson Orin Nano", "jetpack": "6.0"},
}
X86_GPU_CAPS = {"identity": {"arch": "x86_64"}, "nvidia_gpus": [{"name": "NVIDIA L4"}]}
PI_CAPS = {"identity": {"arch": "aarch64"}}


class Fleet:
    """A TestClient on the app plus the registry and clock behind it."""

    def __init__(self, client: TestClient, registry: Registry, clock: Any) -> None:
        self.client = client
        self.registry = registry
        self.clock = clock

    def enroll(self, name: str, caps: dict[str, Any] | None = None, **labels: str) -> str:
        answer = self.client.post("/api/v1/devices", json={"name": name, "labels": labels})
        assert answer.status_code == 201
        device_id: str = answer.json()["device_id"]
        if caps is not None:
            put = self.client.put(f"/api/v1/devices/{device_id}/capabilities", json=caps)
            assert put.status_code == 204
        self.clock.advance(0.001)  # distinct enrollment times: listings follow enrollment
        return device_id

    def beat(self, device_id: str, **fields: Any) -> Any:
        return self.client.post(
            f"/api/v1/devices/{device_id}/heartbeat", json={"device_id": device_id, **fields}
        )


@pytest.fixture
def fleet(tmp_path: Path, database_url: str, fake_clock: Any) -> Iterator[Fleet]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True, database_url=database_url)
    registry = Registry(
        settings.resolved_database_url,
        stale_after_s=settings.stale_after_s,
        offline_after_s=settings.offline_after_s,
        clock=fake_clock,
    )
    registry.migrate()
    service = RunService(registry, None, settings)  # type: ignore[arg-type]  # no runs here
    with TestClient(create_app(registry, service, settings)) as client:
        yield Fleet(client, registry, fake_clock)
    registry.close()


def _names(answer: Any) -> list[str]:
    return [d["name"] for d in answer.json()]


def test_list_is_a_plain_list_with_total_header_and_envelope_on_request(fleet: Fleet) -> None:
    for i in range(5):
        fleet.enroll(f"d{i}")
    answer = fleet.client.get("/api/v1/devices", params={"limit": 2, "offset": 1})
    assert answer.status_code == 200
    assert _names(answer) == ["d1", "d2"] and answer.headers["X-Total-Count"] == "5"
    page = fleet.client.get(
        "/api/v1/devices", params={"limit": 2, "offset": 3, "envelope": "true"}
    ).json()
    assert [d["name"] for d in page["items"]] == ["d3", "d4"]
    assert (page["total"], page["limit"], page["offset"], page["next_offset"]) == (5, 2, 3, None)
    first = fleet.client.get("/api/v1/devices", params={"limit": 2, "envelope": True}).json()
    assert first["next_offset"] == 2
    assert len(fleet.client.get("/api/v1/devices").json()) == 5  # default limit 100


def test_list_filters(fleet: Fleet) -> None:
    orin = fleet.enroll("orin", JETSON_CAPS, site="lab", tier="gold")
    l4 = fleet.enroll("l4", X86_GPU_CAPS, site="lab")
    pi = fleet.enroll("pi", PI_CAPS, site="field")
    fleet.enroll("unprobed")
    get = fleet.client.get
    assert _names(get("/api/v1/devices", params={"arch": "aarch64"})) == ["orin", "pi"]
    assert _names(get("/api/v1/devices", params={"has_gpu": "true"})) == ["orin", "l4"]
    assert _names(get("/api/v1/devices", params={"has_gpu": "false"})) == ["pi", "unprobed"]
    both = get("/api/v1/devices", params=[("label", "site=lab"), ("label", "tier=gold")])
    assert _names(both) == ["orin"] and both.headers["X-Total-Count"] == "1"
    fleet.client.post(f"/api/v1/devices/{orin}/drain", json={"reason": "maintenance"})
    fleet.client.post(f"/api/v1/devices/{pi}/revoke")
    fleet.clock.advance(40)  # past stale (30 s), before offline (50 s)
    fleet.beat(l4)
    by_status = {
        s: _names(get("/api/v1/devices", params={"status": s}))
        for s in ("online", "stale", "offline", "drained", "revoked")
    }
    assert by_status == {
        "online": ["l4"],
        "stale": ["unprobed"],
        "offline": [],
        "drained": ["orin"],
        "revoked": ["pi"],
    }
    listed = {d["name"]: d for d in get("/api/v1/devices").json()}
    assert (listed["orin"]["status"], listed["orin"]["status_reason"]) == (
        "drained",
        "maintenance",
    )
    assert listed["unprobed"]["online"] is True and listed["pi"]["online"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "asleep"}, "status"),
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"has_gpu": "maybe"}, "has_gpu"),
        ({"label": "site"}, "label"),
        ({"label": "=lab"}, "label"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(
    fleet: Fleet, params: dict[str, Any], field: str
) -> None:
    answer = fleet.client.get("/api/v1/devices", params=params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request" and body["fields"] == [field]
    assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("bad", ["Infinity", "NaN", "-Infinity"])
def test_capabilities_with_a_non_finite_number_are_422_and_keep_the_stored_ones(
    fleet: Fleet, bad: str
) -> None:
    device_id = fleet.enroll("jet", JETSON_CAPS)
    # Python's json (and so a careless agent) writes these tokens; JSON itself has none.
    speed = '"speed": {"torch_train_samples_per_s": ' + bad + "}"
    body = '{"identity": {"arch": "x86_64"}, ' + speed + "}"
    answer = fleet.client.put(
        f"/api/v1/devices/{device_id}/capabilities",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert "torch_train_samples_per_s" in answer.json()["detail"]
    stored = fleet.client.get(f"/api/v1/devices/{device_id}").json()["capabilities"]
    assert stored["identity"]["arch"] == "aarch64"


def test_detail_with_history_and_participation(fleet: Fleet) -> None:
    device_id = fleet.enroll("orin", JETSON_CAPS)
    for i in range(3):
        fleet.clock.advance(15)
        assert fleet.beat(device_id, cpu_percent=10.0 * i, activity=f"beat {i}").status_code == 200
    run_id, _ = fleet.registry.create_run(RunRequest())
    result = DeviceRoundResult(
        device_id=device_id, node_id=3, num_examples=64, train_loss=0.42, train_seconds=1.5
    )
    fleet.registry.record_round(run_id, RoundReport(round=1, devices=[result]))
    plain = fleet.client.get(f"/api/v1/devices/{device_id}").json()
    assert plain["heartbeat_history"] == []
    assert plain["capabilities"]["jetson"]["model"] == "NVIDIA Jetson Orin Nano"
    assert plain["last_status"]["activity"] == "beat 2"
    assert plain["participation"] == [
        {
            "run_id": run_id,
            "round": 1,
            "num_examples": 64,
            "train_seconds": 1.5,
            "train_loss": 0.42,
        }
    ]
    detail = fleet.client.get(f"/api/v1/devices/{device_id}", params={"history": "1h"}).json()
    assert [h["cpu_percent"] for h in detail["heartbeat_history"]] == [0.0, 10.0, 20.0]
    assert detail["heartbeat_history"][0]["resolution_s"] == 0
    series = fleet.client.get(f"/api/v1/devices/{device_id}/heartbeats?window=7d").json()
    assert [h["activity"] for h in series] == ["beat 0", "beat 1", "beat 2"]
    bad = fleet.client.get(f"/api/v1/devices/{device_id}", params={"history": "2h"})
    assert bad.status_code == 422 and bad.json()["fields"] == ["history"]
    bad = fleet.client.get(f"/api/v1/devices/{device_id}/heartbeats", params={"window": "1y"})
    assert bad.status_code == 422 and bad.json()["fields"] == ["window"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("GET", "/heartbeats", None),
        ("PUT", "/labels", {"labels": {}}),
        ("PATCH", "/labels", {"labels": {"a": None}}),
        ("POST", "/drain", None),
        ("POST", "/undrain", None),
        ("POST", "/revoke", {"reason": "x"}),
        ("POST", "/unrevoke", None),
    ],
)
def test_unknown_device_is_404_json(
    fleet: Fleet, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = fleet.client.request(method, f"/api/v1/devices/dev-nope{path}", json=body)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "dev-nope" in answer.json()["detail"] and "flctl devices list" in answer.json()["detail"]


def test_labels_put_and_patch(fleet: Fleet) -> None:
    device_id = fleet.enroll("d", site="lab")
    url = f"/api/v1/devices/{device_id}/labels"
    put = fleet.client.put(url, json={"labels": {"site": "field", "rack": "4"}})
    assert put.status_code == 200 and put.json()["labels"] == {"site": "field", "rack": "4"}
    patch = fleet.client.patch(url, json={"labels": {"rack": None, "tier": "gold"}})
    assert patch.json()["labels"] == {"site": "field", "tier": "gold"}
    listed = fleet.client.get("/api/v1/devices", params={"label": "tier=gold"}).json()
    assert [d["device_id"] for d in listed] == [device_id]


@pytest.mark.parametrize(
    "body",
    [
        {"labels": {"bad key": "v"}},
        {"labels": {"a=b": "v"}},
        {"labels": {"-lead": "v"}},
        {"labels": {"k": "x" * 256}},
        {"labels": {"k": 5}},
        {},
    ],
)
def test_invalid_labels_are_422_naming_labels(fleet: Fleet, body: dict[str, Any]) -> None:
    device_id = fleet.enroll("d")
    for method in ("PUT", "PATCH"):
        answer = fleet.client.request(method, f"/api/v1/devices/{device_id}/labels", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["fields"][0].startswith("labels")
    assert fleet.registry.get_device(device_id).labels == {}


def test_drain_keeps_heartbeats_undrain_restores(fleet: Fleet) -> None:
    device_id = fleet.enroll("d")
    drained = fleet.client.post(f"/api/v1/devices/{device_id}/drain").json()
    assert drained["status"] == "drained" and drained["drained_at"] is not None
    assert fleet.beat(device_id).status_code == 200
    assert fleet.registry.eligible_device_ids() == []
    undrained = fleet.client.post(f"/api/v1/devices/{device_id}/undrain").json()
    assert undrained["status"] == "online" and undrained["drained_at"] is None
    too_long = fleet.client.post(f"/api/v1/devices/{device_id}/drain", json={"reason": "x" * 501})
    assert too_long.status_code == 422 and too_long.json()["fields"] == ["reason"]


def test_revoked_device_gets_403_naming_why_and_the_fix(fleet: Fleet) -> None:
    device_id = fleet.enroll("lost")
    revoked = fleet.client.post(f"/api/v1/devices/{device_id}/revoke", json={"reason": "stolen"})
    assert revoked.json()["status"] == "revoked"
    refusals = [
        fleet.beat(device_id),
        fleet.client.post("/api/v1/devices", json={"name": "lost", "device_id": device_id}),
        fleet.client.put(f"/api/v1/devices/{device_id}/capabilities", json=PI_CAPS),
    ]
    for answer in refusals:
        assert answer.status_code == 403
        body = answer.json()
        assert body["error"] == "forbidden"
        assert "revoked" in body["detail"] and "stolen" in body["detail"]
        assert f"flctl devices unrevoke {device_id}" in body["detail"]
    back = fleet.client.post(f"/api/v1/devices/{device_id}/unrevoke").json()
    assert back["status"] == "online" and back["status_reason"] == ""
    assert fleet.beat(device_id).status_code == 200


def test_openapi_lists_the_device_routes(fleet: Fleet) -> None:
    paths = fleet.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/devices/{device_id}",
        "/api/v1/devices/{device_id}/heartbeats",
        "/api/v1/devices/{device_id}/labels",
        "/api/v1/devices/{device_id}/drain",
        "/api/v1/devices/{device_id}/revoke",
    ):
        assert path in paths
    assert set(paths["/api/v1/devices/{device_id}/labels"]) == {"put", "patch"}
