"""Tests for fl_edge_agent.agent: enrollment with retries, persistence and the run loop."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.edge_agent.fake_supernode import FakeSuperNode, run_in_thread

from fl_edge_agent import agent as agent_module
from fl_edge_agent.agent import Agent
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.device_identity import DeviceIdentity
from fl_edge_agent.errors import CoordinatorRejected
from fl_edge_agent.settings import AgentSettings
from fl_shared.backoff import Backoff
from fl_shared.systemd_notifier import SystemdNotifier

Handler = Callable[[httpx.Request], httpx.Response]


class MaxRandom(random.Random):
    """Always draws the top of the range, so a Backoff waits its full ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("FL_AGENT_"):
            monkeypatch.delenv(key)


@pytest.fixture
def zero_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "Backoff", lambda **_kw: Backoff(base_s=0.0, cap_s=0.0))


def _settings(state_dir: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "name": "edge-01",
        "state_dir": state_dir,
        "insecure": True,
        "labels": {"site": "lab"},
        "probe_interval_s": 0,  # no probe child process in these unit tests
        **overrides,
    }
    return AgentSettings(**values)


def _client(handler: Handler) -> CoordinatorClient:
    return CoordinatorClient("http://coordinator.test", transport=httpx.MockTransport(handler))


def _registered(device_id: str, interval: float = 7.5) -> httpx.Response:
    return httpx.Response(201, json={"device_id": device_id, "heartbeat_interval_s": interval})


def _ack(request: httpx.Request) -> httpx.Response:
    device_id = request.url.path.split("/")[-2]
    return httpx.Response(
        200, json={"device_id": device_id, "server_time": datetime.now(UTC).isoformat()}
    )


def _refused_twice_then(device_id: str) -> tuple[Handler, list[int]]:
    """A coordinator that refuses two connections, then registers ``device_id``; counts calls."""
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        return _registered(device_id, 7.5)

    return handler, calls


def test_enroll_retries_until_answered_and_persists_id(tmp_path: Path, zero_backoff: None) -> None:
    handler, calls = _refused_twice_then("dev-abc")
    client = _client(handler)
    try:
        agent = Agent(_settings(tmp_path), client, threading.Event())
        assert agent.device_id is None
        interval = agent.enroll()
    finally:
        client.close()

    assert interval == 7.5
    assert calls == [3]
    assert agent.device_id == "dev-abc"
    assert json.loads((tmp_path / "device.json").read_text()) == {"device_id": "dev-abc"}
    assert DeviceIdentity(tmp_path).load() == "dev-abc"


def test_enroll_with_real_backoff_retries_on_5xx(tmp_path: Path) -> None:
    # Real Backoff(base 0.5): two waits of at most 0.5 s and 1.0 s.
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return httpx.Response(503, json={"error": "unavailable", "detail": "starting"})
        return _registered("dev-5xx", 3.0)

    client = _client(handler)
    try:
        interval = Agent(_settings(tmp_path), client, threading.Event()).enroll()
    finally:
        client.close()
    assert interval == 3.0
    assert calls == 3
    assert DeviceIdentity(tmp_path).load() == "dev-5xx"


def test_second_agent_reuses_persisted_device_id(tmp_path: Path, zero_backoff: None) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return _registered(body["device_id"] or "dev-first")

    client = _client(handler)
    try:
        first = Agent(_settings(tmp_path), client, threading.Event())
        assert first.enroll() == 7.5
        second = Agent(_settings(tmp_path), client, threading.Event())
        assert second.device_id == "dev-first"
        assert second.enroll() == 7.5
    finally:
        client.close()

    assert [b["device_id"] for b in bodies] == [None, "dev-first"]
    assert bodies[1]["name"] == "edge-01"
    assert bodies[1]["labels"] == {"site": "lab"}
    assert second.device_id == "dev-first"


def test_enroll_adopts_a_new_id_from_the_coordinator(tmp_path: Path, zero_backoff: None) -> None:
    DeviceIdentity(tmp_path).save("dev-old")

    def handler(_request: httpx.Request) -> httpx.Response:
        return _registered("dev-new")

    client = _client(handler)
    try:
        agent = Agent(_settings(tmp_path), client, threading.Event())
        assert agent.device_id == "dev-old"
        agent.enroll()
    finally:
        client.close()
    assert agent.device_id == "dev-new"
    assert DeviceIdentity(tmp_path).load() == "dev-new"


def test_enroll_426_raises_rejected_without_retrying(tmp_path: Path, zero_backoff: None) -> None:
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            426, json={"error": "upgrade_required", "detail": "upgrade fl-edge-agent"}
        )

    client = _client(handler)
    try:
        agent = Agent(_settings(tmp_path), client, threading.Event())
        with pytest.raises(CoordinatorRejected, match="upgrade fl-edge-agent"):
            agent.enroll()
    finally:
        client.close()
    assert calls == 1
    assert not (tmp_path / "device.json").exists()


def test_enroll_returns_none_when_already_stopped(tmp_path: Path) -> None:
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return _registered("never")

    stop = threading.Event()
    stop.set()
    client = _client(handler)
    try:
        started = time.monotonic()
        result = Agent(_settings(tmp_path), client, stop).enroll()
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert result is None
    assert elapsed < 1.0
    assert calls == 0
    assert not (tmp_path / "device.json").exists()


def test_stop_interrupts_a_long_backoff_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each failure would wait 30 s; setting stop must end enroll() at once.
    monkeypatch.setattr(
        agent_module, "Backoff", lambda **_kw: Backoff(base_s=30.0, cap_s=30.0, rng=MaxRandom())
    )
    stop = threading.Event()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        threading.Timer(0.05, stop.set).start()
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler)
    try:
        started = time.monotonic()
        result = Agent(_settings(tmp_path), client, stop).enroll()
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert result is None
    assert calls == 1
    assert elapsed < 2.0


def test_node_config_carries_device_facts(tmp_path: Path, zero_backoff: None) -> None:
    client = _client(lambda _r: _registered("dev-nc"))
    try:
        agent = Agent(
            _settings(
                tmp_path, data_dir="/data", partition_id=2, num_partitions=4, torch_threads=3
            ),
            client,
            threading.Event(),
        )
        agent.enroll()
    finally:
        client.close()
    assert agent.node_config() == {
        "device-id": "dev-nc",
        "data-dir": "/data",
        "partition-id": 2,
        "num-partitions": 4,
        "torch-threads": 3,
        "activity-file": str(tmp_path / "activity.json"),
    }


def test_run_starts_supernode_beats_and_stops_cleanly(
    tmp_path: Path, zero_backoff: None, fake_supernode: type[FakeSuperNode]
) -> None:
    beats: list[dict[str, Any]] = []
    two_beats = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/devices":
            return _registered("dev-run", 60.0)
        beats.append(json.loads(request.content))
        if len(beats) >= 2:
            two_beats.set()
        return _ack(request)

    stop = threading.Event()
    client = _client(handler)
    agent = Agent(
        _settings(tmp_path, heartbeat_interval_s=0.01, superlink="10.0.0.1:9092"), client, stop
    )
    try:
        thread, errors = run_in_thread(agent)
        assert two_beats.wait(5), "no heartbeats while running"
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        stop.set()
        client.close()

    assert errors == []
    assert len(fake_supernode.instances) == 1
    supernode = fake_supernode.instances[0]
    assert supernode.calls[0] == "start"
    assert supernode.calls[-1] == "stop"
    assert supernode.kwargs["superlink"] == "10.0.0.1:9092"
    assert supernode.kwargs["insecure"] is True
    assert supernode.kwargs["runtime"] == "warm"  # the default ClientApp runtime
    assert supernode.kwargs["state_dir"] == tmp_path
    assert supernode.kwargs["node_config"]["device-id"] == "dev-run"
    assert beats[0]["device_id"] == "dev-run"
    assert beats[0]["supernode_state"] == "running"


def test_run_returns_without_supernode_when_stopped_before_enrollment(
    tmp_path: Path, fake_supernode: type[FakeSuperNode]
) -> None:
    stop = threading.Event()
    stop.set()
    client = _client(lambda _r: _registered("never"))
    try:
        Agent(_settings(tmp_path), client, stop).run()
    finally:
        client.close()
    assert fake_supernode.instances == []


def test_heartbeats_survive_a_rejected_reenrollment(
    tmp_path: Path, zero_backoff: None, fake_supernode: type[FakeSuperNode]
) -> None:
    # Regression: Agent._reenroll (agent.py:72-77) catches only CoordinatorUnreachable. When the
    # coordinator forgets the device (heartbeat 404) and then refuses the re-registration with
    # a 4xx (e.g. 426/403), CoordinatorRejected escapes through HeartbeatSender.beat_once
    # (documented "failures are logged, never raised") and kills the heartbeat thread while
    # the agent keeps running: the device silently goes offline forever. Fix: catch
    # FlAgentError (or CoordinatorRejected) in _reenroll, or guard the callback in beat_once.
    registrations = 0
    heartbeats = 0
    three_heartbeats = threading.Event()
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal registrations, heartbeats
        with lock:
            if request.url.path == "/api/v1/devices":
                registrations += 1
                if registrations == 1:
                    return _registered("dev-r", 60.0)
                return httpx.Response(403, json={"error": "forbidden", "detail": "revoked"})
            heartbeats += 1
            if heartbeats >= 3:
                three_heartbeats.set()
            return httpx.Response(404, json={"error": "not_found", "detail": "register again"})

    stop = threading.Event()
    client = _client(handler)
    agent = Agent(_settings(tmp_path, heartbeat_interval_s=0.01), client, stop)
    try:
        thread, errors = run_in_thread(agent)
        kept_beating = three_heartbeats.wait(2)
        stop.set()
        thread.join(5)
    finally:
        stop.set()
        client.close()
    assert errors == []
    assert kept_beating, f"heartbeats stopped after {heartbeats} beat(s)"


def test_the_test_only_straggler_delay_reaches_the_clientapp(
    tmp_path: Path, zero_backoff: None
) -> None:
    client = _client(lambda _r: _registered("dev-slow"))
    try:
        agent = Agent(_settings(tmp_path, test_train_delay_s=2.5), client, threading.Event())
        agent.enroll()
    finally:
        client.close()
    assert agent.node_config()["test-train-delay-s"] == 2.5


def test_an_unreachable_coordinator_does_not_hold_up_the_start(
    tmp_path: Path, zero_backoff: None
) -> None:
    """READY=1 while retrying: `systemctl restart` (an apt upgrade's postinst) must not hang."""
    handler, _calls = _refused_twice_then("dev-late")
    path = tmp_path / "notify.sock"
    client = _client(handler)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
        try:
            agent = Agent(_settings(tmp_path), client, threading.Event(), notifier=notifier)
            assert agent.enroll() == 7.5
        finally:
            client.close()
        first = sock.recv(4096).decode()
    assert first == "READY=1\nSTATUS=waiting for the coordinator at http://coordinator.test"
