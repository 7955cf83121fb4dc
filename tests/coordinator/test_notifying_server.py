"""NotifyingServer: READY=1 once listening, WATCHDOG=1 from the event loop, STOPPING=1."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from tests.notify_receiver import NotifyCollector, notify_collector

from fl_coordinator.notifying_server import NotifyingServer
from fl_shared.ports import free_port
from fl_shared.systemd_notifier import SystemdNotifier

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BLOCK_S = 0.6


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200; /block holds the event loop for BLOCK_S, as a wedged handler would."""
    if scope["path"] == "/block":
        time.sleep(BLOCK_S)  # deliberately blocking: the loop can run nothing else meanwhile
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def failing_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.failed", "message": "no database"})


@pytest.fixture
def receiver() -> Iterator[NotifyCollector]:
    with notify_collector() as collector:
        yield collector


@contextmanager
def running(server: NotifyingServer) -> Iterator[threading.Thread]:
    """Run the server on a thread (uvicorn leaves signals alone there); always stop it."""
    thread = threading.Thread(target=server.run, name="uvicorn-under-test", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive()


def make_server(port: int, env: dict[str, str], asgi: Any = app) -> NotifyingServer:
    config = uvicorn.Config(
        asgi,
        host="127.0.0.1",
        port=port,
        lifespan="on" if asgi is failing_lifespan_app else "off",
        log_config=None,
        access_log=False,
    )
    return NotifyingServer(config, SystemdNotifier(env), "serving API on test")


def test_ready_is_sent_once_the_api_accepts_connections(receiver: NotifyCollector) -> None:
    port = free_port()
    server = make_server(port, {"NOTIFY_SOCKET": receiver.notify_socket})

    with running(server):
        ready = receiver.wait_for(b"READY=1", timeout_s=10)
        # No retry: READY=1 promises the listening socket already exists.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok"

    assert ready == b"READY=1\nSTATUS=serving API on test"
    assert receiver.messages()[0] == ready


def test_watchdog_pings_come_from_the_event_loop(receiver: NotifyCollector) -> None:
    # WATCHDOG_USEC 0.1 s: a ping every 0.05 s while the loop runs.
    env = {"NOTIFY_SOCKET": receiver.notify_socket, "WATCHDOG_USEC": "100000"}
    port = free_port()
    server = make_server(port, env)

    with running(server), httpx.Client(timeout=10) as client:
        receiver.wait_for(b"READY=1", timeout_s=10)
        time.sleep(BLOCK_S)
        blocked_from = time.monotonic()
        client.get(f"http://127.0.0.1:{port}/block")
        blocked_until = time.monotonic()
        time.sleep(0.2)

    ping_times = [t for t, m in receiver.timed() if m == b"WATCHDOG=1"]
    free_running = [t for t in ping_times if t < blocked_from]
    assert len(free_running) >= 5
    assert max(b - a for a, b in itertools.pairwise(free_running)) < BLOCK_S / 2
    # While a handler holds the loop, the pings stop: one gap as long as the block.
    assert blocked_until - blocked_from >= BLOCK_S
    gaps = [b - a for a, b in itertools.pairwise(ping_times) if b > blocked_from]
    assert max(gaps) >= BLOCK_S * 0.9
    # ... and resume once it lets go.
    assert any(t > blocked_until for t in ping_times)


def test_stopping_is_sent_and_the_pings_end(receiver: NotifyCollector) -> None:
    env = {"NOTIFY_SOCKET": receiver.notify_socket, "WATCHDOG_USEC": "100000"}
    server = make_server(free_port(), env)

    with running(server) as thread:
        receiver.wait_for(b"READY=1", timeout_s=10)
        server.should_exit = True
        thread.join(timeout=10)
        stopping = receiver.wait_for(b"STOPPING=1", timeout_s=5)
        time.sleep(0.2)  # four ping intervals: none may come after STOPPING=1

    messages = receiver.messages()
    assert stopping.startswith(b"STOPPING=1\nSTATUS=stopping")
    assert messages[-1] == stopping
    assert set(messages[1:-1]) <= {b"WATCHDOG=1"}


def test_watchdog_not_requested_means_no_pings(receiver: NotifyCollector) -> None:
    server = make_server(free_port(), {"NOTIFY_SOCKET": receiver.notify_socket})

    with running(server):
        receiver.wait_for(b"READY=1", timeout_s=10)
        time.sleep(0.2)
        assert len(receiver.messages()) == 1


def test_failed_start_up_never_claims_ready(receiver: NotifyCollector) -> None:
    server = make_server(
        free_port(), {"NOTIFY_SOCKET": receiver.notify_socket}, asgi=failing_lifespan_app
    )

    with running(server) as thread:
        thread.join(timeout=10)

    assert not server.started
    assert receiver.messages() == []


def test_without_notify_socket_it_serves_like_uvicorn() -> None:
    port = free_port()
    server = make_server(port, {"WATCHDOG_USEC": "100000"})

    with running(server):
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok"
