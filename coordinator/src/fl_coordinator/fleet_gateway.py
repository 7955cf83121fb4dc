"""FleetGateway: the only door devices have to the SuperLink, and it opens onto the Fleet API alone.

Flower's SuperLink serves its Fleet, Control and Runtime APIs on one port, and the Control API
has no authentication. The coordinator therefore binds the SuperLink to 127.0.0.1 and puts this
TLS endpoint in front of it for devices: requests under ``/v1/fleet/`` (and ``/health``) are
forwarded to the SuperLink unchanged (SuperNode authentication signatures included); every
other path, ``/v1/control/*`` and ``/v1/runtime/*`` among them, gets 404 without reaching it.
"""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path

import httpx
import structlog
import uvicorn

from fl_coordinator.telemetry import Receive, Scope, Send

log = structlog.get_logger(__name__)

ALLOWED_PREFIXES = ("/v1/fleet/",)
ALLOWED_PATHS = frozenset({"/health"})
# Hop-by-hop headers are the connection's own, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_REFUSED = json.dumps(
    {
        "error": "not_found",
        "detail": "this endpoint serves the Fleet API (/v1/fleet/*) only",
    }
).encode()


def allowed(path: str) -> bool:
    """True for the paths devices may reach."""
    return path in ALLOWED_PATHS or path.startswith(ALLOWED_PREFIXES)


class FleetGatewayApp:
    """ASGI app forwarding the allowed paths to the SuperLink at ``upstream``."""

    def __init__(self, upstream: str, ca_cert: Path) -> None:
        self.upstream = upstream.rstrip("/")
        context = ssl.create_default_context(cafile=str(ca_cert))
        self._client = httpx.AsyncClient(verify=context, timeout=httpx.Timeout(60.0))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not allowed(scope["path"]):
            await _answer(send, 404, _REFUSED)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.upstream}{scope['path']}" + (f"?{query}" if query else "")
        try:
            answer = await self._client.request(scope["method"], url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            log.warning("fleet_gateway_upstream_failed", path=scope["path"], error=str(exc))
            detail = {"error": "unavailable", "detail": "the SuperLink is not reachable"}
            await _answer(send, 502, json.dumps(detail).encode())
            return
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.multi_items()
            if k.lower().encode() not in _HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        await _answer(send, answer.status_code, answer.content, out)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = headers if headers is not None else [(b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class FleetGateway:
    """The gateway's TLS server, run in a thread of the coordinator process."""

    def __init__(
        self, *, host: str, port: int, upstream: str, ca_cert: Path, cert: Path, key: Path
    ) -> None:
        config = uvicorn.Config(
            FleetGatewayApp(upstream, ca_cert),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.address = f"{host}:{port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Serve in a thread; returns once the port listens."""
        self._thread = threading.Thread(target=self._server.run, name="fleet-gateway", daemon=True)
        self._thread.start()
        stop = threading.Event()
        waited = 0.0
        while not self._server.started and waited < timeout_s:
            stop.wait(0.05)
            waited += 0.05
        if not self._server.started:
            raise RuntimeError(f"the Fleet API gateway did not start on {self.address}")
        log.info("fleet_gateway_serving", address=self.address)

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
