"""build_registration: what this device tells the coordinator about itself when it registers."""

from __future__ import annotations

import platform
import socket

from fl_edge_agent import __version__
from fl_edge_agent.settings import AgentSettings
from fl_shared.wire import DeviceRegistration


def build_registration(settings: AgentSettings, device_id: str | None) -> DeviceRegistration:
    """The registration for ``POST /api/v1/devices`` and for enrollment (``device_id`` None)."""
    return DeviceRegistration(
        device_id=device_id,
        name=settings.name,
        hostname=socket.gethostname(),
        platform=f"{platform.system()}-{platform.machine()}",
        agent_version=__version__,
        labels=settings.labels,
    )
