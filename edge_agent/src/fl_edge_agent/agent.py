"""Agent: enroll, then heartbeat and supervise the SuperNode until told to stop."""

from __future__ import annotations

import platform
import socket
import threading
import time
from typing import Any

import structlog

from fl_edge_agent import __version__
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.device_identity import DeviceIdentity
from fl_edge_agent.errors import CoordinatorUnreachable, FlAgentError
from fl_edge_agent.heartbeat_sender import HeartbeatSender
from fl_edge_agent.settings import AgentSettings
from fl_edge_agent.supernode_process import SuperNodeProcess
from fl_shared.backoff import Backoff
from fl_shared.wire import DeviceRegistration, Heartbeat

log = structlog.get_logger(__name__)


class Agent:
    """The device daemon. It never trains: the SuperNode's ClientApp does."""

    def __init__(
        self, settings: AgentSettings, client: CoordinatorClient, stop: threading.Event
    ) -> None:
        self._settings = settings
        self._client = client
        self._stop = stop
        self._identity = DeviceIdentity(settings.state_dir)
        self._started = time.monotonic()
        self.device_id: str | None = self._identity.load()
        self.supernode: SuperNodeProcess | None = None

    def _registration(self) -> DeviceRegistration:
        return DeviceRegistration(
            device_id=self.device_id,
            name=self._settings.name,
            hostname=socket.gethostname(),
            platform=f"{platform.system()}-{platform.machine()}",
            agent_version=__version__,
            labels=self._settings.labels,
        )

    def enroll(self) -> float | None:
        """Register until the coordinator answers; returns its heartbeat interval.

        None means we were asked to stop while waiting. A 4xx answer raises at once:
        retrying cannot fix it.
        """
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        while not self._stop.is_set():
            try:
                answer = self._client.register(self._registration())
            except CoordinatorUnreachable as exc:
                wait = backoff.next_wait()
                log.warning("enroll_retry", error=str(exc), retry_in_s=round(wait, 2))
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
        except FlAgentError as exc:
            log.warning("reenroll_failed", error=str(exc))

    def _beat(self) -> Heartbeat:
        assert self.device_id is not None
        supernode = self.supernode
        return Heartbeat(
            device_id=self.device_id,
            supernode_state=supernode.state if supernode else "starting",
            supernode_restarts=supernode.restarts if supernode else 0,
            uptime_s=round(time.monotonic() - self._started, 1),
        )

    def node_config(self) -> dict[str, Any]:
        """Device facts for the ClientApp, carried in the SuperNode's node config."""
        assert self.device_id is not None
        return {
            "device-id": self.device_id,
            "data-dir": self._settings.data_dir,
            "partition-id": self._settings.partition_id,
            "num-partitions": self._settings.num_partitions,
            "torch-threads": self._settings.torch_threads,
        }

    def run(self) -> None:
        """Enroll, start the SuperNode and heartbeats, supervise until stop is set."""
        interval = self.enroll()
        if interval is None:
            return
        self.supernode = SuperNodeProcess(
            superlink=self._settings.superlink,
            port=self._settings.supernode_port,
            state_dir=self._settings.state_dir,
            node_config=self.node_config(),
            insecure=self._settings.insecure,
        )
        heartbeats = HeartbeatSender(
            self._client,
            self._beat,
            self._reenroll,
            self._settings.heartbeat_interval_s or interval,
        )
        try:
            self.supernode.start()
            heartbeats.start()
            while not self._stop.wait(1.0):
                self.supernode.check()
        finally:
            heartbeats.stop()
            self.supernode.stop()
            log.info("agent_stopped", device_id=self.device_id)
