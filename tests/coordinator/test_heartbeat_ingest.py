"""Batched heartbeat ingest: the queue, its writer, the fast path and the route behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

from fl_coordinator.api_app import create_app
from fl_coordinator.heartbeat_ingest import (
    Admission,
    HeartbeatIngest,
    IngestOverloaded,
    PendingBeat,
)
from fl_coordinator.registry import Registry
from fl_coordinator.registry_schema import HeartbeatRow
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import DeviceRegistration, Heartbeat

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Store:
    """What a fake ``write`` received, and whether it should fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail = False
        self.states: dict[str, tuple[Admission, str]] = {}

    def write(self, batch: Sequence[PendingBeat]) -> None:
        if self.fail:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        self.batches.append([p.beat.device_id for p in batch])

    def lookup(self, device_id: str) -> tuple[Admission, str]:
        return self.states.get(device_id, ("unknown", ""))


def _ingest(store: Store, **kwargs: Any) -> HeartbeatIngest:
    return HeartbeatIngest(
        write=store.write,
        lookup=store.lookup,
        load_all=lambda: dict(store.states),
        clock=lambda: T0,
        writer_thread=False,  # the tests flush by hand
        **kwargs,
    )


def test_flush_writes_in_arrival_order_in_batches_of_max_batch() -> None:
    store = Store()
    ingest = _ingest(store)
    for name in "abcde":
        assert ingest.submit(Heartbeat(device_id=name)) == T0
    assert ingest.pending == 5
    ingest.max_batch = 2
    assert ingest.flush() == 5
    assert store.batches == [["a", "b"], ["c", "d"], ["e"]]
    assert ingest.pending == 0 and ingest.written == 5
    ingest.close()


def test_a_failed_write_keeps_the_beats_in_order_for_the_next_flush() -> None:
    store = Store()
    ingest = _ingest(store)
    ingest.submit(Heartbeat(device_id="a"))
    store.fail = True
    with pytest.raises(OperationalError):
        ingest.flush()
    ingest.submit(Heartbeat(device_id="b"))
    assert ingest.pending == 2
    store.fail = False
    ingest.flush()
    assert store.batches == [["a", "b"]]
    ingest.close()


def test_a_beat_the_database_refuses_is_dropped_and_the_rest_written() -> None:
    store = Store()
    original = store.write

    def write(batch: Sequence[PendingBeat]) -> None:
        if any(p.beat.device_id == "poison" for p in batch):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        original(batch)

    ingest = _ingest(store)
    ingest._write = write  # type: ignore[method-assign]
    for name in ("a", "poison", "b"):
        ingest.submit(Heartbeat(device_id=name))
    assert ingest.flush() == 3
    assert store.batches == [["a"], ["b"]]
    assert (ingest.written, ingest.dropped, ingest.pending) == (2, 1, 0)
    ingest.close()


def test_a_full_queue_refuses_new_beats_and_says_so() -> None:
    store = Store()
    ingest = _ingest(store, max_pending=2)
    ingest.submit(Heartbeat(device_id="a"))
    ingest.submit(Heartbeat(device_id="b"))
    with pytest.raises(IngestOverloaded, match="2 heartbeats behind: retry"):
        ingest.submit(Heartbeat(device_id="c"))
    assert ingest.pending == 2
    ingest.close()


def test_admission_is_unknown_until_looked_up_and_follows_remember() -> None:
    store = Store()
    store.states["a"] = ("active", "")
    ingest = _ingest(store)
    assert ingest.lookup("a") == ("active", "")
    assert ingest.admission("a") == ("active", "")
    assert ingest.lookup("ghost") == ("unknown", "")
    assert ingest.admission("ghost") is None
    ingest.remember("a", "revoked", "revoked by admin")
    assert ingest.admission("a") == ("revoked", "revoked by admin")
    ingest.close()


def test_a_reload_does_not_undo_a_change_made_while_it_read() -> None:
    store = Store()
    store.states = {"a": ("active", ""), "b": ("active", "")}
    ingest = _ingest(store)

    def load_all() -> dict[str, tuple[Admission, str]]:
        snapshot = dict(store.states)  # read before the revoke below committed
        ingest.remember("a", "revoked", "gone")
        return snapshot

    ingest._load_all = load_all  # type: ignore[method-assign]
    ingest._reload()
    assert ingest.admission("a") == ("revoked", "gone")
    assert ingest.admission("b") == ("active", "")
    ingest.close()


def test_the_writer_thread_flushes_by_itself_and_close_writes_the_rest() -> None:
    store = Store()
    store.states["a"] = ("active", "")
    ingest = HeartbeatIngest(
        write=store.write,
        lookup=store.lookup,
        load_all=lambda: dict(store.states),
        clock=lambda: T0,
        flush_interval_s=0.05,
    )
    written = threading.Event()
    original = store.write

    def write(batch: Sequence[PendingBeat]) -> None:
        original(batch)
        written.set()

    ingest._write = write  # type: ignore[method-assign]
    assert ingest.admission("a") is None or ingest.admission("a") == ("active", "")
    ingest.submit(Heartbeat(device_id="a"))
    assert written.wait(10), "the writer thread did not flush within 10 s"
    ingest.submit(Heartbeat(device_id="a"))
    ingest.close()
    assert sum(len(b) for b in store.batches) == 2 and ingest.pending == 0


# -- on a real registry (SQLite and PostgreSQL) ---------------------------------------------------


def _history_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(HeartbeatRow)).scalar_one())
    finally:
        engine.dispose()


def test_queued_beats_are_visible_to_the_next_read_and_revoked_ones_are_dropped(
    database_url: str, fake_clock: Any
) -> None:
    registry = Registry(database_url, clock=fake_clock)
    registry.migrate()
    try:
        ids = [
            registry.register_device(DeviceRegistration(name=f"d{i}")).device_id for i in range(3)
        ]
        ingest = registry.heartbeats
        for n, device_id in enumerate(ids[:2] * 2):
            assert ingest.lookup(device_id)[0] == "active"
            ingest.submit(Heartbeat(device_id=device_id, cpu_percent=float(n)))
        device = registry.get_device(ids[0])  # a read waits for what is queued or in flight
        assert ingest.pending == 0
        assert device.last_status is not None and device.last_status.cpu_percent == 2.0
        assert device.supernode_state == "running"
        assert registry.get_device(ids[1]).last_status.cpu_percent == 3.0  # type: ignore[union-attr]
        assert len(registry.heartbeat_history(ids[0])) == 2
        # A beat admitted before its device was revoked is not stored when its batch is written.
        registry.revoke(ids[2], reason="stolen")
        assert ingest.admission(ids[2]) == ("revoked", ingest.lookup(ids[2])[1])
        registry._write_beats([PendingBeat(Heartbeat(device_id=ids[2]), fake_clock())])
        assert registry.get_device(ids[2]).last_status is None
        assert _history_rows(database_url) == 4
    finally:
        registry.close()


# -- over HTTP: the fast path and the route behind it --------------------------------------------


@pytest.fixture
def api(tmp_path: Path, fake_clock: Any) -> Iterator[tuple[TestClient, Registry]]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    registry = Registry(settings.resolved_database_url, clock=fake_clock)
    registry.migrate()
    service = RunService(registry, None, settings)  # type: ignore[arg-type]  # no runs here
    try:
        with TestClient(create_app(registry, service, settings)) as client:
            yield client, registry
    finally:
        registry.close()


def _enroll(client: TestClient, name: str) -> str:
    answer = client.post("/api/v1/devices", json={"name": name})
    assert answer.status_code == 201
    device_id: str = answer.json()["device_id"]
    return device_id


def test_fast_path_and_route_answer_alike(api: tuple[TestClient, Registry]) -> None:
    client, registry = api
    device_id = _enroll(client, "edge")
    url = f"/api/v1/devices/{device_id}/heartbeat"
    # First beat: not known to the fast path yet, so the route answers (and looks it up).
    first = client.post(url, json={"device_id": device_id, "cpu_percent": 5.0})
    assert registry.heartbeats.admission(device_id) == ("active", "")
    second = client.post(url, json={"device_id": device_id, "cpu_percent": 6.0})
    assert first.status_code == second.status_code == 200
    assert first.json().keys() == second.json().keys() == {"device_id", "server_time"}
    assert second.headers["content-type"] == "application/json"
    shown = client.get(f"/api/v1/devices/{device_id}").json()
    assert shown["last_status"]["cpu_percent"] == 6.0


def test_bad_beats_go_to_the_route_and_get_its_errors(api: tuple[TestClient, Registry]) -> None:
    client, registry = api
    device_id = _enroll(client, "edge")
    url = f"/api/v1/devices/{device_id}/heartbeat"
    client.post(url, json={"device_id": device_id})  # now admitted by the fast path
    wrong_type = client.post(url, json={"device_id": device_id, "cpu_percent": "hot"})
    assert wrong_type.status_code == 422 and "cpu_percent" in wrong_type.json()["fields"]
    other = client.post(url, json={"device_id": "someone-else"})
    assert other.status_code == 422 and "differs from the path" in other.json()["detail"]
    old = client.post(url, json={"device_id": device_id, "schema_version": "0.9"})
    assert old.status_code == 426
    ghost = client.post("/api/v1/devices/ghost/heartbeat", json={"device_id": "ghost"})
    assert ghost.status_code == 404 and "register again" in ghost.json()["detail"]
    assert len(registry.heartbeat_history(device_id)) == 1


def test_revoke_refuses_the_very_next_beat(api: tuple[TestClient, Registry]) -> None:
    client, _registry = api
    device_id = _enroll(client, "edge")
    url = f"/api/v1/devices/{device_id}/heartbeat"
    assert client.post(url, json={"device_id": device_id}).status_code == 200
    assert client.post(f"/api/v1/devices/{device_id}/revoke", json={}).status_code == 200
    refused = client.post(url, json={"device_id": device_id})
    assert refused.status_code == 403 and "unrevoke" in refused.json()["detail"]


def test_an_overloaded_queue_answers_503_with_retry_after(
    api: tuple[TestClient, Registry],
) -> None:
    client, registry = api
    device_id = _enroll(client, "edge")
    url = f"/api/v1/devices/{device_id}/heartbeat"
    registry.heartbeats.max_pending = 0
    by_route = client.post(url, json={"device_id": device_id})  # not admitted yet: the route
    assert registry.heartbeats.admission(device_id) == ("active", "")
    by_fast_path = client.post(url, json={"device_id": device_id})
    for answer in (by_route, by_fast_path):
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["error"] == "unavailable" and "retry" in answer.json()["detail"]
    assert by_route.json() == by_fast_path.json()
