"""Tests for fl_edge_agent.coordinator_client: typed REST calls and error mapping."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from fl_edge_agent.coordinator_client import CoordinatorClient, UnknownDevice, _tls
from fl_edge_agent.errors import CoordinatorRejected, CoordinatorUnreachable, CredentialRejected
from fl_shared.wire import WIRE_VERSION, DeviceRegistered, DeviceRegistration, Heartbeat

BASE = "http://coordinator.test:8080"

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> CoordinatorClient:
    return CoordinatorClient(BASE, transport=httpx.MockTransport(handler))


def _registration(device_id: str | None = None) -> DeviceRegistration:
    return DeviceRegistration(
        device_id=device_id,
        name="edge-01",
        hostname="host-01",
        platform="Linux-x86_64",
        agent_version="0.1.0",
        labels={"site": "lab"},
    )


def _ack(device_id: str) -> dict[str, str]:
    return {"device_id": device_id, "server_time": datetime.now(UTC).isoformat()}


def test_register_posts_json_body_and_returns_device_registered() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"device_id": "dev-42", "heartbeat_interval_s": 7.5})

    client = _client(handler)
    try:
        answer = client.register(_registration("dev-42"))
    finally:
        client.close()

    assert isinstance(answer, DeviceRegistered)
    assert answer.device_id == "dev-42"
    assert answer.heartbeat_interval_s == 7.5
    assert len(seen) == 1
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v1/devices"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["device_id"] == "dev-42"
    assert body["name"] == "edge-01"
    assert body["hostname"] == "host-01"
    assert body["platform"] == "Linux-x86_64"
    assert body["labels"] == {"site": "lab"}
    assert body["schema_version"] == WIRE_VERSION


def test_register_sends_null_device_id_on_first_enrollment() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"device_id": "new-id", "heartbeat_interval_s": 5})

    client = _client(handler)
    try:
        answer = client.register(_registration(None))
    finally:
        client.close()
    assert len(bodies) == 1
    assert bodies[0]["device_id"] is None
    assert answer.device_id == "new-id"


def test_register_ignores_unknown_fields_in_answer() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            201,
            json={"device_id": "d", "heartbeat_interval_s": 3, "added_in_1_9": {"x": 1}},
        )

    client = _client(handler)
    try:
        answer = client.register(_registration())
    finally:
        client.close()
    assert answer.device_id == "d"
    assert not hasattr(answer, "added_in_1_9")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_register_5xx_raises_unreachable(status: int) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "unavailable", "detail": "down"})

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorUnreachable) as info:
            client.register(_registration())
    finally:
        client.close()
    assert str(status) in str(info.value)
    assert not isinstance(info.value, CoordinatorRejected)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError],
)
def test_transport_errors_raise_unreachable(error: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("connection refused", request=request)

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorUnreachable) as info:
            client.register(_registration())
        with pytest.raises(CoordinatorUnreachable):
            client.heartbeat(Heartbeat(device_id="d"))
    finally:
        client.close()
    assert "coordinator.test" in str(info.value)
    assert isinstance(info.value.__cause__, error)


def test_heartbeat_posts_to_device_path_and_returns_ack() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_ack("dev-7"))

    client = _client(handler)
    try:
        ack = client.heartbeat(
            Heartbeat(device_id="dev-7", supernode_state="restarting", supernode_restarts=2)
        )
    finally:
        client.close()
    assert ack.device_id == "dev-7"
    assert seen[0].url.path == "/api/v1/devices/dev-7/heartbeat"
    body = json.loads(seen[0].content)
    assert body["supernode_state"] == "restarting"
    assert body["supernode_restarts"] == 2


def test_heartbeat_404_raises_unknown_device_with_detail() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, json={"error": "not_found", "detail": "device dev-7 is not registered"}
        )

    client = _client(handler)
    try:
        with pytest.raises(UnknownDevice) as info:
            client.heartbeat(Heartbeat(device_id="dev-7"))
    finally:
        client.close()
    assert isinstance(info.value, CoordinatorRejected)
    assert "device dev-7 is not registered" in str(info.value)


def test_register_404_is_rejected_but_not_unknown_device() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found", "detail": "no such route"})

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorRejected) as info:
            client.register(_registration())
    finally:
        client.close()
    assert not isinstance(info.value, UnknownDevice)
    assert "no such route" in str(info.value)


@pytest.mark.parametrize("call", ["register", "heartbeat"])
def test_426_raises_rejected_carrying_detail(call: str) -> None:
    detail = "wire schema 0.9 is not supported; upgrade fl-edge-agent"

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(426, json={"error": "upgrade_required", "detail": detail})

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorRejected) as info:
            if call == "register":
                client.register(_registration())
            else:
                client.heartbeat(Heartbeat(device_id="d"))
    finally:
        client.close()
    assert not isinstance(info.value, UnknownDevice)
    assert not isinstance(info.value, CoordinatorUnreachable)
    message = str(info.value)
    assert detail in message
    assert "426" in message


def test_4xx_with_non_json_body_carries_text() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="forbidden by proxy")

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorRejected) as info:
            client.register(_registration())
    finally:
        client.close()
    assert "forbidden by proxy" in str(info.value)
    assert "403" in str(info.value)


def test_4xx_with_json_array_body_raises_rejected() -> None:
    # Regression: coordinator_client._detail calls response.json().get(...), which raises
    # AttributeError (not ValueError) when a 4xx body is valid JSON but not an object
    # (e.g. a proxy answering `["forbidden"]`); the AttributeError escapes _post instead of
    # CoordinatorRejected. Fix: check isinstance(data, dict) before .get().
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json=["forbidden"])

    client = _client(handler)
    try:
        with pytest.raises(CoordinatorRejected) as info:
            client.register(_registration())
    finally:
        client.close()
    assert "403" in str(info.value)


def test_plain_http_client_loads_no_ca_bundle_and_would_refuse_any_tls_peer() -> None:
    context = _tls(BASE)
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == 0  # certifi's bundle is not loaded
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_https_client_keeps_httpx_default_verification() -> None:
    assert _tls("https://coordinator.example:8443") is True


def test_enrolled_client_sends_its_credential_on_every_call() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.url.path == "/api/v1/devices":
            return httpx.Response(201, json={"device_id": "dev-1", "heartbeat_interval_s": 5})
        return httpx.Response(200, json=_ack("dev-1"))

    client = CoordinatorClient(
        BASE, transport=httpx.MockTransport(handler), credential="fld_secret"
    )
    try:
        client.register(_registration("dev-1"))
        client.heartbeat(Heartbeat(device_id="dev-1", uptime_s=1.0))
    finally:
        client.close()
    assert seen == ["Bearer fld_secret", "Bearer fld_secret"]


def test_unenrolled_client_sends_no_authorization() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(201, json={"device_id": "dev-1", "heartbeat_interval_s": 5})

    client = _client(handler)
    try:
        client.register(_registration())
    finally:
        client.close()
    assert seen == [None]


@pytest.mark.parametrize(
    ("credential", "says"),
    [("fld_secret", "no longer accepts this device's credential"), (None, "requires enrolled")],
)
def test_401_raises_credential_rejected_naming_the_fix(credential: str | None, says: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unauthorized", "detail": "credential revoked"})

    client = CoordinatorClient(BASE, transport=httpx.MockTransport(handler), credential=credential)
    try:
        with pytest.raises(CredentialRejected) as info:
            client.heartbeat(Heartbeat(device_id="dev-1", uptime_s=1.0))
    finally:
        client.close()
    message = str(info.value)
    assert says in message and "credential revoked" in message
    assert "fl-edge-agent enroll" in message
    assert isinstance(info.value, CoordinatorRejected)
    assert "fld_secret" not in message
