"""HeartbeatFastPath: answers a well-formed heartbeat of an admitted device without FastAPI.

Heartbeats are most of the coordinator's requests. FastAPI's routing, dependency solving and
response validation cost several times what the heartbeat itself costs, so this middleware
answers the happy path directly: a ``POST /api/v1/devices/{id}/heartbeat`` whose body validates
as :class:`~fl_shared.wire.Heartbeat`, speaks this wire major version, names the same device as
the path, carries that device's credential (or none, in the development mode), and comes from a
device the ingest already knows as active. It queues the beat and
sends the same ``HeartbeatAck`` the route would; when the queue is full it sends the route's
503 itself, because shedding load must stay cheap. Everything else (bad JSON, a wrong field, an
unknown or revoked device) goes on to the FastAPI route, unchanged, which gives the documented
answer; the OpenAPI spec documents both, because they are one endpoint.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from fl_coordinator.credentials import CredentialStore
from fl_coordinator.heartbeat_ingest import HeartbeatIngest, IngestOverloaded
from fl_coordinator.telemetry import ASGIApp, Message, Receive, Scope, Send
from fl_shared.wire import WIRE_MAJOR, ErrorBody, Heartbeat, HeartbeatAck, wire_major

_PATH = re.compile(r"/api/v1/devices/([^/]+)/heartbeat")
_HEADERS = [(b"content-type", b"application/json")]
# What the route says too when the queue is full (routes_devices.heartbeat).
RETRY_AFTER_S = "5"


class HeartbeatFastPath:
    """Pure ASGI middleware in front of the routes (inside the body limit and tracing)."""

    def __init__(
        self,
        app: ASGIApp,
        ingest: HeartbeatIngest,
        credentials: CredentialStore,
        *,
        development: bool,
        route: Any = None,
    ) -> None:
        """``route`` is the FastAPI route it stands in for (its template names the span);
        ``development``: beats without a credential are taken (``--insecure-dev``)."""
        self.app = app
        self.ingest = ingest
        self.credentials = credentials
        self.development = development
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None or not self._authorized(scope, match.group(1)):
            await self.app(scope, receive, send)  # the route answers (401 / 403 included)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            ack = self._accept(match.group(1), b"".join(chunks))
        except IngestOverloaded as exc:
            if self.route is not None:
                scope["route"] = self.route
            body = ErrorBody(error="unavailable", detail=str(exc)).model_dump_json().encode()
            await _respond(send, 503, body, [(b"retry-after", RETRY_AFTER_S.encode())])
            return
        if ack is None:

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        await _respond(send, 200, ack.model_dump_json().encode())

    def _authorized(self, scope: Scope, device_id: str) -> bool:
        """The device's own credential (cached: microseconds), or none in development mode."""
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            return self.development
        scheme, _, secret = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # From the cache only: a miss (first beat, or every CACHE_TTL) takes the route, which
        # reads the database in a worker thread instead of blocking this event loop.
        principal = self.credentials.cached(secret.strip())
        return (
            principal is not None
            and principal.kind == "device"
            and principal.device_id == device_id
        )

    def _accept(self, device_id: str, body: bytes) -> HeartbeatAck | None:
        """Queue the beat and return the answer; None when the route must decide.

        IngestOverloaded when the queue is full.
        """
        try:
            beat = Heartbeat.model_validate_json(body)
        except ValidationError:
            return None
        if beat.device_id != device_id or wire_major(beat.schema_version) != WIRE_MAJOR:
            return None
        admission = self.ingest.admission(device_id)
        if admission is None or admission[0] != "active":
            return None
        now = self.ingest.submit(beat)
        return HeartbeatAck(device_id=device_id, server_time=now)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_HEADERS,
                *(headers or []),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
