"""Heartbeat pacing: ±10 % jitter when healthy, capped backoff while away, reconnect hook."""

from __future__ import annotations

import random
import threading

import httpx

from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.heartbeat_sender import HeartbeatSender
from fl_shared.wire import Heartbeat


def _sender(handler: object, **kwargs: object) -> HeartbeatSender:
    client = CoordinatorClient(
        "http://coord",
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
    )
    return HeartbeatSender(
        client,
        lambda: Heartbeat(device_id="dev-1"),
        lambda: None,
        15.0,
        rng=random.Random(3),
        **kwargs,  # type: ignore[arg-type]
    )


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"device_id": "dev-1", "server_time": "2026-01-01T00:00:00Z"})


def test_healthy_waits_are_the_interval_within_ten_percent() -> None:
    sender = _sender(_ok)
    waits = [sender.next_wait(True) for _ in range(500)]
    assert 13.5 <= min(waits) < 14.0 and 16.0 < max(waits) <= 16.5


def test_failing_waits_back_off_up_to_the_interval() -> None:
    sender = _sender(_ok)
    waits = [sender.next_wait(False) for _ in range(40)]
    assert all(0 <= w <= 15.0 for w in waits)
    assert max(waits[:3]) <= 4.0  # 1, 2, 4 s ceilings first: a returning coordinator is seen soon
    sender.next_wait(True)
    assert sender.next_wait(False) <= 1.0  # a success resets the backoff


def test_first_success_after_failures_calls_reconnect_and_records_contact() -> None:
    up = threading.Event()
    reconnected = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if not up.is_set():
            raise httpx.ConnectError("refused", request=request)
        return _ok(request)

    sender = _sender(handler, on_reconnect=reconnected.set)
    sender._backoff.base_s = 0.01  # keep the test fast; the shape is tested above
    sender.start()
    try:
        assert not reconnected.wait(0.3)
        assert sender.last_contact_at is None and "refused" in (sender.last_error or "")
        up.set()
        assert reconnected.wait(5.0)
        assert sender.last_contact_at is not None and sender.last_error is None
    finally:
        sender.stop()
