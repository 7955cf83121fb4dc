"""OpenTelemetry tracing of the coordinator: a span per API request and per training round.

Spans are exported by OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific
variable) is set, and go nowhere otherwise: nothing leaves the host unless configured. Tests
attach the SDK's in-memory exporter to the provider this module returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from fl_coordinator import __version__

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACER_NAME = "fl_coordinator"

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def configure_tracing(service_name: str = "fl-coordinator") -> TracerProvider:
    """The process's tracer provider, created once; with an OTLP exporter when configured."""
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__})
    )
    if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def tracer() -> trace.Tracer:
    """Our tracer (from the configured provider), made once: requests are hot paths."""
    global _tracer
    if _tracer is None:
        _tracer = configure_tracing().get_tracer(TRACER_NAME, __version__)
    return _tracer


class TracingMiddleware:
    """Pure ASGI middleware: one server span per HTTP request, named by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        with tracer().start_as_current_span(
            f"{method} {scope['path']}", kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", scope["path"])
            status_code = 500

            async def send_and_record(message: Message) -> None:
                nonlocal status_code
                if message["type"] == "http.response.start":
                    status_code = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_record)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status_code)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def record_round_span(
    *, run_id: int, server_round: int, seconds: float, attributes: dict[str, Any]
) -> None:
    """A span for one finished round (it started ``seconds`` ago), with its metrics."""
    end_ns = time.time_ns()
    start_ns = end_ns - int(max(seconds, 0.0) * 1e9)
    span = tracer().start_span(
        "fl.round",
        start_time=start_ns,
        attributes={"fl.run_id": run_id, "fl.round": server_round, **attributes},
    )
    span.end(end_time=end_ns)
