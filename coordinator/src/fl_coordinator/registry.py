"""Registry: devices, runs and per-round metrics in SQLite (default) or PostgreSQL."""

from __future__ import annotations

import math
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import (
    ColumnElement,
    UnaryExpression,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fl_coordinator.errors import (
    ConfigError,
    DeviceNotFound,
    DeviceRevoked,
    RegistryError,
    RunNotFound,
)
from fl_coordinator.heartbeat_ingest import Admission, HeartbeatIngest, PendingBeat
from fl_coordinator.heartbeat_writes import write_beats
from fl_coordinator.migrations import MigrationOutcome, migrate
from fl_coordinator.registry_schema import (
    DeviceLabelRow,
    DeviceRow,
    DeviceStatusRow,
    HeartbeatRow,
    RoundDeviceRow,
    RoundRow,
    RoundSelectionRow,
    RunRow,
)
from fl_shared.capabilities import Capabilities
from fl_shared.wire import (
    HISTORY_WINDOWS_S,
    TERMINAL_RUN_STATUSES,
    Device,
    DeviceDetail,
    DeviceParticipation,
    DeviceRegistration,
    DeviceSelection,
    DeviceSort,
    DeviceState,
    FleetSummary,
    Heartbeat,
    HeartbeatSample,
    RoundReport,
    Run,
    RunRequest,
    RunStatus,
)

Clock = Callable[[], datetime]
T = TypeVar("T")
log = structlog.get_logger(__name__)

# Heartbeat history policy: every beat for the last hour, one point per 5 minutes up to a day,
# one per hour up to a week, nothing older. (resolution in s, raw age it applies after)
HISTORY_TIERS: tuple[tuple[int, timedelta], ...] = (
    (300, timedelta(hours=1)),
    (3600, timedelta(hours=24)),
)
HISTORY_KEEP = timedelta(days=7)
# A device's history is compacted this long after its last compaction, by the heartbeat writer
# (at most SWEEP_BATCH devices after each batch it writes), whether the device still beats or not.
COMPACT_EVERY = timedelta(minutes=5)
SWEEP_BATCH = 50
_WRITE = "fl_registry_write"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _floor(value: datetime, seconds: int) -> datetime:
    epoch = int(value.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _sqlite_connect(dbapi_conn: Any, _record: object) -> None:
    # pysqlite's own BEGIN handling is off: _sqlite_begin emits BEGIN, IMMEDIATE for writes, so
    # two writers queue on busy_timeout instead of one failing after reading a stale snapshot.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices a listing wants; every field that is set must match.

    ``query``: a case-insensitive substring of the name, hostname or device id.
    """

    status: DeviceState | None = None
    arch: str | None = None
    has_gpu: bool | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None


# The column each listing order sorts on (a leading "-" in DeviceSort reverses it).
_SORT_COLUMNS: dict[str, Any] = {
    "registered": DeviceRow.registered_at,
    "name": DeviceRow.name,
    "last_heartbeat": DeviceRow.last_heartbeat_at,
    "arch": DeviceRow.arch,
    "speed": DeviceRow.train_samples_per_s,
}
# Devices that never measured their speed (or never beat) come last in both directions.
_NULLS_LAST = frozenset({"speed", "last_heartbeat"})
# Selection decisions a device detail shows at most.
SELECTION_HISTORY_LIMIT = 100


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _speed_of(capabilities: Capabilities) -> float | None:
    """The measured training speed a listing sorts by: finite and positive, else None."""
    speed = _finite(capabilities.speed.torch_train_samples_per_s)
    return speed if speed is not None and speed > 0 else None


def _order(sort: DeviceSort) -> list[UnaryExpression[Any]]:
    """ORDER BY terms of a listing order; ties are broken by device id (same direction)."""
    descending = sort.startswith("-")
    key = sort.removeprefix("-")
    column = _SORT_COLUMNS[key]
    term = column.desc() if descending else column.asc()
    if key in _NULLS_LAST:
        # Explicit: SQLite and PostgreSQL put NULLs at opposite ends by default. (SQLite still
        # walks the index for it; PostgreSQL does for ascending orders.)
        term = term.nulls_last()
    tie = DeviceRow.device_id.desc() if descending else DeviceRow.device_id.asc()
    return [term, tie]


@dataclass(frozen=True)
class DevicePageResult:
    """One page of devices and how many match in all."""

    items: list[Device]
    total: int


class Registry:
    """The coordinator's source of truth; every method is one transaction."""

    def __init__(
        self,
        url: str,
        *,
        stale_after_s: float | None = None,
        offline_after_s: float | None = None,
        heartbeat_timeout_s: float = 50.0,
        clock: Clock = utc_now,
    ) -> None:
        """Open (lazily) the database at ``url``; ``migrate()`` brings its schema up to date.

        ``heartbeat_timeout_s`` is the offline threshold when ``offline_after_s`` is not given.
        """
        self.url = url
        offline = offline_after_s if offline_after_s is not None else heartbeat_timeout_s
        stale = stale_after_s if stale_after_s is not None else 30.0
        self._offline_after = timedelta(seconds=offline)
        self._stale_after = timedelta(seconds=min(stale, offline))
        self._clock = clock
        try:
            self._engine: Engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(
                f"database_url {url!r} cannot be used ({exc}): use sqlite:////path/registry.db "
                "or postgresql+psycopg://user:password@host:5432/dbname"
            ) from exc
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self._engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        self.heartbeats = HeartbeatIngest(
            write=self._write_beats,
            lookup=self._admission_of,
            load_all=self._admissions,
            clock=clock,
        )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def migrate(self) -> MigrationOutcome:
        """Bring the schema to the newest revision (adopting a registry made before migrations)."""
        try:
            return migrate(self._engine.execution_options(**{_WRITE: True}))
        except SQLAlchemyError as exc:
            raise RegistryError(
                f"cannot open the registry at {self._engine.url.render_as_string()} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}): check database_url, that "
                "the database server runs and accepts these credentials"
            ) from exc

    def create_schema(self) -> None:
        """Same as migrate() (the name callers of release 0.1 use)."""
        self.migrate()

    def close(self) -> None:
        """Write the heartbeats still queued, then release every pooled connection."""
        self.heartbeats.close()
        self._engine.dispose()

    def _settle(self) -> None:
        """Write queued heartbeats before a read, so that it sees every beat already answered.

        Also when none is queued: flush() waits for a batch the writer thread is writing.
        """
        self.heartbeats.flush()

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction; retried when a concurrent insert won a race."""
        for attempt in range(3):
            try:
                with self._writes.begin() as session:
                    return work(session)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction (for modules that own tables of this database)."""
        return self._write(work)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one read-only transaction."""
        with self._reads.begin() as session:
            return work(session)

    # -- device states -----------------------------------------------------------------------

    def _liveness(self, now: datetime, last: datetime | None) -> DeviceState:
        if last is None or now - last > self._offline_after:
            return "offline"
        return "online" if now - last <= self._stale_after else "stale"

    def _state_clause(self, state: DeviceState, now: datetime) -> ColumnElement[bool]:
        # The SQL twin of _device()'s status; both must agree at the thresholds exactly.
        admin_free = and_(DeviceRow.revoked_at.is_(None), DeviceRow.drained_at.is_(None))
        stale_since = now - self._stale_after
        offline_since = now - self._offline_after
        last = DeviceRow.last_heartbeat_at
        if state == "revoked":
            return DeviceRow.revoked_at.is_not(None)
        if state == "drained":
            return and_(DeviceRow.revoked_at.is_(None), DeviceRow.drained_at.is_not(None))
        if state == "online":
            return and_(admin_free, last >= stale_since)
        if state == "stale":
            return and_(admin_free, last < stale_since, last >= offline_since)
        return and_(admin_free, or_(last.is_(None), last < offline_since))

    def _filter_clauses(self, flt: DeviceFilter, now: datetime) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if flt.status is not None:
            clauses.append(self._state_clause(flt.status, now))
        if flt.arch is not None:
            clauses.append(DeviceRow.arch == flt.arch)
        if flt.has_gpu is not None:
            clauses.append(DeviceRow.has_gpu == flt.has_gpu)
        if flt.query:
            columns = (DeviceRow.name, DeviceRow.hostname, DeviceRow.device_id)
            if self.backend == "sqlite":
                # SQLite's LIKE ignores ASCII case already (as its lower() does): without
                # lower() on every row the scan is three times faster.
                found = [c.contains(flt.query, autoescape=True) for c in columns]
            else:
                found = [c.icontains(flt.query, autoescape=True) for c in columns]
            clauses.append(or_(*found))
        for key, value in flt.labels.items():
            clauses.append(
                exists().where(
                    DeviceLabelRow.device_id == DeviceRow.device_id,
                    DeviceLabelRow.key == key,
                    DeviceLabelRow.value == value,
                )
            )
        return clauses

    # -- devices -----------------------------------------------------------------------------

    def register_device(self, reg: DeviceRegistration) -> Device:
        """Enroll a device, or refresh it when it comes back with its persisted id.

        Labels the agent sends are merged over the stored ones (its keys win); labels an
        administrator set on other keys stay. DeviceRevoked if the device was revoked.
        """
        now = self._clock()

        def work(session: Session) -> Device:
            row = self._locked(session, reg.device_id) if reg.device_id else None
            if row is None:
                row = DeviceRow(
                    device_id=reg.device_id or f"dev-{uuid.uuid4().hex[:12]}",
                    name=reg.name,
                    registered_at=now,
                    last_heartbeat_at=None,
                    supernode_state="starting",
                    supernode_restarts=0,
                    labels={},
                )
                session.add(row)
                # Now, so that a concurrent enrollment of the same id fails here and is retried.
                session.flush()
            self._refuse_revoked(row)
            row.name = reg.name
            row.hostname = reg.hostname
            row.platform = reg.platform
            row.agent_version = reg.agent_version
            if reg.labels:
                self._store_labels(session, row, {**(row.labels or {}), **reg.labels})
            row.last_heartbeat_at = now
            return self._device(row, now, session.get(DeviceStatusRow, row.device_id))

        device = self._write(work)
        self.heartbeats.remember(device.device_id, "active")
        return device

    def record_heartbeat(self, beat: Heartbeat) -> Device | None:
        """Store a heartbeat and its history point now; None when the device is unknown.

        DeviceRevoked if the device was revoked (nothing is stored then). The REST API queues
        beats instead (``self.heartbeats``); this writes through the same batch writer.
        """
        now = self._clock()
        state, detail = self.heartbeats.lookup(beat.device_id)
        if state == "unknown":
            return None
        if state == "revoked":
            raise DeviceRevoked(detail)
        self.heartbeats.flush()
        self._write_beats([PendingBeat(beat, now)])
        return self.get_device(beat.device_id)

    def _admission_of(self, device_id: str) -> tuple[Admission, str]:
        with self._reads.begin() as session:
            row = session.get(DeviceRow, device_id)
            if row is None:
                return "unknown", ""
            if row.revoked_at is not None:
                return "revoked", self._revoked_message(row)
            return "active", ""

    def _admissions(self) -> dict[str, tuple[Admission, str]]:
        active: tuple[Admission, str] = ("active", "")
        with self._reads.begin() as session:
            states = dict.fromkeys(
                session.scalars(select(DeviceRow.device_id).where(DeviceRow.revoked_at.is_(None))),
                active,
            )
            for row in session.scalars(select(DeviceRow).where(DeviceRow.revoked_at.is_not(None))):
                states[row.device_id] = ("revoked", self._revoked_message(row))
            return states

    def _write_beats(self, batch: Sequence[PendingBeat]) -> None:
        """One transaction for the batch, then compaction of the histories that are due."""
        self._write(lambda session: write_beats(session, batch))
        self._sweep_quietly(self._clock())

    def set_node_identity(self, device_id: str, node_id: int, public_key: str) -> None:
        """Remember the device's Flower node id and SuperNode public key (from enrollment)."""

        def work(session: Session) -> None:
            row = self._device_row(session, device_id, lock=True)
            row.node_id = str(node_id)
            row.public_key = public_key

        self._write(work)

    def node_id_of(self, device_id: str) -> int | None:
        """The device's Flower node id, if it enrolled with a SuperNode key."""
        with self._reads.begin() as session:
            node_id = self._device_row(session, device_id).node_id
            return int(node_id) if node_id else None

    def record_capabilities(self, device_id: str, capabilities: Capabilities) -> bool:
        """Store what a device measured about itself; False when the device is unknown."""
        now = self._clock()

        def work(session: Session) -> bool:
            row = self._locked(session, device_id)
            if row is None:
                return False
            self._refuse_revoked(row)
            status = self._status_row(session, device_id)
            status.capabilities = capabilities.model_dump(mode="json")
            status.capabilities_at = now
            row.arch = capabilities.identity.arch.replace("\x00", "")[:64]  # a column: no NUL
            row.has_gpu = bool(capabilities.nvidia_gpus) or capabilities.jetson is not None
            row.train_samples_per_s = _speed_of(capabilities)
            return True

        return self._write(work)

    def list_devices(self, flt: DeviceFilter | None = None) -> list[Device]:
        """Every device that matches ``flt``, oldest enrollment first."""
        return self.device_page(flt or DeviceFilter(), limit=None).items

    def device_page(
        self,
        flt: DeviceFilter,
        *,
        limit: int | None = 100,
        offset: int = 0,
        sort: DeviceSort = "registered",
    ) -> DevicePageResult:
        """One page of the devices that match, in ``sort`` order (default: oldest enrollment
        first), and their count."""
        self._settle()
        now = self._clock()
        clauses = self._filter_clauses(flt, now)
        with self._reads.begin() as session:
            total = session.scalar(select(func.count()).select_from(DeviceRow).where(*clauses))
            # The page's ids first, from the sort's index alone; then only those devices' rows
            # and status rows are read (a deep offset skips index entries, not joined rows).
            page = (
                select(DeviceRow.device_id)
                .where(*clauses)
                .order_by(*_order(sort))
                .offset(offset)
                .limit(limit)
                .subquery()
            )
            query = (
                select(DeviceRow, DeviceStatusRow)
                .join(page, page.c.device_id == DeviceRow.device_id)
                .outerjoin(DeviceStatusRow, DeviceStatusRow.device_id == DeviceRow.device_id)
                .order_by(*_order(sort))
            )
            items = [self._device(row, now, status) for row, status in session.execute(query)]
            return DevicePageResult(items=items, total=total or 0)

    def fleet_summary(self) -> FleetSummary:
        """How many devices are in each state now: one grouped query over the devices, with
        the very clauses of the ``status`` filter (revoked beats drained beats heartbeat age)."""
        self._settle()
        now = self._clock()
        states: tuple[DeviceState, ...] = ("revoked", "drained", "online", "stale")
        state = case(*((self._state_clause(s, now), s) for s in states), else_="offline").label(
            "state"
        )
        with self._reads.begin() as session:
            grouped = session.execute(select(state, func.count()).group_by(state))
            counts: dict[str, int] = {name: number for name, number in grouped}
        by_state = {s: int(counts.get(s, 0)) for s in (*states, "offline")}
        return FleetSummary(
            **by_state,
            total=sum(by_state.values()),
            stale_after_s=self._stale_after.total_seconds(),
            offline_after_s=self._offline_after.total_seconds(),
            server_time=now,
        )

    def get_device(self, device_id: str) -> Device:
        """One device; DeviceNotFound if there is none."""
        self._settle()
        now = self._clock()
        with self._reads.begin() as session:
            row = self._device_row(session, device_id)
            return self._device(row, now, session.get(DeviceStatusRow, device_id))

    def device_detail(
        self, device_id: str, *, history: str | None = None, participation_limit: int = 100
    ) -> DeviceDetail:
        """A device with its rounds and the selection decisions about it (newest first), and,
        for a window, its heartbeat history."""
        self._settle()
        now = self._clock()
        with self._reads.begin() as session:
            row = self._device_row(session, device_id)
            device = self._device(row, now, session.get(DeviceStatusRow, device_id))
            samples = self._history(session, device_id, now, history) if history else []
            rounds = session.scalars(
                select(RoundDeviceRow)
                .where(RoundDeviceRow.device_id == device_id)
                .order_by(RoundDeviceRow.run_id.desc(), RoundDeviceRow.round.desc())
                .limit(participation_limit)
            )
            participation = [
                DeviceParticipation(
                    run_id=r.run_id,
                    round=r.round,
                    num_examples=r.num_examples,
                    train_seconds=r.train_seconds,
                    train_loss=r.train_loss,
                )
                for r in rounds
            ]
            decisions = session.scalars(
                select(RoundSelectionRow)
                .where(RoundSelectionRow.device_id == device_id)
                .order_by(RoundSelectionRow.run_id.desc(), RoundSelectionRow.round.desc())
                .limit(SELECTION_HISTORY_LIMIT)
            )
            selection = [
                DeviceSelection(
                    run_id=d.run_id,
                    round=d.round,
                    selected=d.selected,
                    reason=d.reason,
                    score=d.score,
                    predicted_s=d.predicted_s,
                )
                for d in decisions
            ]
        return DeviceDetail(
            **device.model_dump(),
            heartbeat_history=samples,
            participation=participation,
            selection_history=selection,
        )

    def heartbeat_history(self, device_id: str, window: str = "1h") -> list[HeartbeatSample]:
        """The device's history points within ``window`` (1h, 24h or 7d), oldest first."""
        self._settle()
        now = self._clock()
        with self._reads.begin() as session:
            self._device_row(session, device_id)
            return self._history(session, device_id, now, window)

    def eligible_device_ids(self, labels: Mapping[str, str] | None = None) -> list[str]:
        """Devices a new run may use: heartbeat not older than the offline threshold, neither
        drained nor revoked, carrying every label in ``labels``."""
        self._settle()
        now = self._clock()
        clauses = self._filter_clauses(DeviceFilter(labels=labels or {}), now)
        clauses += [
            DeviceRow.revoked_at.is_(None),
            DeviceRow.drained_at.is_(None),
            DeviceRow.last_heartbeat_at >= now - self._offline_after,
        ]
        with self._reads.begin() as session:
            query = (
                select(DeviceRow.device_id)
                .where(*clauses)
                .order_by(DeviceRow.registered_at, DeviceRow.device_id)
            )
            return list(session.scalars(query))

    def eligible_devices(self, labels: Mapping[str, str] | None = None) -> list[Device]:
        """The devices of ``eligible_device_ids``, with their last heartbeat and capabilities."""
        ids = self.eligible_device_ids(labels)
        now = self._clock()
        devices: list[Device] = []
        with self._reads.begin() as session:
            for begin in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[begin : begin + 500]
                rows = session.scalars(select(DeviceRow).where(DeviceRow.device_id.in_(chunk)))
                statuses = {
                    s.device_id: s
                    for s in session.scalars(
                        select(DeviceStatusRow).where(DeviceStatusRow.device_id.in_(chunk))
                    )
                }
                by_id = {row.device_id: row for row in rows}
                devices.extend(
                    self._device(by_id[i], now, statuses.get(i)) for i in chunk if i in by_id
                )
        return devices

    def set_labels(self, device_id: str, labels: Mapping[str, str]) -> Device:
        """Replace every label of a device."""
        return self._change_labels(device_id, lambda _old: dict(labels))

    def patch_labels(self, device_id: str, changes: Mapping[str, str | None]) -> Device:
        """Set the labels given; remove those whose value is None (a JSON merge patch)."""

        def merged(old: dict[str, str]) -> dict[str, str]:
            new = {**old, **{k: v for k, v in changes.items() if v is not None}}
            return {k: v for k, v in new.items() if changes.get(k, "") is not None}

        return self._change_labels(device_id, merged)

    def drain(self, device_id: str, reason: str = "") -> Device:
        """Keep a device out of new runs; it still heartbeats. Draining twice keeps the time."""

        def change(row: DeviceRow, now: datetime) -> None:
            row.drained_at = row.drained_at or now
            if row.revoked_at is None:
                row.status_reason = reason

        return self._admin(device_id, change, "device_drained", reason=reason)

    def undrain(self, device_id: str) -> Device:
        """Let a drained device take part in new runs again."""

        def change(row: DeviceRow, _now: datetime) -> None:
            row.drained_at = None
            if row.revoked_at is None:
                row.status_reason = ""

        return self._admin(device_id, change, "device_undrained")

    def revoke(self, device_id: str, reason: str = "") -> Device:
        """Refuse the device's registrations, heartbeats and capability reports from now on."""

        def change(row: DeviceRow, now: datetime) -> None:
            row.revoked_at = row.revoked_at or now
            row.status_reason = reason

        return self._admin(device_id, change, "device_revoked", reason=reason)

    def unrevoke(self, device_id: str) -> Device:
        """Accept a revoked device again (it stays drained if it was)."""

        def change(row: DeviceRow, _now: datetime) -> None:
            row.revoked_at = None
            row.status_reason = ""

        return self._admin(device_id, change, "device_unrevoked")

    def compact_history(self, device_ids: Iterable[str] | None = None) -> int:
        """Apply the history policy now to the given devices (default: all); returns how many."""
        now = self._clock()

        def work(session: Session) -> int:
            ids = (
                list(device_ids)
                if device_ids is not None
                else list(session.scalars(select(DeviceRow.device_id)))
            )
            for device_id in sorted(ids):
                if self._locked(session, device_id) is None:
                    continue
                self._compact(session, device_id, now)
                self._status_row(session, device_id).history_compacted_at = now
            return len(ids)

        return self._write(work)

    def _sweep_quietly(self, now: datetime) -> None:
        """Compact the histories that are due (the longest-waiting SWEEP_BATCH devices)."""
        due = now - COMPACT_EVERY
        try:
            with self._reads.begin() as session:
                ids = list(
                    session.scalars(
                        select(DeviceStatusRow.device_id)
                        .where(DeviceStatusRow.history_compacted_at < due)
                        .order_by(DeviceStatusRow.history_compacted_at)
                        .limit(SWEEP_BATCH)
                    )
                )
            if ids:
                self.compact_history(ids)
        except SQLAlchemyError as exc:
            # A heartbeat must not fail because housekeeping did; the next sweep tries again.
            log.warning("heartbeat_history_sweep_failed", error=str(exc).splitlines()[0])

    def _compact(self, session: Session, device_id: str, now: datetime) -> None:
        session.execute(
            delete(HeartbeatRow).where(
                HeartbeatRow.device_id == device_id, HeartbeatRow.at < now - HISTORY_KEEP
            )
        )
        for resolution, raw_for in HISTORY_TIERS:
            # Only whole buckets: a bucket that straddles the cut-off waits for the next pass.
            cutoff = _floor(now - raw_for, resolution)
            rows = session.scalars(
                select(HeartbeatRow)
                .where(
                    HeartbeatRow.device_id == device_id,
                    HeartbeatRow.resolution_s < resolution,
                    HeartbeatRow.at < cutoff,
                )
                .order_by(HeartbeatRow.at, HeartbeatRow.id)
            ).all()
            buckets: dict[datetime, list[HeartbeatRow]] = defaultdict(list)
            for row in rows:
                at = _aware(row.at)
                assert at is not None
                buckets[_floor(at, resolution)].append(row)
            doomed: list[int] = []
            for start, members in buckets.items():
                keep = members[0]
                _summarise(keep, members, start, resolution)
                doomed += [m.id for m in members[1:]]
            if doomed:
                session.execute(delete(HeartbeatRow).where(HeartbeatRow.id.in_(doomed)))

    @staticmethod
    def _history(
        session: Session, device_id: str, now: datetime, window: str
    ) -> list[HeartbeatSample]:
        since = now - timedelta(seconds=HISTORY_WINDOWS_S[window])
        rows = session.scalars(
            select(HeartbeatRow)
            .where(HeartbeatRow.device_id == device_id, HeartbeatRow.at >= since)
            .order_by(HeartbeatRow.at, HeartbeatRow.id)
        )
        return [
            HeartbeatSample(
                at=_aware(r.at),  # type: ignore[arg-type]
                resolution_s=r.resolution_s,
                samples=r.samples,
                cpu_percent=r.cpu_percent,
                memory_percent=r.memory_percent,
                max_temp_c=r.max_temp_c,
                supernode_state=r.supernode_state,
                activity=r.activity,
            )
            for r in rows
        ]

    def _change_labels(
        self, device_id: str, change: Callable[[dict[str, str]], dict[str, str]]
    ) -> Device:
        now = self._clock()

        def work(session: Session) -> Device:
            row = self._device_row(session, device_id, lock=True)
            labels = change({str(k): str(v) for k, v in (row.labels or {}).items()})
            self._store_labels(session, row, labels)
            return self._device(row, now, session.get(DeviceStatusRow, device_id))

        device = self._write(work)
        log.info("device_labels_set", device_id=device_id, labels=device.labels)
        return device

    @staticmethod
    def _store_labels(session: Session, row: DeviceRow, labels: Mapping[str, str]) -> None:
        row.labels = dict(labels)
        session.execute(delete(DeviceLabelRow).where(DeviceLabelRow.device_id == row.device_id))
        session.add_all(
            DeviceLabelRow(device_id=row.device_id, key=k, value=v) for k, v in labels.items()
        )

    def _admin(
        self,
        device_id: str,
        change: Callable[[DeviceRow, datetime], None],
        event_name: str,
        **fields: Any,
    ) -> Device:
        now = self._clock()

        def work(session: Session) -> tuple[Device, tuple[Admission, str]]:
            row = self._device_row(session, device_id, lock=True)
            change(row, now)
            admission: tuple[Admission, str] = (
                ("revoked", self._revoked_message(row)) if row.revoked_at else ("active", "")
            )
            return self._device(row, now, session.get(DeviceStatusRow, device_id)), admission

        device, admission = self._write(work)
        self.heartbeats.remember(device_id, *admission)
        log.info(event_name, device_id=device_id, status=device.status, **fields)
        return device

    @classmethod
    def _refuse_revoked(cls, row: DeviceRow) -> None:
        if row.revoked_at is not None:
            raise DeviceRevoked(cls._revoked_message(row))

    @staticmethod
    def _revoked_message(row: DeviceRow) -> str:
        revoked = _aware(row.revoked_at)
        assert revoked is not None
        why = f" ({row.status_reason})" if row.status_reason else ""
        return (
            f"device {row.device_id} was revoked by an administrator at "
            f"{revoked.isoformat(timespec='seconds')}{why}: this coordinator refuses it; an "
            f"administrator can re-admit it with `flctl devices unrevoke {row.device_id}`"
        )

    @staticmethod
    def _locked(session: Session, device_id: str) -> DeviceRow | None:
        # Every write to a device's rows holds its row lock first (PostgreSQL; SQLite writers
        # are serialised by BEGIN IMMEDIATE): no lost label merges, no racing compactions.
        return session.get(DeviceRow, device_id, with_for_update=True)

    @classmethod
    def _device_row(cls, session: Session, device_id: str, *, lock: bool = False) -> DeviceRow:
        row = cls._locked(session, device_id) if lock else session.get(DeviceRow, device_id)
        if row is None:
            raise DeviceNotFound(
                f"no device with id {device_id!r}: `flctl devices list` shows the enrolled ones"
            )
        return row

    @staticmethod
    def _status_row(session: Session, device_id: str) -> DeviceStatusRow:
        status = session.get(DeviceStatusRow, device_id)
        if status is None:
            status = DeviceStatusRow(device_id=device_id, heartbeat=None, capabilities=None)
            session.add(status)
        return status

    def _device(
        self, row: DeviceRow, now: datetime, status: DeviceStatusRow | None = None
    ) -> Device:
        last = _aware(row.last_heartbeat_at)
        registered = _aware(row.registered_at)
        assert registered is not None
        liveness = self._liveness(now, last)
        state: DeviceState = (
            "revoked" if row.revoked_at else "drained" if row.drained_at else liveness
        )
        return Device(
            device_id=row.device_id,
            name=row.name,
            hostname=row.hostname,
            platform=row.platform,
            agent_version=row.agent_version,
            labels=dict(row.labels or {}),
            registered_at=registered,
            last_heartbeat_at=last,
            online=liveness != "offline" and row.revoked_at is None,
            supernode_state=row.supernode_state,
            last_status=(
                Heartbeat.model_validate(status.heartbeat)
                if status is not None and status.heartbeat
                else None
            ),
            capabilities=(
                Capabilities.model_validate(status.capabilities)
                if status is not None and status.capabilities
                else None
            ),
            status=state,
            status_reason=row.status_reason or "",
            drained_at=_aware(row.drained_at),
            revoked_at=_aware(row.revoked_at),
        )

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        request: RunRequest,
        *,
        attempt: int = 1,
        resumed_from_round: int = 0,
        app_source: str = "builtin",
        target_labels: Mapping[str, str] | None = None,
        selection_policy: str = "fedavg-all",
    ) -> tuple[int, str]:
        """Record a new pending run; returns its id and the token its ServerApp reports with."""
        token = secrets.token_urlsafe(32)

        def work(session: Session) -> tuple[int, str]:
            row = RunRow(
                flower_run_id=None,
                status="pending",
                detail="",
                request=request.model_dump(mode="json"),
                report_token=token,
                created_at=self._clock(),
                finished_at=None,
                attempt=attempt,
                resumed_from_round=resumed_from_round,
                stop_requested=False,
                app_source=app_source,
                target_labels=dict(target_labels or {}),
                selection_policy=selection_policy,
            )
            session.add(row)
            session.flush()
            return row.run_id, token

        return self._write(work)

    def set_flower_run_id(self, run_id: int, flower_run_id: int) -> Run:
        """Link a run to the Flower run that executes it; a pending run is now starting."""

        def work(session: Session) -> Run:
            row = self._run_row(session, run_id)
            row.flower_run_id = str(flower_run_id)
            # Its ServerApp may already have reported "running": never move it back.
            if row.status == "pending":
                row.status = "starting"
            return self._run(session, row)

        return self._write(work)

    def update_run_status(self, run_id: int, status: RunStatus, detail: str = "") -> Run:
        """Move a run to a new status; a finished run never changes again."""

        def work(session: Session) -> Run:
            row = self._run_row(session, run_id)
            if row.status not in TERMINAL_RUN_STATUSES:
                row.status = status
                if detail:
                    row.detail = detail
                if status in TERMINAL_RUN_STATUSES:
                    row.finished_at = self._clock()
            return self._run(session, row)

        return self._write(work)

    def request_run_stop(self, run_id: int) -> Run:
        """Flag that a run should stop (its ServerApp or the run service acts on it)."""

        def work(session: Session) -> Run:
            row = self._run_row(session, run_id)
            row.stop_requested = True
            return self._run(session, row)

        return self._write(work)

    def reopen_run(self, run_id: int, resumed_from_round: int, detail: str) -> Run:
        """An ended (failed/stopped) run starts again: next attempt, pending, not finished."""

        def work(session: Session) -> Run:
            row = self._run_row(session, run_id)
            row.status = "pending"
            row.detail = detail
            row.finished_at = None
            row.flower_run_id = None
            row.stop_requested = False
            row.attempt += 1
            row.resumed_from_round = resumed_from_round
            return self._run(session, row)

        return self._write(work)

    def mark_run_running(self, run_id: int) -> None:
        """A pending or starting run is now running (as the SuperLink reports it)."""
        with self._reads.begin() as session:
            if self._run_row(session, run_id).status not in ("pending", "starting"):
                return

        def work(session: Session) -> None:
            row = self._run_row(session, run_id)
            if row.status in ("pending", "starting"):
                row.status = "running"

        self._write(work)

    def report_token(self, run_id: int) -> str:
        """The secret a run's ServerApp must present when it reports."""
        with self._reads.begin() as session:
            return self._run_row(session, run_id).report_token

    def record_round(self, run_id: int, report: RoundReport) -> None:
        """Store (or replace) one round's report, who trained in it and who was selected."""

        def work(session: Session) -> None:
            row = self._run_row(session, run_id)
            if row.status in ("pending", "starting"):
                row.status = "running"
            existing = session.get(RoundRow, (run_id, report.round))
            data = report.model_dump(mode="json")
            if existing is None:
                session.add(RoundRow(run_id=run_id, round=report.round, report=data))
            else:
                existing.report = data
            session.execute(
                delete(RoundDeviceRow).where(
                    RoundDeviceRow.run_id == run_id, RoundDeviceRow.round == report.round
                )
            )
            # One row per device; a device listed twice counts once (its last entry).
            by_device = {d.device_id: d for d in report.devices}
            session.add_all(
                RoundDeviceRow(
                    run_id=run_id,
                    round=report.round,
                    device_id=d.device_id,
                    num_examples=d.num_examples,
                    train_seconds=d.train_seconds,
                    train_loss=d.train_loss,
                )
                for d in by_device.values()
            )
            session.execute(
                delete(RoundSelectionRow).where(
                    RoundSelectionRow.run_id == run_id, RoundSelectionRow.round == report.round
                )
            )
            # Likewise one decision per device (its last one).
            decisions = {d.device_id: d for d in report.selection}
            session.add_all(
                RoundSelectionRow(
                    run_id=run_id,
                    round=report.round,
                    device_id=d.device_id,
                    selected=d.selected,
                    reason=d.reason,
                    score=_finite(d.score),
                    predicted_s=_finite(d.predicted_s),
                )
                for d in decisions.values()
            )

        self._write(work)

    def get_run(self, run_id: int) -> Run:
        """One run with its rounds; RunNotFound if there is none."""
        with self._reads.begin() as session:
            return self._run(session, self._run_row(session, run_id))

    def list_runs(self) -> list[Run]:
        """Every run, newest first."""
        with self._reads.begin() as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.run_id.desc())).all()
            return [self._run(session, row) for row in rows]

    def active_runs(self) -> list[tuple[int, str | None]]:
        """(run id, Flower run id) of every run that has not finished."""
        with self._reads.begin() as session:
            rows = session.scalars(
                select(RunRow).where(RunRow.status.not_in(list(TERMINAL_RUN_STATUSES)))
            )
            return [(row.run_id, row.flower_run_id) for row in rows]

    @staticmethod
    def _run_row(session: Session, run_id: int) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id}")
        return row

    @staticmethod
    def _run(session: Session, row: RunRow) -> Run:
        round_rows = session.scalars(
            select(RoundRow).where(RoundRow.run_id == row.run_id).order_by(RoundRow.round)
        )
        rounds = [RoundReport.model_validate(r.report) for r in round_rows]
        evaluated = [r for r in rounds if r.eval_accuracy is not None]
        checkpoints = [r.checkpoint for r in rounds if r.checkpoint]
        created = _aware(row.created_at)
        assert created is not None
        return Run(
            run_id=row.run_id,
            flower_run_id=int(row.flower_run_id) if row.flower_run_id else None,
            status=row.status,  # type: ignore[arg-type]
            detail=row.detail,
            request=RunRequest.model_validate(row.request),
            created_at=created,
            finished_at=_aware(row.finished_at),
            rounds=rounds,
            final_accuracy=evaluated[-1].eval_accuracy if evaluated else None,
            checkpoint=checkpoints[-1] if checkpoints else None,
            attempt=row.attempt,
            resumed_from_round=row.resumed_from_round,
            stop_requested=row.stop_requested,
            app_source=row.app_source,
            target_labels=dict(row.target_labels or {}),
            selection_policy=row.selection_policy,
        )


def _mean(values: Sequence[tuple[float | None, int]]) -> float | None:
    known = [(v, n) for v, n in values if v is not None]
    weight = sum(n for _, n in known)
    return sum(v * n for v, n in known) / weight if weight else None


def _summarise(
    keep: HeartbeatRow, members: list[HeartbeatRow], start: datetime, resolution: int
) -> None:
    """Turn ``keep`` into the summary of ``members``: weighted means, the hottest reading,
    and the last state and activity."""
    temps = [m.max_temp_c for m in members if m.max_temp_c is not None]
    keep.cpu_percent = _mean([(m.cpu_percent, m.samples) for m in members])
    keep.memory_percent = _mean([(m.memory_percent, m.samples) for m in members])
    keep.max_temp_c = max(temps) if temps else None
    keep.supernode_state = members[-1].supernode_state
    keep.activity = members[-1].activity
    keep.samples = sum(m.samples for m in members)
    keep.at = start
    keep.resolution_s = resolution
