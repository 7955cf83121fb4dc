"""HeartbeatIngest: heartbeats are answered from memory and written to the registry in batches.

A heartbeat is the coordinator's most frequent request (every device, every few seconds), so
its path does no database work of its own:

- **admission** comes from an in-process map of every device's state (active / revoked), read
  whole by the writer thread at start and every ``admission_ttl_s`` (so that changes made by
  another process show too), updated at once by this process's register / revoke / unrevoke;
  a device it does not know yet costs one indexed read (in a worker thread);
- the beat is **queued**; a writer thread flushes the queue every ``flush_interval_s`` in one
  transaction: one executemany UPDATE of the devices, one upsert of their last status (the
  latest beat per device only) and one bulk INSERT of the history points;
- every read of the registry flushes first, so an API client never sees a device older than the
  beats it was already answered for; compaction of the history runs in the writer thread.

A beat that was answered but not yet written is lost if the process dies (at most
``flush_interval_s`` of beats; the device's next beat restores its state). When the database
falls behind by ``max_pending`` beats, new beats get :class:`IngestOverloaded` (HTTP 503).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fl_shared.wire import Heartbeat

log = structlog.get_logger(__name__)

Admission = Literal["active", "revoked", "unknown"]
# Failures of the database rather than of the data: the batch is kept and tried again.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, PoolTimeout)


@dataclass(frozen=True)
class PendingBeat:
    """A heartbeat and the time the coordinator received it."""

    beat: Heartbeat
    at: datetime


class IngestOverloaded(Exception):
    """The registry database is too far behind to accept more heartbeats now."""


class HeartbeatIngest:
    """The heartbeat queue of one registry and the thread that writes it."""

    def __init__(
        self,
        *,
        write: Callable[[Sequence[PendingBeat]], None],
        lookup: Callable[[str], tuple[Admission, str]],
        load_all: Callable[[], dict[str, tuple[Admission, str]]],
        clock: Callable[[], datetime],
        flush_interval_s: float = 0.2,
        max_batch: int = 5000,
        max_pending: int = 10_000,
        admission_ttl_s: float = 30.0,
        writer_thread: bool = True,
    ) -> None:
        """``write`` stores one batch in one transaction; ``lookup`` reads one device's state,
        ``load_all`` every known device's. Without ``writer_thread`` nothing is written or
        reloaded until ``flush()`` / ``lookup()`` are called."""
        self._write = write
        self._lookup = lookup
        self._load_all = load_all
        self._clock = clock
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.admission_ttl_s = admission_ttl_s
        self._pending: list[PendingBeat] = []
        self._queue_lock = threading.Lock()  # guards _pending (held for an append or a swap)
        self._flush_lock = threading.Lock()  # one flush at a time, in arrival order
        self._admission: dict[str, tuple[Admission, str]] = {}
        self._changed_at: dict[str, float] = {}  # when this process last changed a device
        self._loaded_at: float | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        if not writer_thread:
            self._stopping.set()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        # Run by the writer thread with every admission reload (every admission_ttl_s).
        self.housekeeping: list[Callable[[], object]] = []
        self.written = 0
        self.dropped = 0
        self.failed_flushes = 0

    # -- admission -----------------------------------------------------------------------------

    def admission(self, device_id: str) -> tuple[Admission, str] | None:
        """The known state of a device, or None when it must be looked up (``lookup``)."""
        self._ensure_thread()
        return self._admission.get(device_id)

    def lookup(self, device_id: str) -> tuple[Admission, str]:
        """Read a device's state from the database (blocking) and remember it when it exists."""
        started = time.monotonic()
        state, detail = self._lookup(device_id)
        if self._changed_at.get(device_id, 0.0) < started:
            self._set(device_id, state, detail)
        return state, detail

    def remember(self, device_id: str, state: Admission, detail: str = "") -> None:
        """This process changed a device's state: admit or refuse its next beat accordingly."""
        self._changed_at[device_id] = time.monotonic()
        self._set(device_id, state, detail)

    def _set(self, device_id: str, state: Admission, detail: str) -> None:
        if state == "unknown":
            self._admission.pop(device_id, None)
        else:
            self._admission[device_id] = (state, detail)

    def _reload(self) -> None:
        """Read every device's state; changes this process made meanwhile win."""
        started = time.monotonic()
        states = self._load_all()
        for device_id, when in list(self._changed_at.items()):
            if when >= started:
                current = self._admission.get(device_id)
                if current is None:
                    states.pop(device_id, None)
                else:
                    states[device_id] = current
            else:
                del self._changed_at[device_id]
        self._admission = states
        self._loaded_at = started

    # -- queue ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Beats answered but not yet written."""
        return len(self._pending)

    def submit(self, beat: Heartbeat) -> datetime:
        """Queue an admitted beat and return its time of arrival.

        IngestOverloaded when the database is too far behind (nothing is queued then).
        """
        at = self._clock()
        with self._queue_lock:
            if len(self._pending) >= self.max_pending:
                raise IngestOverloaded(
                    f"the registry database is {len(self._pending)} heartbeats behind: "
                    "retry in a few seconds (the coordinator's log says why it is slow)"
                )
            self._pending.append(PendingBeat(beat, at))
            full = len(self._pending) >= self.max_batch
        self._ensure_thread()
        if full:
            self._wake.set()
        return at

    def flush(self) -> int:
        """Write every queued beat now (in batches of ``max_batch``); returns how many."""
        total = 0
        with self._flush_lock:
            while True:
                with self._queue_lock:
                    if not self._pending:
                        return total
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                try:
                    self._write(batch)
                except TRANSIENT_ERRORS:
                    self._requeue(batch)
                    raise
                except Exception:  # noqa: BLE001 (anything the database refuses in the data)
                    self._write_each(batch)
                else:
                    self.written += len(batch)
                total += len(batch)

    def _requeue(self, batch: Sequence[PendingBeat]) -> None:
        with self._queue_lock:
            self._pending[:0] = batch  # keep them, in order, for the next try

    def _write_each(self, batch: Sequence[PendingBeat]) -> None:
        """One beat per transaction, to find and drop the beat(s) the database refuses."""
        for n, pending in enumerate(batch):
            try:
                self._write([pending])
            except TRANSIENT_ERRORS:
                self._requeue(batch[n:])
                raise
            except Exception as exc:  # noqa: BLE001 (a bad beat must not block the others)
                self.dropped += 1
                log.warning(
                    "heartbeat_dropped",
                    device_id=pending.beat.device_id,
                    error=_first_line(exc),
                )
            else:
                self.written += 1

    # -- writer thread -------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None or self._stopping.is_set():
            return
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="heartbeat-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            self._wake.wait(backoff)
            self._wake.clear()
            try:
                if (
                    self._loaded_at is None
                    or time.monotonic() - self._loaded_at >= self.admission_ttl_s
                ):
                    self._reload()
                    for chore in self.housekeeping:
                        chore()
                self.flush()
                backoff = self.flush_interval_s
            except Exception as exc:  # noqa: BLE001 (the writer must outlive any failure)
                self.failed_flushes += 1
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning(
                    "heartbeat_flush_failed",
                    pending=self.pending,
                    retry_in_s=backoff,
                    error=_first_line(exc),
                )

    def close(self) -> None:
        """Stop the writer thread and write what is still queued (best effort)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except SQLAlchemyError as exc:
            log.warning(
                "heartbeat_flush_failed_at_close",
                lost=self.pending,
                error=_first_line(exc),
            )


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
