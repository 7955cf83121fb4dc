"""REST routes for devices: enroll, heartbeat, list."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, HTTPException, status

from fl_coordinator.api_deps import RegistryDep, SettingsDep
from fl_coordinator.registry import utc_now
from fl_shared.capabilities import Capabilities
from fl_shared.wire import (
    WIRE_MAJOR,
    Device,
    DeviceRegistered,
    DeviceRegistration,
    Heartbeat,
    HeartbeatAck,
    wire_major,
)

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
log = structlog.get_logger(__name__)


def _check_version(schema_version: str) -> None:
    if wire_major(schema_version) != WIRE_MAJOR:
        raise HTTPException(
            status.HTTP_426_UPGRADE_REQUIRED,
            f"wire schema {schema_version} is not supported; this coordinator speaks "
            f"{WIRE_MAJOR}.x: upgrade fl-edge-agent to a release of the same major version",
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeviceRegistered)
def register_device(
    body: DeviceRegistration, registry: RegistryDep, settings: SettingsDep
) -> DeviceRegistered:
    """Enroll a device (or refresh one that comes back with its id)."""
    _check_version(body.schema_version)
    device = registry.register_device(body)
    log.info("device_registered", device_id=device.device_id, name=device.name)
    return DeviceRegistered(
        device_id=device.device_id, heartbeat_interval_s=settings.heartbeat_interval_s
    )


@router.post("/{device_id}/heartbeat", response_model=HeartbeatAck)
def heartbeat(device_id: str, body: Heartbeat, registry: RegistryDep) -> HeartbeatAck:
    """Record that a device is alive; 404 tells the agent to register again."""
    _check_version(body.schema_version)
    if body.device_id != device_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"device_id in the body ({body.device_id}) differs from the path ({device_id})",
        )
    if registry.record_heartbeat(body) is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"device {device_id} is not registered: register again"
        )
    return HeartbeatAck(device_id=device_id, server_time=utc_now())


@router.put("/{device_id}/capabilities", status_code=status.HTTP_204_NO_CONTENT)
def report_capabilities(device_id: str, body: Capabilities, registry: RegistryDep) -> None:
    """Store the device's measured capabilities (sent at start and whenever they change)."""
    _check_version(body.schema_version)
    if not registry.record_capabilities(device_id, body):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"device {device_id} is not registered: register again"
        )
    log.info("device_capabilities", device_id=device_id, fingerprint=body.fingerprint())


@router.get("", response_model=list[Device])
def list_devices(registry: RegistryDep) -> list[Device]:
    """Every enrolled device with its liveness."""
    return registry.list_devices()
