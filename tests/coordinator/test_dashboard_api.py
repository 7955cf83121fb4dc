"""The REST API the dashboard uses (issue #7): sorted and searched device pages, the fleet
summary, whoami, the public read-only mode, the run preview and each device's selection history.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.coordinator.api_harness import FakeControl

from fl_coordinator.api_app import create_app
from fl_coordinator.api_auth import ROUTE_ACCESS
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.local_fleet import free_port, program
from fl_coordinator.registry import Registry
from fl_coordinator.round_selection import RoundSelection, SelectionSettings
from fl_coordinator.run_service import RunService
from fl_coordinator.selection_candidates import candidate_listing
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.capabilities import Capabilities, CudaStack, Identity, MemoryInfo, SpeedScore
from fl_shared.wire import DeviceRegistration, Heartbeat, RunRequest

STALE_S, OFFLINE_S = 30.0, 50.0


@dataclass
class Api:
    """A TestClient on the app, the registry behind it and credentials of each kind."""

    client: TestClient
    registry: Registry
    control: FakeControl
    clock: Any
    secrets: dict[str, str]

    def get(self, url: str, kind: str | None = "admin", **kwargs: Any) -> Any:
        return self.client.get(url, headers=self.auth(kind), **kwargs)

    def post(self, url: str, kind: str | None = "admin", **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.auth(kind), **kwargs)

    def auth(self, kind: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[kind]}"} if kind else {}

    def device(
        self,
        name: str,
        *,
        speed: float | None = None,
        memory_gib: int = 8,
        cuda: bool = False,
        hostname: str = "",
        arch: str = "aarch64",
    ) -> str:
        """Enroll a device that heartbeats now and reported its capabilities."""
        reg = DeviceRegistration(name=name, hostname=hostname)
        device_id = self.registry.register_device(reg).device_id
        self.registry.record_heartbeat(Heartbeat(device_id=device_id, max_temp_c=40.0))
        self.registry.record_capabilities(
            device_id,
            Capabilities(
                identity=Identity(arch=arch),
                memory=MemoryInfo(total_bytes=memory_gib * 2**30),
                cuda=CudaStack(torch_cuda_ok=cuda),
                speed=SpeedScore(torch_train_samples_per_s=speed),
            ),
        )
        self.clock.advance(0.001)  # distinct enrollment times
        return device_id


@contextmanager
def _api(tmp_path: Path, clock: Any, **settings: Any) -> Iterator[Api]:
    config = CoordinatorSettings(state_dir=tmp_path, **settings)
    registry = Registry(
        config.resolved_database_url,
        stale_after_s=STALE_S,
        offline_after_s=OFFLINE_S,
        clock=clock,
    )
    registry.migrate()
    store = CredentialStore(registry)
    device = registry.register_device(DeviceRegistration(name="credentialed")).device_id
    secrets = {
        "admin": store.create("admin", "ops-admin").secret,
        "read": store.create("read", "viewer").secret,
        "device": store.issue_device_credential(device).secret,
    }
    registry.revoke(device)  # out of the way of the fleet under test (its credential stays)
    store.warm_devices()
    control = FakeControl()
    service = RunService(registry, control, config)  # type: ignore[arg-type]
    app = create_app(registry, service, config, credentials=store)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, registry, control, clock, secrets)
    finally:
        registry.close()


@pytest.fixture
def api(tmp_path: Path, fake_clock: Any) -> Iterator[Api]:
    """The production mode: every route needs its credential."""
    with _api(tmp_path, fake_clock) as built:
        yield built


@pytest.fixture
def public_api(tmp_path: Path, fake_clock: Any) -> Iterator[Api]:
    """The public read-only mode."""
    with _api(tmp_path, fake_clock, public_read_only=True) as built:
        yield built


def _names(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [d["name"] for d in answer.json()]


# -- GET /api/v1/devices: sort and q -------------------------------------------------------------


def test_devices_sort_by_each_column_and_search(api: Api) -> None:
    api.device("bravo", speed=50.0, hostname="rack-1", arch="x86_64")
    api.device("alpha", speed=None, hostname="rack-2", arch="aarch64")
    api.device("charlie", speed=900.0, hostname="LAB-3", arch="armv7l")
    delta = api.device("delta", speed=10.0, arch="riscv64")
    api.registry.record_heartbeat(Heartbeat(device_id=delta))  # the latest beat

    def names(**params: Any) -> list[str]:
        return _names(api.get("/api/v1/devices", params={"status": "online", **params}))

    assert names() == ["bravo", "alpha", "charlie", "delta"]  # enrollment order
    assert names(sort="registered") == names()
    assert names(sort="-registered") == ["delta", "charlie", "alpha", "bravo"]
    assert names(sort="name") == ["alpha", "bravo", "charlie", "delta"]
    assert names(sort="-name") == ["delta", "charlie", "bravo", "alpha"]
    assert names(sort="speed") == ["delta", "bravo", "charlie", "alpha"]  # unmeasured last
    assert names(sort="-speed") == ["charlie", "bravo", "delta", "alpha"]  # ... both ways
    assert names(sort="arch") == ["alpha", "charlie", "delta", "bravo"]
    assert names(sort="-last_heartbeat")[0] == "delta"
    assert names(q="RACK") == ["bravo", "alpha"]  # hostname, any case
    assert names(q="lab", sort="-name") == ["charlie"]
    assert names(q="nobody") == []
    page = api.get(
        "/api/v1/devices",
        params={"status": "online", "sort": "-speed", "limit": 2, "offset": 2, "envelope": True},
    ).json()
    assert [d["name"] for d in page["items"]] == ["delta", "alpha"]
    assert (page["total"], page["next_offset"]) == (4, None)
    counted = api.get("/api/v1/devices", params={"q": "a", "status": "online", "limit": 1})
    assert counted.headers["X-Total-Count"] == "4" and len(counted.json()) == 1


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"sort": "speedy"}, "sort", "'registered', '-registered', 'name'"),
        ({"sort": "--name"}, "sort", "'-speed'"),
        ({"q": "x" * 129}, "q", "at most 128 characters"),
        ({"q": "a\x00b"}, "q", "match pattern"),
    ],
)
def test_bad_sort_or_search_is_422_naming_the_fix(
    api: Api, params: dict[str, str], field: str, says: str
) -> None:
    answer = api.get("/api/v1/devices", params=params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request" and body["fields"] == [field]
    assert body["detail"].startswith(f"{field}: ") and says in body["detail"]


# -- GET /api/v1/fleet/summary -------------------------------------------------------------------


def test_fleet_summary_counts_what_the_status_filter_lists(api: Api) -> None:
    online = [api.device(f"on{i}") for i in range(3)]
    api.clock.advance(STALE_S + 5)
    late = api.device("late")
    api.registry.drain(online[0])
    api.registry.revoke(online[1])
    api.clock.advance(10)  # the first three's beats are 45 s old: stale; late's 10 s: online
    api.device("fresh")
    answer = api.get("/api/v1/fleet/summary", kind="read")
    assert answer.status_code == 200
    summary = answer.json()
    listed = {
        state: int(api.get("/api/v1/devices", params={"status": state}).headers["X-Total-Count"])
        for state in ("online", "stale", "offline", "drained", "revoked")
    }
    assert {state: summary[state] for state in listed} == listed
    # The credentialed device of the fixture is revoked too.
    assert listed == {"online": 2, "stale": 1, "offline": 0, "drained": 1, "revoked": 2}
    assert summary["total"] == 6
    assert (summary["stale_after_s"], summary["offline_after_s"]) == (STALE_S, OFFLINE_S)
    assert summary["server_time"].startswith(api.clock.now.isoformat()[:19])
    assert api.get(f"/api/v1/devices/{late}").json()["status"] == "online"
    assert api.get(f"/api/v1/devices/{online[2]}").json()["status"] == "stale"


# -- GET /api/v1/whoami --------------------------------------------------------------------------


def test_whoami_names_the_token_and_refuses_devices_and_nobody(api: Api) -> None:
    admin = api.get("/api/v1/whoami", kind="admin").json()
    assert admin["role"] == "admin" and admin["name"] == "ops-admin"
    assert re.fullmatch(r"tok-[0-9a-f]+", admin["token_id"])
    assert (admin["development"], admin["public_read_only"]) == (False, False)
    read = api.get("/api/v1/whoami", kind="read").json()
    assert (read["role"], read["name"]) == ("read", "viewer")
    assert read["token_id"] != admin["token_id"]
    device = api.get("/api/v1/whoami", kind="device")
    assert device.status_code == 403 and "needs read access" in device.json()["detail"]
    nobody = api.get("/api/v1/whoami", kind=None)
    assert nobody.status_code == 401 and nobody.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in nobody.json()["detail"]


def test_whoami_in_development_mode_is_an_admin(tmp_path: Path, fake_clock: Any) -> None:
    with _api(tmp_path, fake_clock, insecure=True) as dev:
        me = dev.get("/api/v1/whoami", kind=None).json()
        assert (me["role"], me["token_id"], me["development"]) == ("admin", None, True)
        # A credential is still checked in the development mode.
        assert dev.get("/api/v1/whoami", kind="read").json()["role"] == "read"


# -- public read-only mode -----------------------------------------------------------------------


def _operations(app: Any) -> list[tuple[str, str, str]]:
    spec = app.openapi()
    return [
        (method.upper(), path, op["operationId"])
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def test_public_mode_opens_read_routes_only(public_api: Api) -> None:
    device_id = public_api.device("edge")
    ids = {"device_id": device_id, "run_id": 1, "round": 1, "token_id": "tok-000000000000"}
    checked = {"read": 0, "closed": 0}
    for method, path, operation_id in _operations(public_api.client.app):
        name = re.sub(r"_api_v1.*$|_healthz_get$", "", operation_id)
        access = ROUTE_ACCESS.get(name) or ("read" if method == "GET" else "admin")
        if access in ("public", "run") or path == "/healthz":
            continue
        url = path.format(**ids)
        answer = public_api.client.request(method, url, json={} if method != "GET" else None)
        if access == "read":
            assert answer.status_code not in (401, 403), (method, path, answer.status_code)
            checked["read"] += 1
        else:  # admin and device routes still need their credential
            assert answer.status_code == 401, (method, path, answer.status_code)
            checked["closed"] += 1
    assert checked["read"] >= 10 and checked["closed"] >= 15
    # Nothing an admin route would change was changed.
    assert public_api.get(f"/api/v1/devices/{device_id}").json()["status"] == "online"
    assert public_api.get("/api/v1/runs").json() == []


def test_public_mode_whoami_and_credentials_are_still_checked(public_api: Api) -> None:
    me = public_api.get("/api/v1/whoami", kind=None)
    assert me.status_code == 200
    assert me.json() == {
        "role": "public",
        "name": "public",
        "token_id": None,
        "development": False,
        "public_read_only": True,
    }
    summary = public_api.get("/api/v1/fleet/summary", kind=None)
    assert summary.status_code == 200 and summary.json()["total"] == 1
    bogus = public_api.client.get(
        "/api/v1/fleet/summary", headers={"Authorization": "Bearer flr_not-a-token"}
    )
    assert bogus.status_code == 401  # a credential that is brought is checked
    assert public_api.get("/api/v1/whoami", kind="device").status_code == 403
    assert public_api.get("/api/v1/whoami", kind="read").json()["role"] == "read"
    refused = public_api.post("/api/v1/runs/preview", kind=None, json={})
    assert refused.status_code == 401
    assert "public read-only mode opens read routes only" in refused.json()["detail"]
    assert public_api.post("/api/v1/runs/preview", kind="admin", json={}).status_code == 200


def test_public_mode_is_off_by_default_and_set_by_env_toml_and_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CoordinatorSettings(state_dir=tmp_path).public_read_only is False
    config = tmp_path / "coordinator.toml"
    config.write_text("[coordinator]\npublic_read_only = true\n")
    assert CoordinatorSettings.load(config, "coordinator").public_read_only is True
    monkeypatch.setenv("FL_COORDINATOR_PUBLIC_READ_ONLY", "false")
    assert CoordinatorSettings.load(config, "coordinator").public_read_only is False
    assert CoordinatorSettings.load(None, "coordinator", public_read_only=True).public_read_only


def test_serve_with_public_read_only_warns(tmp_path: Path) -> None:
    with socket.socket() as taken:  # serve stops at the taken port, after its warnings
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--insecure", "--port", str(port), "--superlink-port", str(free_port())]
        env = {k: v for k, v in os.environ.items() if k != "FL_COORDINATOR_PUBLIC_READ_ONLY"}
        with_flag, without = (
            subprocess.run(
                [program("fl-coordinator"), "serve", "--state-dir", str(tmp_path), *args, *extra],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=env,
            )
            for extra in (["--public-read-only"], [])
        )
    assert "public_read_only_mode" in with_flag.stdout and "warning" in with_flag.stdout
    assert "anyone who reaches the API" in with_flag.stdout
    assert "public_read_only_mode" not in without.stdout
    assert with_flag.returncode == without.returncode != 0  # the port was taken


# -- POST /api/v1/runs/preview -------------------------------------------------------------------


def test_preview_selects_as_round_one_would_and_writes_nothing(api: Api) -> None:
    fast = api.device("fast", speed=900.0, memory_gib=16)
    mid = api.device("mid", speed=300.0, memory_gib=16)
    slow = api.device("slow", speed=20.0, memory_gib=16)
    small = api.device("small", speed=900.0, memory_gib=1)
    api.registry.drain(api.device("drained", speed=900.0))
    body: dict[str, Any] = {
        "selection": "capability",
        "devices_per_round": 1,
        "overcommit": 2.0,
        "seed": 7,
    }
    answer = api.post("/api/v1/runs/preview", json={**body, "min_memory_mb": 4096})
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert (preview["policy"], preview["devices_per_round"]) == ("capability", 1)
    assert (preview["eligible"], preview["enough"]) == (3, True)  # min_devices is 2 by default
    assert len(preview["selected"]) == 2  # ceil(1 x 2.0)
    assert {d["device_id"] for d in preview["selected"] + preview["not_selected"]} == {
        fast,
        mid,
        slow,
    }
    assert [(d["device_id"], d["name"]) for d in preview["excluded"]] == [(small, "small")]
    assert preview["excluded"][0]["reason"] == "1024 MiB memory, the run needs 4096"
    names = {d["device_id"]: d["name"] for d in preview["selected"] + preview["not_selected"]}
    assert names == {fast: "fast", mid: "mid", slow: "slow"}
    assert all(d["selected"] for d in preview["selected"])
    assert not any(d["selected"] for d in preview["not_selected"])
    # The same choice as the ServerApp's RoundSelection with every candidate connected.
    request = RunRequest.model_validate({**body, "min_memory_mb": 4096})
    devices = {i: d.device_id for i, d in enumerate(api.registry.eligible_devices())}
    rounds = RoundSelection(
        settings=SelectionSettings(
            policy="capability", devices_per_round=1, overcommit=2.0, seed=7
        ),
        devices=devices,
        candidates=lambda: candidate_listing(api.registry.eligible_devices(), request),
    )
    chosen = {devices[node] for node in rounds.choose(1, lambda: list(devices))}
    assert {d["device_id"] for d in preview["selected"]} == chosen
    # Nothing was started or written.
    assert api.control.configs == [] and api.get("/api/v1/runs").json() == []


def test_preview_detail_says_who_trains_or_why_not(api: Api) -> None:
    a = api.device("a", speed=100.0)
    api.device("b", speed=200.0)
    api.device("c", speed=300.0)
    every = api.post("/api/v1/runs/preview", json={"selection": "random"}).json()
    assert every["enough"] and every["devices_per_round"] is None
    assert len(every["selected"]) == 3 and every["not_selected"] == []
    assert every["detail"] == "3 devices would train in round 1 (random policy)"
    some = api.post(
        "/api/v1/runs/preview", json={"selection": "oort", "devices_per_round": 1, "overcommit": 1}
    ).json()
    assert len(some["selected"]) == 1 and len(some["not_selected"]) == 2
    assert some["detail"] == (
        "1 device would train in round 1 (oort policy, aggregating the first update); "
        "2 not selected"
    )
    cuda = api.post(
        "/api/v1/runs/preview", json={"required_accelerator": "cuda", "min_devices": 1}
    ).json()
    assert (cuda["eligible"], cuda["enough"], cuda["selected"]) == (0, False, [])
    assert len(cuda["excluded"]) == 3
    assert cuda["detail"].startswith(
        "the run cannot start now: 0 devices may be selected and it needs min_devices=1 "
        "(kept out: a: no CUDA accelerator, the run requires one;"
    )
    assert "lower min_devices" in cuda["detail"]
    labelled = api.post(
        "/api/v1/runs/preview",
        json={"target_labels": {"site": "mars"}, "devices_per_round": 5, "min_devices": 1},
    ).json()
    assert (labelled["eligible"], labelled["excluded"], labelled["enough"]) == (0, [], False)
    assert "0 devices may be selected" in labelled["detail"]
    api.registry.set_labels(a, {"site": "mars"})
    labelled = api.post(
        "/api/v1/runs/preview", json={"target_labels": {"site": "mars"}, "min_devices": 1}
    ).json()
    assert [d["name"] for d in labelled["selected"]] == ["a"] and labelled["enough"]


def test_preview_needs_an_admin_and_a_valid_request(api: Api) -> None:
    assert api.post("/api/v1/runs/preview", kind="read", json={}).status_code == 403
    assert api.post("/api/v1/runs/preview", kind=None, json={}).status_code == 401
    bad = api.post("/api/v1/runs/preview", json={"selection": "fastest", "overcommit": 0.5})
    assert bad.status_code == 422
    assert set(bad.json()["fields"]) == {"selection", "overcommit"}
    assert "'random', 'oort' or 'capability'" in bad.json()["detail"]
    # The same request body as POST /api/v1/runs, the same rules: central DP averages.
    dp = api.post("/api/v1/runs/preview", json={"privacy": "central", "aggregation": "krum"})
    assert dp.status_code == 422 and "use 'fedavg' or privacy 'local'" in dp.json()["detail"]


# -- GET /api/v1/devices/{id}: selection_history -------------------------------------------------


def test_device_detail_carries_the_selection_history_newest_first(api: Api) -> None:
    fast, slow = api.device("fast", speed=900.0), api.device("slow", speed=10.0)
    run_id, token = api.registry.create_run(RunRequest(devices_per_round=1))

    def report(server_round: int, *decisions: dict[str, Any]) -> None:
        answer = api.client.post(
            f"/api/v1/runs/{run_id}/rounds",
            headers={"X-Run-Token": token},
            json={"round": server_round, "selection": list(decisions)},
        )
        assert answer.status_code == 204, answer.text

    chosen = {"device_id": fast, "selected": True, "reason": "fastest", "predicted_s": 1.0}
    left = {"device_id": slow, "selected": False, "reason": "slow", "score": 0.1}
    report(1, chosen, left)
    report(2, {**chosen, "reason": "first"})
    report(2, {**chosen, "reason": "reported again"}, {**left, "selected": True})
    detail = api.get(f"/api/v1/devices/{slow}", kind="read").json()
    assert detail["selection_history"] == [
        {
            "run_id": run_id,
            "round": 2,
            "selected": True,
            "reason": "slow",
            "score": 0.1,
            "predicted_s": None,
        },
        {
            "run_id": run_id,
            "round": 1,
            "selected": False,
            "reason": "slow",
            "score": 0.1,
            "predicted_s": None,
        },
    ]
    history = api.get(f"/api/v1/devices/{fast}").json()["selection_history"]
    assert [(h["round"], h["reason"]) for h in history] == [(2, "reported again"), (1, "fastest")]
    assert api.get(f"/api/v1/devices/{fast}").json()["participation"] == []
