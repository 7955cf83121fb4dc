"""BodyLimitMiddleware: request bodies over a size limit get 413 JSON, never reach a route."""

from __future__ import annotations

import json
from collections.abc import Mapping

from fl_coordinator.telemetry import ASGIApp, Message, Receive, Scope, Send

# Every body the API takes is small JSON, except a user's own Flower App (a FAB of at most
# 10 MB, base64 in JSON).
DEFAULT_LIMIT_BYTES = 1 << 20
LIMITS_BY_PATH: Mapping[str, int] = {"/api/v1/runs/app": 16 << 20}


class BodyLimitMiddleware:
    """Refuses a body larger than its path's limit, by Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, default_limit: int = DEFAULT_LIMIT_BYTES) -> None:
        self.app = app
        self.default_limit = default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LIMITS_BY_PATH.get(scope["path"], self.default_limit)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        # Read the body first (it is small by definition), so a route never sees half of one.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > limit:
                await _refuse(send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": "payload_too_large",
            "detail": f"the request body is over this endpoint's limit of {limit} bytes",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
