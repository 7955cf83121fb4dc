"""Every operation of the API, called with no credential and with each wrong kind of one.

No request succeeds without the right scope: the spec's own list of operations drives it, so a
new route is checked the day it is added.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.api_auth import ROUTE_ACCESS
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import DeviceRegistration

PUBLIC_OR_RUN_TOKEN = {name for name, access in ROUTE_ACCESS.items() if access in ("public", "run")}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    # Per test: an admin's revoke of the device would end its credential for the next ones.
    settings = CoordinatorSettings(state_dir=tmp_path)
    registry = Registry(settings.resolved_database_url)
    registry.migrate()
    store = CredentialStore(registry)
    device = registry.register_device(DeviceRegistration(name="edge")).device_id
    secrets = {
        "device_id": device,
        "admin": store.create("admin", "a").secret,
        "read": store.create("read", "r").secret,
        "device": store.issue_device_credential(device).secret,
        "other_device": store.issue_device_credential(
            registry.register_device(DeviceRegistration(name="other")).device_id
        ).secret,
    }
    service = RunService(registry, None, settings)  # type: ignore[arg-type]  # nothing runs
    app = create_app(registry, service, settings, credentials=store)
    # No SuperLink here: a route the caller may use can fail after the check; it is not a 401.
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, secrets
    registry.close()


def _operations() -> list[tuple[str, str, str]]:
    settings = CoordinatorSettings(state_dir=Path("/nonexistent"))
    registry = Registry("sqlite://")
    spec = create_app(registry, None, settings).openapi()  # type: ignore[arg-type]
    registry.close()
    return [
        (method.upper(), path, op["operationId"])
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


OPERATIONS = _operations()


def _name(operation_id: str) -> str:
    return re.sub(r"_api_v1.*$|_healthz_get$", "", operation_id)


def _call(
    client: TestClient, method: str, path: str, ids: dict[str, str], secret: str | None
) -> Any:
    url = path.format(device_id=ids["device_id"], run_id=1, round=1, token_id="tok-000000000000")
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return client.request(method, url, headers=headers, json={} if method != "GET" else None)


@pytest.mark.parametrize(("method", "path", "operation_id"), OPERATIONS)
def test_no_request_succeeds_without_the_right_scope(
    api: tuple[TestClient, dict[str, str]], method: str, path: str, operation_id: str
) -> None:
    client, ids = api
    name = _name(operation_id)
    if name in PUBLIC_OR_RUN_TOKEN or path == "/healthz":
        assert _call(client, method, path, ids, None).status_code != 401
        return
    access = ROUTE_ACCESS.get(name) or ("read" if method == "GET" else "admin")
    assert _call(client, method, path, ids, None).status_code == 401
    assert _call(client, method, path, ids, "fla_not-a-real-token").status_code == 401
    allowed = {"admin": {"admin"}, "read": {"admin", "read"}, "device": {"device"}}[access]
    for kind in ("read", "device", "other_device", "admin"):  # admin last: it may revoke
        status = _call(client, method, path, ids, ids[kind]).status_code
        if kind in allowed:
            assert status not in (401, 403), (kind, status)
        elif kind == "other_device" and access == "device" and "{device_id}" not in path:
            assert status in (403, 422), (kind, status)  # its own registration, wrong body
        else:
            assert status == 403, (kind, status)
