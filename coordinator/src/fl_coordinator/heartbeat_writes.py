"""write_beats: one batch of heartbeats into the registry, as three multi-row statements.

The heartbeat writer shares the GIL with the event loop that answers the beats. Two things
starved it when the loop was busy (bench/heartbeat_ingest.py): SQLAlchemy's per-row bind
processing, and executemany, which releases and re-takes the GIL for every row (each time
waiting for the busy loop to let go). So each statement carries up to ``_ROWS`` rows in one
``VALUES`` list (UPDATE ... FROM (VALUES ...), INSERT ... VALUES ... ON CONFLICT) and goes to the
DB-API driver directly (``exec_driver_sql``), with values already in the form the registry's
columns hold:

- SQLite: datetimes as SQLAlchemy stores them (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), JSON as text;
- PostgreSQL: datetimes as they are (psycopg adapts them), JSON text cast to ``json``.

``tests/coordinator/test_heartbeat_ingest.py`` reads the rows back through the ORM on both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fl_coordinator.registry_schema import DeviceRow

if TYPE_CHECKING:
    from fl_coordinator.heartbeat_ingest import PendingBeat

# SQLite allows 32766 bound parameters per statement; stay well below for IN lists.
_IN_CHUNK = 900

# Rows per statement: SQLite takes at most 32766 parameters in one (7 per history row here).
# The statements below are built from placeholders only (S608): every value is a bound parameter.
_ROWS = 1000


def _values(rows: int, row: str) -> str:
    return ", ".join([row] * rows)


def _update_devices(sqlite: bool, rows: int) -> str:
    row = "(?, ?, ?, ?)" if sqlite else "(%s, CAST(%s AS timestamptz), %s, CAST(%s AS integer))"
    return (
        "UPDATE devices SET last_heartbeat_at = v.at, supernode_state = v.state, "  # noqa: S608
        f"supernode_restarts = v.restarts FROM (VALUES {_values(rows, row)}) "
        "AS v(id, at, state, restarts) WHERE devices.device_id = v.id"
        if not sqlite
        # SQLite names VALUES columns column1, column2, ...
        else "UPDATE devices SET last_heartbeat_at = v.column2, supernode_state = v.column3, "  # noqa: S608
        f"supernode_restarts = v.column4 FROM (VALUES {_values(rows, row)}) AS v "
        "WHERE devices.device_id = v.column1"
    )


def _upsert_status(sqlite: bool, rows: int) -> str:
    row = "(?, ?, ?)" if sqlite else "(%s, CAST(%s AS json), %s)"
    return (
        "INSERT INTO device_status (device_id, heartbeat, history_compacted_at) "  # noqa: S608
        f"VALUES {_values(rows, row)} "
        "ON CONFLICT (device_id) DO UPDATE SET heartbeat = excluded.heartbeat"
    )


def _insert_history(sqlite: bool, rows: int) -> str:
    p = "?" if sqlite else "%s"
    row = f"({p}, {p}, 0, 1, {p}, {p}, {p}, {p}, {p})"
    return (
        "INSERT INTO device_heartbeats (device_id, at, resolution_s, samples, cpu_percent, "  # noqa: S608
        f"memory_percent, max_temp_c, supernode_state, activity) VALUES {_values(rows, row)}"
    )


def _execute(
    session: Session, sql: Callable[[bool, int], str], sqlite: bool, rows: list[tuple[Any, ...]]
) -> None:
    conn = session.connection()
    for start in range(0, len(rows), _ROWS):
        chunk = rows[start : start + _ROWS]
        params = tuple(value for row in chunk for value in row)
        conn.exec_driver_sql(sql(sqlite, len(chunk)), params)


def _sqlite_time(at: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (it drops the zone: UTC by convention)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _live_devices(session: Session, ids: list[str]) -> set[str]:
    live: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        live.update(
            session.scalars(
                select(DeviceRow.device_id).where(
                    DeviceRow.device_id.in_(chunk), DeviceRow.revoked_at.is_(None)
                )
            )
        )
    return live


def write_beats(session: Session, batch: Sequence[PendingBeat]) -> list[str]:
    """Store a batch of beats in ``session``; returns the ids of devices that took them.

    Beats of devices that are gone or were revoked since they were admitted are dropped. Per
    device: its row and last status from its latest beat, and a history point for every beat.
    """
    live = _live_devices(session, sorted({p.beat.device_id for p in batch}))
    sqlite = session.get_bind().dialect.name == "sqlite"
    time: Any = _sqlite_time if sqlite else (lambda at: at)
    latest: dict[str, tuple[PendingBeat, Any]] = {}
    history: list[tuple[Any, ...]] = []
    for pending in batch:
        beat = pending.beat
        if beat.device_id not in live:
            continue
        at = time(pending.at)
        latest[beat.device_id] = (pending, at)
        history.append(
            (
                beat.device_id,
                at,
                beat.cpu_percent,
                beat.memory_percent,
                beat.max_temp_c,
                beat.supernode_state,
                beat.activity,
            )
        )
    if not latest:
        return []
    order = sorted(latest)  # rows are locked in one order: no deadlock with another writer
    devices = []
    statuses = []
    for device_id in order:
        pending, at = latest[device_id]
        beat = pending.beat
        devices.append((device_id, at, beat.supernode_state, beat.supernode_restarts))
        statuses.append((device_id, beat.model_dump_json(), at))
    _execute(session, _update_devices, sqlite, devices)
    _execute(session, _upsert_status, sqlite, statuses)
    _execute(session, _insert_history, sqlite, history)
    return order
