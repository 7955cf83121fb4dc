"""REST API tests for stopping runs and reading their logs (Control API faked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.coordinator.api_harness import api_harness

from fl_coordinator.errors import SuperLinkUnreachable
from fl_coordinator.flctl import Api, CliError, execute
from fl_coordinator.flctl import _parser as flctl_parser
from fl_coordinator.registry import Registry


class FakeControl:
    """Stands in for the SuperLink's Control API."""

    def __init__(self) -> None:
        self.stopped: list[int] = []
        self.log_chunks = ["INFO : Starting FleetFedAvg strategy\n", "round_recorded round=1\n"]
        self.logs_break = False
        self.follows: list[bool] = []

    def start_run(self, run_config: dict[str, Any]) -> int:
        return 4242

    def run_state(self, flower_run_id: int) -> None:
        return None

    def stop_run(self, flower_run_id: int) -> None:
        self.stopped.append(flower_run_id)

    def stream_logs(self, flower_run_id: int, *, follow: bool = False) -> Iterator[str]:
        self.follows.append(follow)
        yield self.log_chunks[0]
        if self.logs_break:
            raise SuperLinkUnreachable("SuperLink Control API unreachable: connection reset")
        yield from self.log_chunks[1:]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, FakeControl]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness.client, harness.registry, control


def test_stop_a_running_run_then_stopping_again_is_409(env: Any) -> None:
    client, registry, control = env
    run_id = client.post("/api/v1/runs", json={}).json()["run_id"]
    answer = client.post(f"/api/v1/runs/{run_id}/stop")
    assert answer.status_code == 200
    assert answer.json()["status"] == "stopped" and answer.json()["stop_requested"]
    assert control.stopped == [4242]
    assert registry.get_run(run_id).finished_at is not None
    again = client.post(f"/api/v1/runs/{run_id}/stop")
    assert again.status_code == 409
    assert "already ended (stopped)" in again.json()["detail"]
    assert control.stopped == [4242]  # not asked twice


def test_stop_unknown_run_is_404(env: Any) -> None:
    client, _, control = env
    answer = client.post("/api/v1/runs/99/stop")
    assert answer.status_code == 404 and "99" in answer.json()["detail"]
    assert control.stopped == []


def test_logs_are_plain_text_and_follow_is_passed_on(env: Any) -> None:
    client, _, control = env
    run_id = client.post("/api/v1/runs", json={}).json()["run_id"]
    answer = client.get(f"/api/v1/runs/{run_id}/logs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "".join(control.log_chunks)
    client.get(f"/api/v1/runs/{run_id}/logs", params={"follow": "true"})
    assert control.follows == [False, True]
    assert client.get("/api/v1/runs/98/logs").status_code == 404


def test_a_broken_log_stream_ends_with_a_readable_line(env: Any) -> None:
    client, _, control = env
    control.logs_break = True
    run_id = client.post("/api/v1/runs", json={}).json()["run_id"]
    answer = client.get(f"/api/v1/runs/{run_id}/logs")
    assert answer.status_code == 200
    assert answer.text.startswith(control.log_chunks[0])
    assert "[log stream ended: SuperLink Control API unreachable" in answer.text


def _flctl(client: TestClient, *argv: str) -> tuple[int, str]:
    import io

    def handler(request: httpx.Request) -> httpx.Response:
        answer = client.request(
            request.method, request.url.raw_path.decode(), content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    out = io.StringIO()
    args = flctl_parser().parse_args(list(argv))
    code = execute(args, Api("http://coordinator", transport=httpx.MockTransport(handler)), out)
    return code, out.getvalue()


def test_flctl_runs_logs_and_stop(env: Any) -> None:
    client, _, control = env
    run_id = client.post("/api/v1/runs", json={}).json()["run_id"]
    code, text = _flctl(client, "runs", "logs", str(run_id), "--follow")
    assert code == 0 and text == "".join(control.log_chunks)
    code, text = _flctl(client, "runs", "stop", str(run_id))
    assert code == 0 and f"run {run_id}: stopped" in text
    with pytest.raises(CliError, match=r"409: run .* already ended"):
        _flctl(client, "runs", "stop", str(run_id))
