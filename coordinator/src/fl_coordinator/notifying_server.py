"""NotifyingServer: a uvicorn server that speaks systemd's notify protocol (Type=notify)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog
import uvicorn

from fl_shared.systemd_notifier import SystemdNotifier

log = structlog.get_logger(__name__)


class NotifyingServer(uvicorn.Server):
    """Sends READY=1 once the REST API listens, WATCHDOG=1 from its event loop, STOPPING=1.

    The watchdog pings come from a task on uvicorn's own event loop, the loop that answers every
    request: if that loop blocks or wedges, the pings stop and systemd restarts the coordinator.
    Without ``$NOTIFY_SOCKET`` (not under systemd) it is a plain ``uvicorn.Server``.
    """

    def __init__(
        self, config: uvicorn.Config, notifier: SystemdNotifier, ready_status: str
    ) -> None:
        super().__init__(config)
        self._notifier = notifier
        self._ready_status = ready_status
        self._watchdog_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and listen (uvicorn), then tell systemd the API accepts connections."""
        await super().startup(sockets=sockets)
        if not self.started:
            # The application's lifespan start-up failed: uvicorn exits without serving.
            return
        self._notifier.ready(self._ready_status)
        interval = self._notifier.watchdog_interval_s
        if interval is not None:
            self._watchdog_task = asyncio.create_task(
                self._feed_watchdog(interval), name="systemd-watchdog"
            )
            log.info("systemd_watchdog_started", interval_s=interval)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Tell systemd the stop has begun, stop the pings, then let uvicorn drain and close."""
        self._notifier.stopping("stopping: draining REST API requests, then the SuperLink")
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog_task
            self._watchdog_task = None
        await super().shutdown(sockets=sockets)

    async def _feed_watchdog(self, interval_s: float) -> None:
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)
