"""HeartbeatSender: a jittered background beat, backing off while the coordinator is away."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from fl_edge_agent.coordinator_client import CoordinatorClient, UnknownDevice
from fl_edge_agent.errors import CredentialRejected, FlAgentError
from fl_shared.backoff import Backoff
from fl_shared.wire import Heartbeat

log = structlog.get_logger(__name__)

JITTER = 0.1


def _noop() -> None:
    return None


def _ignore(_exc: CredentialRejected) -> None:
    return None


class HeartbeatSender:
    """Sends ``make_beat()`` every ``interval_s`` (±10 %) until stopped.

    While beats fail it retries with exponential backoff and full jitter, capped at the
    interval; the first beat that gets through again calls ``on_reconnect`` (the agent
    sends its full status then). A 401 calls ``on_credential_rejected`` (the agent stops).
    """

    def __init__(
        self,
        client: CoordinatorClient,
        make_beat: Callable[[], Heartbeat],
        on_unknown_device: Callable[[], None],
        interval_s: float,
        *,
        on_reconnect: Callable[[], None] = _noop,
        on_credential_rejected: Callable[[CredentialRejected], None] = _ignore,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._on_credential_rejected = on_credential_rejected
        self._make_beat = make_beat
        self._on_unknown = on_unknown_device
        self._on_reconnect = on_reconnect
        self.interval_s = interval_s
        self._rng = rng or random.Random()
        self._backoff = Backoff(base_s=1.0, cap_s=interval_s, rng=self._rng)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.last_contact_at: datetime | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        """Beat now, then every interval, in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (interrupts the wait)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def beat_soon(self) -> None:
        """Send the next heartbeat now instead of at the end of the interval (a state change)."""
        self._wake.set()

    def beat_once(self) -> bool:
        """Send one heartbeat; True if the coordinator took it. Failures are never raised."""
        beat = self._make_beat()
        started = time.monotonic()
        try:
            self._client.heartbeat(beat)
        except UnknownDevice:
            log.warning("heartbeat_unknown_device", device_id=beat.device_id)
            self._on_unknown()
            return False
        except CredentialRejected as exc:
            self.last_error = str(exc)
            self._on_credential_rejected(exc)
            return False
        except FlAgentError as exc:
            self.last_error = str(exc)
            log.warning("heartbeat_failed", device_id=beat.device_id, error=str(exc))
            return False
        self.sent += 1
        self.last_contact_at = datetime.now(UTC)
        self.last_error = None
        log.debug(
            "heartbeat_sent",
            device_id=beat.device_id,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return True

    def next_wait(self, last_ok: bool) -> float:
        """The wait before the next beat: the jittered interval, or a backoff step."""
        if last_ok:
            self._backoff.reset()
            return self.interval_s * self._rng.uniform(1 - JITTER, 1 + JITTER)
        return self._backoff.next_wait()

    def _loop(self) -> None:
        ok = self.beat_once()
        while True:
            self._wake.wait(self.next_wait(ok))
            self._wake.clear()
            if self._stop.is_set():
                return
            was_ok, ok = ok, self.beat_once()
            if ok and not was_ok:
                log.info("coordinator_reconnected")
                try:
                    self._on_reconnect()
                except Exception:  # the beat must go on
                    log.exception("reconnect_callback_failed")
