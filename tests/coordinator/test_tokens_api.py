"""Admin and read-only API tokens over the REST API: create, list, revoke, and what they may do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from fl_coordinator.api_app import create_app
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.registry import Registry
from fl_coordinator.routes_tokens import LAST_ADMIN
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import DeviceRegistration

TOKEN_FIELDS = {
    "token_id",
    "kind",
    "name",
    "status",
    "device_id",
    "labels",
    "created_at",
    "expires_at",
    "used_at",
    "revoked_at",
}


@dataclass
class Secure:
    client: TestClient
    store: CredentialStore
    registry: Registry
    admin_id: str
    admin: str

    def call(self, method: str, path: str, secret: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {secret or self.admin}"}
        return self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def secure(tmp_path: Path, fake_clock: Any) -> Iterator[Secure]:
    """The production mode: every route but the public ones needs its credential."""
    settings = CoordinatorSettings(state_dir=tmp_path)
    registry = Registry(settings.resolved_database_url, clock=fake_clock)
    registry.migrate()
    store = CredentialStore(registry, clock=fake_clock)
    admin = store.create("admin", "first")
    service = RunService(registry, None, settings)  # type: ignore[arg-type]  # nothing runs
    app = create_app(registry, service, settings, credentials=store)
    with TestClient(app) as client:
        yield Secure(client, store, registry, admin.token_id, admin.secret)
    registry.close()


def test_a_read_token_reads_but_changes_nothing(secure: Secure) -> None:
    device = secure.registry.register_device(DeviceRegistration(name="edge")).device_id
    with capture_logs() as logs:
        answer = secure.call("POST", "/api/v1/tokens", json={"kind": "read", "name": "grafana"})
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    assert issued["kind"] == "read" and issued["name"] == "grafana"
    assert issued["token"].startswith("flr_") and issued["expires_at"] is None
    assert {"event": "token_created", "token_id": issued["token_id"], "kind": "read"}.items() <= (
        next(e for e in logs if e["event"] == "token_created").items()
    )
    read = issued["token"]

    assert secure.call("GET", "/api/v1/devices", read).status_code == 200
    assert secure.call("GET", f"/api/v1/devices/{device}", read).status_code == 200
    for path, body in (
        (f"/api/v1/devices/{device}/drain", None),
        ("/api/v1/tokens", {"kind": "read", "name": "more"}),
        (f"/api/v1/tokens/{secure.admin_id}/revoke", None),
    ):
        refused = secure.call("POST", path, read, json=body)
        assert refused.status_code == 403, path
        assert refused.json()["error"] == "forbidden"
    listing = secure.call("GET", "/api/v1/tokens", read)
    assert listing.status_code == 403
    assert "needs admin access" in listing.json()["detail"]


def test_the_listing_shows_tokens_without_secrets(secure: Secure, fake_clock: Any) -> None:
    fake_clock.advance(1)  # oldest first: the fixture's admin token, then these
    issued = secure.call(
        "POST", "/api/v1/tokens", json={"kind": "read", "name": "ci", "expires_in_s": 3600}
    ).json()
    assert issued["expires_at"] is not None
    fake_clock.advance(1)
    secure.store.create("enroll", "lab", labels={"site": "lab"})
    answer = secure.call("GET", "/api/v1/tokens")
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(t["kind"], t["name"]) for t in items] == [
        ("admin", "first"),
        ("read", "ci"),
        ("enroll", "lab"),
    ]
    for token in items:
        assert set(token) == TOKEN_FIELDS
        assert token["status"] == "active"
    assert items[1]["token_id"] == issued["token_id"]
    assert items[1]["expires_at"] == issued["expires_at"]
    assert items[2]["labels"] == {"site": "lab"}
    assert issued["token"] not in answer.text and issued["token"][4:] not in answer.text

    only_read = secure.call("GET", "/api/v1/tokens", params={"kind": "read"}).json()["items"]
    assert [t["token_id"] for t in only_read] == [issued["token_id"]]
    bad = secure.call("GET", "/api/v1/tokens", params={"kind": "root"})
    assert bad.status_code == 422 and bad.json()["fields"] == ["kind"]


def test_a_revoked_token_gets_401(secure: Secure) -> None:
    issued = secure.call("POST", "/api/v1/tokens", json={"kind": "read", "name": "old"}).json()
    assert secure.call("GET", "/api/v1/devices", issued["token"]).status_code == 200  # cached
    with capture_logs() as logs:
        answer = secure.call("POST", f"/api/v1/tokens/{issued['token_id']}/revoke")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "revoked" and answer.json()["revoked_at"] is not None
    assert set(answer.json()) == TOKEN_FIELDS
    assert any(e["event"] == "token_revoked" and e["kind"] == "read" for e in logs)
    assert secure.call("GET", "/api/v1/devices", issued["token"]).status_code == 401
    again = secure.call("POST", f"/api/v1/tokens/{issued['token_id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == answer.json()["revoked_at"]


def test_enrollment_tokens_are_revoked_device_credentials_are_not(secure: Secure) -> None:
    enroll = secure.store.create("enroll", "lab")
    answer = secure.call("POST", f"/api/v1/tokens/{enroll.token_id}/revoke")
    assert answer.status_code == 200 and answer.json()["status"] == "revoked"

    device = secure.registry.register_device(DeviceRegistration(name="edge")).device_id
    credential = secure.store.issue_device_credential(device)
    refused = secure.call("POST", f"/api/v1/tokens/{credential.token_id}/revoke")
    assert refused.status_code == 409
    assert f"flctl devices revoke {device}" in refused.json()["detail"]
    assert secure.store.authenticate(credential.secret) is not None  # still valid


def test_an_unknown_token_id_is_404(secure: Secure) -> None:
    answer = secure.call("POST", "/api/v1/tokens/tok-000000000000/revoke")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "tok-000000000000" in answer.json()["detail"]


def test_the_last_active_admin_token_is_not_revoked(secure: Secure) -> None:
    answer = secure.call("POST", f"/api/v1/tokens/{secure.admin_id}/revoke")
    assert answer.status_code == 409
    assert answer.json() == {"error": "conflict", "detail": LAST_ADMIN}
    assert secure.call("GET", "/api/v1/tokens").status_code == 200  # still works

    second = secure.call("POST", "/api/v1/tokens", json={"kind": "admin", "name": "second"}).json()
    assert second["token"].startswith("fla_")
    # With another admin token, an admin may revoke the one it calls with.
    assert secure.call("POST", f"/api/v1/tokens/{secure.admin_id}/revoke").status_code == 200
    assert secure.call("GET", "/api/v1/tokens").status_code == 401
    refused = secure.call("POST", f"/api/v1/tokens/{second['token_id']}/revoke", second["token"])
    assert refused.status_code == 409


def test_expired_and_revoked_admin_tokens_do_not_count(secure: Secure, fake_clock: Any) -> None:
    short = secure.call(
        "POST", "/api/v1/tokens", json={"kind": "admin", "name": "short", "expires_in_s": 60}
    ).json()
    gone = secure.store.create("admin", "gone")
    secure.store.revoke(gone.token_id)
    fake_clock.advance(61)
    answer = secure.call("POST", f"/api/v1/tokens/{secure.admin_id}/revoke")
    assert answer.status_code == 409
    statuses = {
        t["name"]: t["status"] for t in secure.call("GET", "/api/v1/tokens").json()["items"]
    }
    assert statuses == {"first": "active", "short": "expired", "gone": "revoked"}
    # An expired admin token may be revoked (it is not active), the last active one stays.
    assert secure.call("POST", f"/api/v1/tokens/{short['token_id']}/revoke").status_code == 200


@pytest.mark.parametrize(
    ("kind", "route"), [("enroll", "/api/v1/enroll-tokens"), ("device", "/api/v1/enroll")]
)
def test_enroll_and_device_kinds_are_refused_naming_the_route(
    secure: Secure, kind: str, route: str
) -> None:
    answer = secure.call("POST", "/api/v1/tokens", json={"kind": kind, "name": "x"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["fields"] == ["kind"]
    assert route in body["detail"] and "flctl devices enroll-token" in body["detail"]
    assert secure.store.list(kind) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "read", "name": ""}, "name"),
        ({"kind": "read", "name": "x" * 101}, "name"),
        ({"kind": "read", "name": "x", "expires_in_s": 0}, "expires_in_s"),
        ({"kind": "read", "name": "x", "expires_in_s": 10**20}, "expires_in_s"),
        ({"kind": "root", "name": "x"}, "kind"),
        ({"name": "x"}, "kind"),
    ],
)
def test_bad_requests_name_the_field(secure: Secure, body: dict[str, Any], field: str) -> None:
    answer = secure.call("POST", "/api/v1/tokens", json=body)
    assert answer.status_code == 422
    assert answer.json()["fields"] == [field]


def test_the_spec_documents_the_routes(secure: Secure) -> None:
    paths = secure.client.get("/openapi.json").json()["paths"]
    create = paths["/api/v1/tokens"]["post"]
    assert create["tags"] == ["tokens"]
    assert {"201", "401", "403", "422"} <= set(create["responses"])
    assert {"200", "401", "403"} <= set(paths["/api/v1/tokens"]["get"]["responses"])
    revoke = paths["/api/v1/tokens/{token_id}/revoke"]["post"]
    assert {"200", "401", "403", "404", "409"} <= set(revoke["responses"])
