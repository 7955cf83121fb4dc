"""REST routes for devices: enroll, heartbeat, list and inspect, labels, drain and revoke."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from fl_coordinator.api_auth import CallerDep
from fl_coordinator.api_deps import RegistryDep, SettingsDep
from fl_coordinator.errors import DeviceRevoked, SuperLinkUnreachable
from fl_coordinator.heartbeat_fast_path import RETRY_AFTER_S
from fl_coordinator.heartbeat_ingest import IngestOverloaded
from fl_coordinator.registry import DeviceFilter
from fl_shared.capabilities import Capabilities
from fl_shared.wire import (
    DEVICE_ID_MAX,
    NO_NUL_PATTERN,
    WIRE_MAJOR,
    Device,
    DeviceAdminAction,
    DeviceDetail,
    DeviceLabels,
    DeviceLabelsPatch,
    DevicePage,
    DeviceRegistered,
    DeviceRegistration,
    DeviceSort,
    DeviceState,
    ErrorBody,
    Heartbeat,
    HeartbeatAck,
    HeartbeatSample,
    HistoryWindow,
    wire_major,
)

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
log = structlog.get_logger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no device with that id"}
}
OVERLOADED: dict[int | str, dict[str, Any]] = {
    503: {"description": "the registry database is behind; retry after Retry-After seconds"}
}
REVOKED: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorBody,
        "description": "the device was revoked; the detail says how to re-admit it",
    }
}
UPGRADE: dict[int | str, dict[str, Any]] = {
    426: {
        "model": ErrorBody,
        "description": "the agent speaks another major wire schema version: upgrade it",
    }
}
UNREGISTERED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "the device is not registered: register again"}
}
# A device id in a path: what the registry's column holds (PostgreSQL refuses NUL characters).
DeviceIdPath = Annotated[
    str, Path(max_length=DEVICE_ID_MAX, pattern=NO_NUL_PATTERN, description="the device's id")
]
# Pages are cut by SQL OFFSET, a signed 64-bit integer.
MAX_OFFSET = 2**63 - 1


def _check_version(schema_version: str) -> None:
    if wire_major(schema_version) != WIRE_MAJOR:
        raise HTTPException(
            status.HTTP_426_UPGRADE_REQUIRED,
            f"wire schema {schema_version} is not supported; this coordinator speaks "
            f"{WIRE_MAJOR}.x: upgrade fl-edge-agent to a release of the same major version",
        )


def _forbidden(exc: DeviceRevoked) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))


def _label_filters(raw: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key or "\x00" in item:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "label"),
                        "msg": f"{item!r} is not key=value (no NUL characters), e.g. "
                        "label=site=lab",
                        "type": "value_error",
                    }
                ]
            )
        labels[key] = value
    return labels


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DeviceRegistered,
    responses={**REVOKED, **UPGRADE},
)
def register_device(
    body: DeviceRegistration, registry: RegistryDep, settings: SettingsDep, caller: CallerDep
) -> DeviceRegistered:
    """Refresh an enrolled device's registration (its own credential); 403 once revoked.

    Only in the development mode may a device without a credential register itself.
    """
    _check_version(body.schema_version)
    if caller.principal is not None and body.device_id != caller.principal.device_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this credential belongs to device {caller.principal.device_id}, not "
            f"{body.device_id}: a device registers only itself",
        )
    try:
        device = registry.register_device(body)
    except DeviceRevoked as exc:
        log.warning("device_refused", device_id=body.device_id, reason="revoked")
        raise _forbidden(exc) from exc
    log.info("device_registered", device_id=device.device_id, name=device.name)
    return DeviceRegistered(
        device_id=device.device_id, heartbeat_interval_s=settings.heartbeat_interval_s
    )


@router.post(
    "/{device_id}/heartbeat",
    response_model=HeartbeatAck,
    responses={**REVOKED, **UNREGISTERED, **UPGRADE, **OVERLOADED},
)
async def heartbeat(
    device_id: DeviceIdPath, body: Heartbeat, registry: RegistryDep
) -> HeartbeatAck:
    """Record that a device is alive; 404 tells the agent to register again, 403 to stop.

    Answered from memory: the beat is queued and written to the registry in a batch.
    """
    _check_version(body.schema_version)
    if body.device_id != device_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"device_id in the body ({body.device_id}) differs from the path ({device_id})",
        )
    ingest = registry.heartbeats
    admission = ingest.admission(device_id)
    if admission is None:
        admission = await run_in_threadpool(ingest.lookup, device_id)
    state, detail = admission
    if state == "revoked":
        log.warning("device_refused", device_id=device_id, reason="revoked")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail)
    if state == "unknown":
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"device {device_id} is not registered: register again"
        )
    try:
        now = ingest.submit(body)
    except IngestOverloaded as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": RETRY_AFTER_S}
        ) from exc
    return HeartbeatAck(device_id=device_id, server_time=now)


@router.put(
    "/{device_id}/capabilities",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**REVOKED, **UNREGISTERED, **UPGRADE},
)
def report_capabilities(device_id: DeviceIdPath, body: Capabilities, registry: RegistryDep) -> None:
    """Store the device's measured capabilities (sent at start and whenever they change)."""
    _check_version(body.schema_version)
    try:
        known = registry.record_capabilities(device_id, body)
    except DeviceRevoked as exc:
        raise _forbidden(exc) from exc
    if not known:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"device {device_id} is not registered: register again"
        )
    log.info("device_capabilities", device_id=device_id, fingerprint=body.fingerprint())


@router.get(
    "",
    response_model=list[Device] | DevicePage,
    responses={200: {"headers": {"X-Total-Count": {"description": "devices that match"}}}},
)
def list_devices(
    registry: RegistryDep,
    response: Response,
    status_: Annotated[
        DeviceState | None,
        Query(alias="status", description="online, stale, offline, drained or revoked"),
    ] = None,
    arch: Annotated[
        str | None,
        Query(max_length=64, pattern=NO_NUL_PATTERN, description="CPU architecture, e.g. aarch64"),
    ] = None,
    has_gpu: Annotated[bool | None, Query(description="an NVIDIA GPU or a Jetson")] = None,
    label: Annotated[
        list[str],
        Query(
            description="key=value; repeat to require several",
            json_schema_extra={"items": {"type": "string", "pattern": "^[^=\\x00]+=[^\\x00]*$"}},
        ),
    ] = [],  # noqa: B006
    q: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=NO_NUL_PATTERN,
            description="a case-insensitive part of the name, hostname or device id",
        ),
    ] = None,
    sort: Annotated[
        DeviceSort,
        Query(
            description="registered (enrollment, the default), name, last_heartbeat, arch or "
            "speed (measured training samples/s; unmeasured devices last); a leading - "
            "reverses it; ties go by device id"
        ),
    ] = "registered",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    envelope: Annotated[
        bool, Query(description="answer {items, total, limit, offset, next_offset}")
    ] = False,
) -> list[Device] | DevicePage:
    """Devices that match every filter, in ``sort`` order (default: oldest enrollment first),
    one page at a time.

    The total number that match is in the ``X-Total-Count`` header (and the envelope).
    """
    flt = DeviceFilter(
        status=status_, arch=arch, has_gpu=has_gpu, labels=_label_filters(label), query=q or None
    )
    page = registry.device_page(flt, limit=limit, offset=offset, sort=sort)
    response.headers["X-Total-Count"] = str(page.total)
    if not envelope:
        return page.items
    after = offset + len(page.items)
    return DevicePage(
        items=page.items,
        total=page.total,
        limit=limit,
        offset=offset,
        next_offset=after if after < page.total else None,
    )


@router.get("/{device_id}", response_model=DeviceDetail, responses=NOT_FOUND)
def show_device(
    device_id: DeviceIdPath,
    registry: RegistryDep,
    history: Annotated[
        HistoryWindow | None, Query(description="include the heartbeat history: 1h, 24h or 7d")
    ] = None,
) -> DeviceDetail:
    """One device: capabilities, last heartbeat, the rounds it trained in, the selection
    decisions about it (newest first), and its history."""
    return registry.device_detail(device_id, history=history)


@router.get("/{device_id}/heartbeats", response_model=list[HeartbeatSample], responses=NOT_FOUND)
def device_heartbeats(
    device_id: DeviceIdPath, registry: RegistryDep, window: HistoryWindow = "1h"
) -> list[HeartbeatSample]:
    """The device's heartbeat history for a chart, oldest first (summaries beyond an hour)."""
    return registry.heartbeat_history(device_id, window)


@router.put("/{device_id}/labels", response_model=Device, responses=NOT_FOUND)
def put_labels(device_id: DeviceIdPath, body: DeviceLabels, registry: RegistryDep) -> Device:
    """Replace every label of the device."""
    return registry.set_labels(device_id, body.labels)


@router.patch("/{device_id}/labels", response_model=Device, responses=NOT_FOUND)
def patch_labels(device_id: DeviceIdPath, body: DeviceLabelsPatch, registry: RegistryDep) -> Device:
    """Set the labels given and remove those given as null; others stay."""
    return registry.patch_labels(device_id, body.labels)


@router.post("/{device_id}/drain", response_model=Device, responses=NOT_FOUND)
def drain(
    device_id: DeviceIdPath, registry: RegistryDep, body: DeviceAdminAction | None = None
) -> Device:
    """Keep the device out of new runs; it keeps heartbeating and finishes what it runs."""
    return registry.drain(device_id, (body or DeviceAdminAction()).reason)


@router.post("/{device_id}/undrain", response_model=Device, responses=NOT_FOUND)
def undrain(device_id: DeviceIdPath, registry: RegistryDep) -> Device:
    """Let the device take part in new runs again."""
    return registry.undrain(device_id)


@router.post("/{device_id}/revoke", response_model=Device, responses=NOT_FOUND)
def revoke(
    device_id: DeviceIdPath,
    registry: RegistryDep,
    request: Request,
    body: DeviceAdminAction | None = None,
) -> Device:
    """Refuse the device from now on: its credential stops working (401), its registrations
    and heartbeats get 403, and its SuperNode is unregistered from the SuperLink (it exits)."""
    device = registry.revoke(device_id, (body or DeviceAdminAction()).reason)
    request.app.state.credentials.revoke_device(device_id)
    node_id = registry.node_id_of(device_id)
    if node_id is not None:
        try:
            request.app.state.run_service.control.unregister_node(node_id)
        except SuperLinkUnreachable as exc:
            # Still revoked: its credential is dead and the node leaves at the next start.
            log.warning("node_unregister_failed", device_id=device_id, error=str(exc))
        else:
            log.info("node_unregistered", device_id=device_id, node_id=node_id)
    return device


@router.post("/{device_id}/unrevoke", response_model=Device, responses=NOT_FOUND)
def unrevoke(device_id: DeviceIdPath, registry: RegistryDep) -> Device:
    """Accept a revoked device again."""
    return registry.unrevoke(device_id)
