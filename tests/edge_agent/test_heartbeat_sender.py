"""Tests for fl_edge_agent.heartbeat_sender: one beat, callbacks, background loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fl_edge_agent import heartbeat_sender as heartbeat_module
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.errors import CredentialRejected
from fl_edge_agent.heartbeat_sender import HeartbeatSender
from fl_shared.wire import Heartbeat

Handler = Callable[[httpx.Request], httpx.Response]


class RecordingLog:
    """Stands in for the module's structlog logger and records each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Callable[..., None]:
        def emit(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return emit

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._record(level)

    def names(self, level: str) -> list[str]:
        return [event for lvl, event, _ in self.events if lvl == level]


@pytest.fixture
def recording_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    log = RecordingLog()
    monkeypatch.setattr(heartbeat_module, "log", log)
    return log


def _client(handler: Handler) -> CoordinatorClient:
    return CoordinatorClient("http://coordinator.test", transport=httpx.MockTransport(handler))


def _ok(request: httpx.Request) -> httpx.Response:
    device_id = request.url.path.split("/")[-2]
    return httpx.Response(
        200, json={"device_id": device_id, "server_time": datetime.now(UTC).isoformat()}
    )


def _beat() -> Heartbeat:
    return Heartbeat(device_id="dev-1", supernode_state="running", uptime_s=1.0)


def _never() -> None:
    raise AssertionError("on_unknown_device must not be called")


def test_beat_once_counts_sent_beats(recording_log: RecordingLog) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return _ok(request)

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, _never, interval_s=5.0)
    try:
        assert sender.sent == 0
        sender.beat_once()
        sender.beat_once()
        sender.beat_once()
    finally:
        client.close()
    assert sender.sent == 3
    assert paths == ["/api/v1/devices/dev-1/heartbeat"] * 3
    assert recording_log.names("warning") == []


def test_beat_once_calls_on_unknown_device_on_404(recording_log: RecordingLog) -> None:
    calls: list[str] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found", "detail": "register again"})

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, lambda: calls.append("reenroll"), interval_s=5.0)
    try:
        sender.beat_once()
    finally:
        client.close()
    assert calls == ["reenroll"]
    assert sender.sent == 0
    assert "heartbeat_unknown_device" in recording_log.names("warning")


def test_beat_once_hands_a_401_to_on_credential_rejected(recording_log: RecordingLog) -> None:
    rejected: list[CredentialRejected] = []

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unauthorized", "detail": "revoked"})

    client = CoordinatorClient(
        "http://coordinator.test", transport=httpx.MockTransport(handler), credential="fld_x"
    )
    sender = HeartbeatSender(
        client, _beat, _never, interval_s=5.0, on_credential_rejected=rejected.append
    )
    try:
        assert sender.beat_once() is False
    finally:
        client.close()
    assert len(rejected) == 1 and "enroll again" in str(rejected[0])
    assert sender.last_error == str(rejected[0])


@pytest.mark.parametrize(
    "handler_kind", ["connect_error", "timeout", "server_error", "upgrade_required"]
)
def test_beat_once_logs_failures_and_does_not_raise(
    recording_log: RecordingLog, handler_kind: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if handler_kind == "connect_error":
            raise httpx.ConnectError("refused", request=request)
        if handler_kind == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if handler_kind == "server_error":
            return httpx.Response(503, json={"error": "unavailable", "detail": "busy"})
        return httpx.Response(426, json={"error": "upgrade_required", "detail": "too old"})

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, _never, interval_s=5.0)
    try:
        sender.beat_once()  # must not raise
    finally:
        client.close()
    assert sender.sent == 0
    failures = [f for lvl, e, f in recording_log.events if e == "heartbeat_failed"]
    assert len(failures) == 1
    assert failures[0]["device_id"] == "dev-1"
    assert failures[0]["error"]


def test_beat_once_survives_malformed_success_body(recording_log: RecordingLog) -> None:
    # Regression: HeartbeatSender.beat_once (heartbeat_sender.py:51-59) only catches FlAgentError,
    # but CoordinatorClient.heartbeat raises pydantic.ValidationError when a 2xx answer is not
    # a HeartbeatAck (e.g. an HTML page from a captive proxy). The exception escapes
    # beat_once ("failures are logged, never raised") and kills the background heartbeat
    # thread for good. Fix: have CoordinatorClient turn a malformed 2xx body into a
    # FlAgentError (e.g. CoordinatorUnreachable), or catch ValidationError in beat_once.
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy login</html>")

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, _never, interval_s=5.0)
    try:
        sender.beat_once()
    finally:
        client.close()
    assert sender.sent == 0
    assert "heartbeat_failed" in recording_log.names("warning")


def test_start_beats_repeatedly_and_stop_returns_promptly(recording_log: RecordingLog) -> None:
    three_beats = threading.Event()
    count = 0
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        with lock:
            count += 1
            if count >= 3:
                three_beats.set()
        return _ok(request)

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, _never, interval_s=0.01)
    try:
        sender.start()
        assert three_beats.wait(5), "the background thread did not beat three times"
    finally:
        started = time.monotonic()
        sender.stop()
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 1.0
    assert sender.sent >= 3
    after_stop = count
    time.sleep(0.05)
    assert count == after_stop, "beats went on after stop()"


def test_start_beats_at_once_and_stop_interrupts_long_interval(
    recording_log: RecordingLog,
) -> None:
    first_beat = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        first_beat.set()
        return _ok(request)

    client = _client(handler)
    sender = HeartbeatSender(client, _beat, _never, interval_s=3600.0)
    try:
        sender.start()
        assert first_beat.wait(5), "start() must beat immediately, not after one interval"
    finally:
        started = time.monotonic()
        sender.stop()
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 1.0
    assert sender.sent == 1


def test_stop_before_start_is_harmless() -> None:
    client = _client(_ok)
    sender = HeartbeatSender(client, _beat, _never, interval_s=1.0)
    try:
        sender.stop()
    finally:
        client.close()
    assert sender.sent == 0


def test_beat_soon_sends_at_once_instead_of_after_the_interval() -> None:
    beats: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        beats.append(time.monotonic())
        return _ok(request)

    sender = HeartbeatSender(_client(handler), _beat, lambda: None, interval_s=60.0)
    sender.start()
    try:
        deadline = time.monotonic() + 5
        while not beats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(beats) == 1  # the first beat at start, the next one due in ~60 s
        sender.beat_soon()
        while len(beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(beats) == 2
        assert beats[1] - beats[0] < 5
    finally:
        started = time.monotonic()
        sender.stop()
    assert time.monotonic() - started < 2  # stop still interrupts the wait
