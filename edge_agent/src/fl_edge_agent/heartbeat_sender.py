"""HeartbeatSender: a background beat to the coordinator, re-enrolling when it forgets us."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from fl_edge_agent.coordinator_client import CoordinatorClient, UnknownDevice
from fl_edge_agent.errors import FlAgentError
from fl_shared.wire import Heartbeat

log = structlog.get_logger(__name__)


class HeartbeatSender:
    """Sends ``make_beat()`` every ``interval_s`` until stopped."""

    def __init__(
        self,
        client: CoordinatorClient,
        make_beat: Callable[[], Heartbeat],
        on_unknown_device: Callable[[], None],
        interval_s: float,
    ) -> None:
        self._client = client
        self._make_beat = make_beat
        self._on_unknown = on_unknown_device
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self) -> None:
        """Beat now, then every interval, in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (interrupts the wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def beat_once(self) -> None:
        """Send one heartbeat; failures are logged, never raised."""
        beat = self._make_beat()
        started = time.monotonic()
        try:
            self._client.heartbeat(beat)
        except UnknownDevice:
            log.warning("heartbeat_unknown_device", device_id=beat.device_id)
            self._on_unknown()
            return
        except FlAgentError as exc:
            log.warning("heartbeat_failed", device_id=beat.device_id, error=str(exc))
            return
        self.sent += 1
        log.debug(
            "heartbeat_sent",
            device_id=beat.device_id,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _loop(self) -> None:
        self.beat_once()
        while not self._stop.wait(self.interval_s):
            self.beat_once()
