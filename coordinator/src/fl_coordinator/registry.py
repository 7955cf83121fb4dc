"""Registry: devices, runs and per-round metrics in SQLite (default) or PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fl_coordinator.errors import RunNotFound
from fl_coordinator.registry_schema import Base, DeviceRow, DeviceStatusRow, RoundRow, RunRow
from fl_shared.capabilities import Capabilities
from fl_shared.wire import (
    TERMINAL_RUN_STATUSES,
    Device,
    DeviceRegistration,
    Heartbeat,
    RoundReport,
    Run,
    RunRequest,
    RunStatus,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Registry:
    """The coordinator's source of truth; every method is one transaction."""

    def __init__(
        self, url: str, *, heartbeat_timeout_s: float = 50.0, clock: Clock = utc_now
    ) -> None:
        self.url = url
        self._heartbeat_timeout = timedelta(seconds=heartbeat_timeout_s)
        self._clock = clock
        self._engine: Engine = create_engine(url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        Base.metadata.create_all(self._engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    # -- devices -----------------------------------------------------------------------------

    def register_device(self, reg: DeviceRegistration) -> Device:
        """Enroll a device, or refresh it when it comes back with its persisted id."""
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(DeviceRow, reg.device_id) if reg.device_id else None
            if row is None:
                row = DeviceRow(
                    device_id=reg.device_id or f"dev-{uuid.uuid4().hex[:12]}",
                    registered_at=now,
                    last_heartbeat_at=None,
                    supernode_state="starting",
                    supernode_restarts=0,
                )
                session.add(row)
            row.name = reg.name
            row.hostname = reg.hostname
            row.platform = reg.platform
            row.agent_version = reg.agent_version
            row.labels = dict(reg.labels)
            row.last_heartbeat_at = now
            return self._device(row, now)

    def record_heartbeat(self, beat: Heartbeat) -> Device | None:
        """Store a heartbeat; None when the device is unknown (it must register again)."""
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(DeviceRow, beat.device_id)
            if row is None:
                return None
            row.last_heartbeat_at = now
            row.supernode_state = beat.supernode_state
            row.supernode_restarts = beat.supernode_restarts
            status = self._status_row(session, beat.device_id)
            status.heartbeat = beat.model_dump(mode="json")
            return self._device(row, now, status)

    def record_capabilities(self, device_id: str, capabilities: Capabilities) -> bool:
        """Store what a device measured about itself; False when the device is unknown."""
        with self._sessions.begin() as session:
            if session.get(DeviceRow, device_id) is None:
                return False
            status = self._status_row(session, device_id)
            status.capabilities = capabilities.model_dump(mode="json")
            status.capabilities_at = self._clock()
            return True

    def list_devices(self) -> list[Device]:
        """Every device, oldest enrollment first."""
        now = self._clock()
        with self._sessions.begin() as session:
            rows = session.execute(
                select(DeviceRow, DeviceStatusRow)
                .outerjoin(DeviceStatusRow, DeviceStatusRow.device_id == DeviceRow.device_id)
                .order_by(DeviceRow.registered_at)
            )
            return [self._device(row, now, status) for row, status in rows]

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
        return Device(
            device_id=row.device_id,
            name=row.name,
            hostname=row.hostname,
            platform=row.platform,
            agent_version=row.agent_version,
            labels=dict(row.labels or {}),
            registered_at=registered,
            last_heartbeat_at=last,
            online=last is not None and now - last <= self._heartbeat_timeout,
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
        )

    # -- runs --------------------------------------------------------------------------------

    def create_run(self, request: RunRequest) -> tuple[int, str]:
        """Record a new pending run; returns its id and the token its ServerApp reports with."""
        token = secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            row = RunRow(
                flower_run_id=None,
                status="pending",
                detail="",
                request=request.model_dump(mode="json"),
                report_token=token,
                created_at=self._clock(),
                finished_at=None,
            )
            session.add(row)
            session.flush()
            return row.run_id, token

    def set_flower_run_id(self, run_id: int, flower_run_id: int) -> Run:
        """Link a run to the Flower run that executes it; a pending run is now starting."""
        with self._sessions.begin() as session:
            row = self._run_row(session, run_id)
            row.flower_run_id = str(flower_run_id)
            # Its ServerApp may already have reported "running": never move it back.
            if row.status == "pending":
                row.status = "starting"
            return self._run(session, row)

    def update_run_status(self, run_id: int, status: RunStatus, detail: str = "") -> Run:
        """Move a run to a new status; a finished run never changes again."""
        with self._sessions.begin() as session:
            row = self._run_row(session, run_id)
            if row.status not in TERMINAL_RUN_STATUSES:
                row.status = status
                if detail:
                    row.detail = detail
                if status in TERMINAL_RUN_STATUSES:
                    row.finished_at = self._clock()
            return self._run(session, row)

    def report_token(self, run_id: int) -> str:
        """The secret a run's ServerApp must present when it reports."""
        with self._sessions.begin() as session:
            return self._run_row(session, run_id).report_token

    def record_round(self, run_id: int, report: RoundReport) -> None:
        """Store (or replace) one round's report."""
        with self._sessions.begin() as session:
            row = self._run_row(session, run_id)
            if row.status in ("pending", "starting"):
                row.status = "running"
            existing = session.get(RoundRow, (run_id, report.round))
            data = report.model_dump(mode="json")
            if existing is None:
                session.add(RoundRow(run_id=run_id, round=report.round, report=data))
            else:
                existing.report = data

    def get_run(self, run_id: int) -> Run:
        """One run with its rounds; RunNotFound if there is none."""
        with self._sessions.begin() as session:
            return self._run(session, self._run_row(session, run_id))

    def list_runs(self) -> list[Run]:
        """Every run, newest first."""
        with self._sessions.begin() as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.run_id.desc())).all()
            return [self._run(session, row) for row in rows]

    def active_runs(self) -> list[tuple[int, str | None]]:
        """(run id, Flower run id) of every run that has not finished."""
        with self._sessions.begin() as session:
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
        )
