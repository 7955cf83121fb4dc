"""Waiting for enrollment: the service is up and says what to run until an identity appears."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

import structlog

from fl_edge_agent.agent_status import AgentStatus, write_status
from fl_edge_agent.enrolled_identity import EnrolledIdentity, IdentityFiles
from fl_edge_agent.errors import AgentConfigError
from fl_edge_agent.settings import AgentSettings
from fl_shared.systemd_notifier import SystemdNotifier

log = structlog.get_logger("fl_edge_agent")

# How often the identity directory is looked at; enrollment is a human step, seconds are fine.
POLL_INTERVAL_S = 2.0
ENROLL_HINT = (
    "enroll this device: sudo fl-edge-agent enroll --coordinator https://HOST:PORT "
    "--token fle_... --ca-fingerprint SHA256 (docs/install.md); the service picks it up"
)


def _write_waiting_status(settings: AgentSettings) -> None:
    write_status(
        settings.state_dir,
        AgentStatus(
            pid=os.getpid(),
            state="waiting_for_enrollment",
            device_id=None,
            name=settings.name,
            coordinator_url=settings.coordinator_url,
            registered=False,
            supernode_state="not started",
            supernode_restarts=0,
            supernode_pid=None,
            clientapp_runtime=settings.clientapp_runtime,
            activity="waiting for enrollment",
            last_heartbeat_ack_at=None,
            last_error=None,
            updated_at=datetime.now(UTC),
        ),
    )


def wait_for_enrollment(
    settings: AgentSettings,
    stop: threading.Event,
    notifier: SystemdNotifier,
    *,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> EnrolledIdentity | None:
    """Block until ``enroll`` has written an identity (returned) or ``stop`` is set (None).

    The service counts as started while it waits (READY=1, a STATUS naming the command to
    run, watchdog pings), so `apt install` leaves it active instead of failed and an operator
    only has to enroll: no restart needed. An identity that cannot be read (half written, or
    damaged) is reported in the status and looked at again on the next poll.
    """
    files = IdentityFiles(settings.state_dir)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _write_waiting_status(settings)
    log.warning("waiting_for_enrollment", identity_dir=str(files.dir), fix=ENROLL_HINT)
    notifier.ready(f"waiting for enrollment: {ENROLL_HINT}")
    last_problem = ""
    # Wake at least as often as the watchdog wants a ping.
    wait_s = min(poll_interval_s, notifier.watchdog_interval_s or poll_interval_s)
    while True:
        try:
            enrolled = files.load()
        except AgentConfigError as exc:
            enrolled = None
            if str(exc) != last_problem:
                last_problem = str(exc)
                log.error("enrollment_unreadable", error=last_problem)
                notifier.status(f"waiting for enrollment: {last_problem}")
        if enrolled is not None:
            log.info("enrollment_found", device_id=enrolled.device_id)
            notifier.status("enrolled: starting")
            return enrolled
        notifier.maybe_watchdog(time.monotonic())
        if stop.wait(wait_s):
            notifier.stopping("stopped while waiting for enrollment")
            return None
