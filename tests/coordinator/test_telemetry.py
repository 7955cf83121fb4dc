"""OpenTelemetry: a span per API request (named by route) and per reported round."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fl_coordinator.api_app import create_app
from fl_coordinator.registry import Registry
from fl_coordinator.run_reporter import RunReporter
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_coordinator.telemetry import configure_tracing
from fl_shared.wire import RoundReport


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    configure_tracing().add_span_processor(processor)
    try:
        yield exporter
    finally:
        processor.shutdown()


class NoControl:
    def start_run(self, run_config: dict[str, Any]) -> int:
        return 7


def test_each_request_is_a_server_span_named_by_its_route(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    registry = Registry(settings.resolved_database_url)
    registry.create_schema()
    service = RunService(registry, NoControl(), settings)  # type: ignore[arg-type]
    with TestClient(create_app(registry, service, settings)) as client:
        assert client.get("/api/v1/runs/12345").status_code == 404
        assert client.get("/healthz").status_code == 200
        device_id = client.post("/api/v1/devices", json={"name": "d"}).json()["device_id"]
        for _ in range(2):  # the first beat goes through the route, the second the fast path
            beat = {"device_id": device_id}
            assert client.post(f"/api/v1/devices/{device_id}/heartbeat", json=beat).is_success
    registry.close()
    finished = {s.name: s for s in spans.get_finished_spans()}
    beats = [
        s for s in spans.get_finished_spans() if s.name.startswith("POST /api/v1/devices/{dev")
    ]
    assert len(beats) == 2
    assert {b.attributes["http.response.status_code"] for b in beats} == {200}  # type: ignore[index]
    missing = finished["GET /api/v1/runs/{run_id}"]
    assert missing.attributes is not None
    assert missing.attributes["http.route"] == "/api/v1/runs/{run_id}"
    assert missing.attributes["url.path"] == "/api/v1/runs/12345"
    assert missing.attributes["http.response.status_code"] == 404
    assert finished["GET /healthz"].attributes["http.response.status_code"] == 200  # type: ignore[index]


def test_a_reported_round_is_a_span_with_its_metrics(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    posted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(request.url.path)
        return httpx.Response(204)

    reporter = RunReporter("http://coordinator", 3, token, transport=httpx.MockTransport(handler))
    reporter.round(RoundReport(round=2, eval_accuracy=0.75, eval_loss=0.5, seconds=4.0))
    reporter.close()
    assert posted == ["/api/v1/runs/3/rounds"]
    (span,) = [s for s in spans.get_finished_spans() if s.name == "fl.round"]
    assert span.attributes is not None
    assert span.attributes["fl.run_id"] == 3 and span.attributes["fl.round"] == 2
    assert span.attributes["fl.eval_accuracy"] == 0.75
    assert "fl.train_loss" not in span.attributes  # not known: not recorded
    assert span.end_time is not None and span.start_time is not None
    assert abs((span.end_time - span.start_time) / 1e9 - 4.0) < 0.01
