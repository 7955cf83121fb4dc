"""Agent: enroll, then heartbeat and supervise the SuperNode until told to stop."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from fl_edge_agent import __version__
from fl_edge_agent.agent_status import AgentState, AgentStatus, write_status
from fl_edge_agent.capability_reporter import CapabilityReporter
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.device_identity import DeviceIdentity
from fl_edge_agent.device_registration import build_registration
from fl_edge_agent.enrolled_identity import EnrolledIdentity
from fl_edge_agent.errors import CoordinatorUnreachable, CredentialRejected, FlAgentError
from fl_edge_agent.heartbeat_sender import HeartbeatSender
from fl_edge_agent.settings import AgentSettings
from fl_edge_agent.supernode_process import SuperNodeProcess
from fl_edge_agent.system_load import SystemLoad
from fl_shared.activity_file import ActivityFile
from fl_shared.backoff import Backoff
from fl_shared.ports import free_port
from fl_shared.systemd_notifier import SystemdNotifier
from fl_shared.wire import DeviceRegistration, Heartbeat

log = structlog.get_logger(__name__)


class Agent:
    """The device daemon. It never trains: the SuperNode's ClientApp does.

    With an ``enrolled`` identity (`fl-edge-agent enroll`) it is that device, and its
    SuperNode connects over TLS with the device's key; without one it is the development
    mode's self-registering, plain-text device. A 401 from the coordinator (the credential
    was revoked) stops everything: ``run()`` raises CredentialRejected, exit status 5.
    """

    def __init__(
        self,
        settings: AgentSettings,
        client: CoordinatorClient,
        stop: threading.Event,
        notifier: SystemdNotifier | None = None,
        enrolled: EnrolledIdentity | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._stop = stop
        self._enrolled = enrolled
        self._identity = DeviceIdentity(settings.state_dir)
        self._started = time.monotonic()
        self.device_id: str | None = enrolled.device_id if enrolled else self._identity.load()
        self.supernode: SuperNodeProcess | None = None
        self.heartbeats: HeartbeatSender | None = None
        self.rejected: CredentialRejected | None = None
        self._stopping = False
        self.capabilities = CapabilityReporter(
            client,
            lambda: self.device_id,
            state_dir=settings.state_dir,
            coordinator_url=settings.coordinator_url,
            interval_s=settings.probe_interval_s,
            budget_s=settings.probe_budget_s,
            on_credential_rejected=self._credential_rejected,
        )
        self._notifier = notifier or SystemdNotifier()
        self._load = SystemLoad(settings.state_dir)
        self._activity = ActivityFile(settings.state_dir / "activity.json")

    def _registration(self) -> DeviceRegistration:
        return build_registration(self._settings, self.device_id)

    def enroll(self) -> float | None:
        """Register until the coordinator answers; returns its heartbeat interval.

        None means we were asked to stop while waiting. A 4xx answer raises at once:
        retrying cannot fix it. While the coordinator is unreachable the agent counts as started
        (READY=1 with a status saying what it waits for): `systemctl restart`, and with it an
        `apt` upgrade's postinst, must not hang until the coordinator is back.
        """
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        while not self._stop.is_set():
            try:
                answer = self._client.register(self._registration())
            except CoordinatorUnreachable as exc:
                wait = backoff.next_wait()
                log.warning("enroll_retry", error=str(exc), retry_in_s=round(wait, 2))
                self._notifier.ready(f"waiting for the coordinator at {self._client.base_url}")
                self._notifier.maybe_watchdog(time.monotonic())
                self._stop.wait(wait)
                continue
            if answer.device_id != self.device_id:
                self._identity.save(answer.device_id)
            self.device_id = answer.device_id
            log.info("enrolled", device_id=self.device_id, name=self._settings.name)
            return answer.heartbeat_interval_s
        return None

    def _reenroll(self) -> None:
        try:
            self._client.register(self._registration())
            log.info("reenrolled", device_id=self.device_id)
            self.capabilities.report(force=True)
        except CredentialRejected as exc:
            self._credential_rejected(exc)
        except FlAgentError as exc:
            log.warning("reenroll_failed", error=str(exc))

    def _credential_rejected(self, exc: CredentialRejected) -> None:
        """A 401 on any call: no retry can help, so stop (run() then raises it)."""
        if self.rejected is None:
            self.rejected = exc
            log.error(
                "device_credential_rejected",
                device_id=self.device_id,
                enrolled=self._enrolled is not None,
                error=str(exc),
                fix="fl-edge-agent enroll --coordinator URL --token NEW_TOKEN --force, "
                "then restart the agent",
            )
        self._stop.set()

    def _state(self) -> AgentState:
        if self.rejected is not None:
            return "revoked" if self._enrolled is not None else "rejected"
        return "stopped" if self._stopping else "running"

    def _beat(self) -> Heartbeat:
        assert self.device_id is not None
        supernode = self.supernode
        warm = supernode.warm_runtime if supernode else None
        load = self._load.sample()
        self._write_status()
        return Heartbeat(
            device_id=self.device_id,
            supernode_state=supernode.state if supernode else "starting",
            supernode_restarts=supernode.restarts if supernode else 0,
            supernode_hangs=supernode.hangs if supernode else 0,
            clientapp_runtime=self._settings.clientapp_runtime,
            runtime_state=warm.state if warm else None,
            runtime_restarts=warm.restarts if warm else 0,
            uptime_s=round(time.monotonic() - self._started, 1),
            agent_version=__version__,
            cpu_percent=load.cpu_percent,
            memory_percent=load.memory_percent,
            max_temp_c=load.max_temp_c,
            power_mode=self._power_mode(),
            disk_free_bytes=load.disk_free_bytes,
            activity=self._activity.read(),
            last_contact_at=self.heartbeats.last_contact_at if self.heartbeats else None,
        )

    def _send_full_status(self) -> None:
        # Back after an outage: the coordinator gets the full picture at once.
        self.capabilities.report(force=True)

    def _power_mode(self) -> str | None:
        caps = self.capabilities.latest
        if caps is None or caps.jetson is None:
            return None
        jetson = caps.jetson
        return jetson.power_mode_name or (
            str(jetson.power_mode_id) if jetson.power_mode_id is not None else None
        )

    def _summary(self) -> str:
        supernode = self.supernode
        state = supernode.state if supernode else "starting"
        restarts = f", {supernode.restarts} restarts" if supernode and supernode.restarts else ""
        warm = supernode.warm_runtime if supernode else None
        if warm is not None and warm.state != "running":
            restarts += f"; ClientApp runtime {warm.state}"
        return f"device {self.device_id}: SuperNode {state}{restarts}; {self._activity.read()}"

    def _state_key(self) -> tuple[object, ...]:
        """What a heartbeat should report as soon as it changes (not activity: every round)."""
        supernode = self.supernode
        if supernode is None:
            return ()
        warm = supernode.warm_runtime
        return (
            supernode.state,
            supernode.restarts,
            supernode.hangs,
            warm.state if warm else None,
            warm.restarts if warm else 0,
        )

    def _write_status(self) -> None:
        supernode, beats = self.supernode, self.heartbeats
        warm = supernode.warm_runtime if supernode else None
        last_error = beats.last_error if beats else None
        write_status(
            self._settings.state_dir,
            AgentStatus(
                pid=os.getpid(),
                state=self._state(),
                device_id=self.device_id,
                name=self._settings.name,
                coordinator_url=self._settings.coordinator_url,
                registered=self.device_id is not None and self.rejected is None,
                supernode_state=supernode.state if supernode else "starting",
                supernode_restarts=supernode.restarts if supernode else 0,
                supernode_pid=supernode.pid if supernode else None,
                clientapp_runtime=self._settings.clientapp_runtime,
                runtime_state=warm.state if warm else None,
                runtime_pid=warm.pid if warm else None,
                activity=self._activity.read(),
                last_heartbeat_ack_at=beats.last_contact_at if beats else None,
                last_error=str(self.rejected) if self.rejected else last_error,
                updated_at=datetime.now(UTC),
            ),
        )

    def node_config(self) -> dict[str, Any]:
        """Device facts for the ClientApp, carried in the SuperNode's node config."""
        assert self.device_id is not None
        config: dict[str, Any] = {
            "device-id": self.device_id,
            "data-dir": self._settings.data_dir,
            "partition-id": self._settings.partition_id,
            "num-partitions": self._settings.num_partitions,
            "torch-threads": self._settings.torch_threads,
            "activity-file": str(self._activity.path),
        }
        if self._settings.test_train_delay_s > 0:  # the test-only straggler knob
            config["test-train-delay-s"] = float(self._settings.test_train_delay_s)
        return config

    def run(self) -> None:
        """Enroll, start the SuperNode and heartbeats, supervise until stop is set.

        Raises CredentialRejected, after stopping everything and writing the state
        ``revoked`` into the status file, when the coordinator answered 401.
        """
        try:
            self._supervise()
        except CredentialRejected as exc:  # at start-up, from the registration
            self._credential_rejected(exc)
        if self.rejected is not None:
            self._write_status()
            raise CredentialRejected(str(self.rejected))

    def _supernode(self) -> SuperNodeProcess:
        enrolled = self._enrolled
        return SuperNodeProcess(
            superlink=self._settings.superlink,
            port=self._settings.supernode_port,
            state_dir=self._settings.state_dir,
            node_config=self.node_config(),
            # Enrolled: TLS with the coordinator's CA and the device's key, whatever
            # `insecure` says (that setting only admits an unenrolled development device).
            insecure=enrolled is None and self._settings.insecure,
            root_certificates=enrolled.files.ca if enrolled else None,
            auth_private_key=enrolled.files.private_key if enrolled else None,
            health_port=self._settings.supernode_health_port or free_port(),
            health_interval_s=self._settings.supernode_health_interval_s,
            startup_grace_s=3 * self._settings.supernode_health_interval_s,
            runtime=self._settings.clientapp_runtime,
        )

    def _supervise(self) -> None:
        interval = self.enroll()
        if interval is None:
            return
        self.supernode = self._supernode()
        self.heartbeats = heartbeats = HeartbeatSender(
            self._client,
            self._beat,
            self._reenroll,
            self._settings.heartbeat_interval_s or interval,
            on_reconnect=self._send_full_status,
            on_credential_rejected=self._credential_rejected,
        )
        try:
            self.supernode.start()
            heartbeats.start()
            if self._settings.probe_interval_s > 0:
                self.capabilities.start()
            self._notifier.ready(self._summary())
            shown, state = self._summary(), self._state_key()
            # The watchdog pings come from this loop, so a stuck loop stops them.
            while not self._stop.wait(1.0):
                self.supernode.check()
                self._notifier.maybe_watchdog(time.monotonic())
                if (summary := self._summary()) != shown:
                    self._notifier.status(summary)
                    shown = summary
                if (now := self._state_key()) != state:
                    # Written from this thread, which restarts the SuperNode: the status file
                    # never pairs a new state with the old PID. The coordinator learns at once.
                    self._write_status()
                    heartbeats.beat_soon()
                    state = now
        finally:
            self._stopping = True
            self._notifier.stopping("stopping the SuperNode")
            self.capabilities.stop()
            heartbeats.stop()
            self.supernode.stop()
            self._activity.set("idle")
            self._write_status()
            log.info("agent_stopped", device_id=self.device_id)
