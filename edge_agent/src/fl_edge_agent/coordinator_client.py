"""CoordinatorClient: the agent's REST calls to the coordinator."""

from __future__ import annotations

import ssl
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from fl_edge_agent.errors import CoordinatorRejected, CoordinatorUnreachable, CredentialRejected
from fl_shared.capabilities import Capabilities
from fl_shared.wire import DeviceRegistered, DeviceRegistration, Heartbeat, HeartbeatAck

T = TypeVar("T", bound=BaseModel)


class UnknownDevice(CoordinatorRejected):
    """The coordinator does not know this device id (it must enroll again)."""


class CoordinatorClient:
    """Thin typed client; transport failures and 5xx become CoordinatorUnreachable.

    An enrolled device passes its ``credential`` (sent as a Bearer token on every call) and
    ``verify``, the TLS context with its coordinator's CA; a 401 then raises
    CredentialRejected, which no retry can fix.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        credential: str | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {credential}"} if credential else None
        self._enrolled = credential is not None
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            verify=verify if verify is not None else _tls(base_url),
            headers=headers,
        )

    @property
    def base_url(self) -> str:
        """The coordinator this client talks to."""
        return str(self._client.base_url)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def register(self, registration: DeviceRegistration) -> DeviceRegistered:
        """Enroll (or re-enroll) this device."""
        response = self._post("/api/v1/devices", registration.model_dump_json())
        return _parse(DeviceRegistered, response)

    def heartbeat(self, beat: Heartbeat) -> HeartbeatAck:
        """Send one heartbeat; UnknownDevice when the coordinator forgot us."""
        response = self._post(f"/api/v1/devices/{beat.device_id}/heartbeat", beat.model_dump_json())
        return _parse(HeartbeatAck, response)

    def report_capabilities(self, device_id: str, capabilities: Capabilities) -> None:
        """Send what this device measured about itself."""
        self._post(
            f"/api/v1/devices/{device_id}/capabilities",
            capabilities.model_dump_json(),
            method="PUT",
        )

    def _post(self, path: str, body: str, method: str = "POST") -> httpx.Response:
        try:
            response = self._client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise CoordinatorUnreachable(f"{self._client.base_url}: {exc}") from exc
        if response.status_code >= 500:
            raise CoordinatorUnreachable(f"{self._client.base_url} answered {response.status_code}")
        if response.status_code == 401:
            raise CredentialRejected(self._unauthorized(response))
        if response.status_code == 404 and path.startswith("/api/v1/devices/"):
            raise UnknownDevice(_detail(response))
        if response.status_code >= 400:
            raise CoordinatorRejected(
                f"coordinator refused {path} ({response.status_code}): {_detail(response)}"
            )
        return response

    def _unauthorized(self, response: httpx.Response) -> str:
        detail = _detail(response)
        if self._enrolled:
            return (
                f"the coordinator no longer accepts this device's credential (401: {detail}): "
                "it was revoked or the device enrolled again elsewhere; enroll again with a new "
                "token: fl-edge-agent enroll --coordinator URL --token TOKEN --force"
            )
        return (
            f"the coordinator requires enrolled devices (401: {detail}): enroll this device: "
            "fl-edge-agent enroll --coordinator URL --token TOKEN"
        )


def _tls(base_url: str) -> ssl.SSLContext | bool:
    """httpx's default verification for https://; for http:// a context that trusts no CA.

    A plain-HTTP client never uses it (relative paths only, no redirects followed), and the
    default would load certifi's CA bundle into the daemon for nothing (~1.2 MB of RSS).
    Should a request ever go out over TLS anyway, that context refuses every certificate.
    """
    if base_url.startswith("https://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _parse(schema: type[T], response: httpx.Response) -> T:
    try:
        return schema.model_validate_json(response.content)
    except ValidationError as exc:
        # A proxy's HTML page or a different service on that port: not a coordinator.
        raise CoordinatorUnreachable(
            f"{response.url} answered {response.status_code} with a body that is not a "
            f"{schema.__name__}: is coordinator_url right?"
        ) from exc


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text
    return str(data.get("detail", response.text)) if isinstance(data, dict) else response.text
