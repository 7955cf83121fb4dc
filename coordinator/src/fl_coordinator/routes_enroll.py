"""REST routes of device enrollment: the CA certificate, one-time tokens, enroll."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import PlainTextResponse

from fl_coordinator.api_auth import AUTH_ERRORS, authorize
from fl_coordinator.api_deps import RegistryDep, SettingsDep
from fl_coordinator.credentials import CredentialStore, EnrollmentRefused, IssuedToken
from fl_coordinator.errors import SuperLinkUnreachable
from fl_coordinator.flower_control import NodeKeyRefused, node_key_pem
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.enrollment_wire import (
    EnrollmentGranted,
    EnrollmentRequest,
    EnrollmentTokenRequest,
    IssuedSecret,
)
from fl_shared.wire import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["enrollment"])
log = structlog.get_logger(__name__)

REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "the enrollment token is unknown, used or expired"},
    409: {"model": ErrorBody, "description": "this coordinator runs without TLS (development)"},
    503: {"model": ErrorBody, "description": "the SuperLink is not reachable: try again"},
}


def issued_secret(issued: IssuedToken) -> IssuedSecret:
    """The answer to creating a token: the only time its secret is shown."""
    return IssuedSecret(
        token_id=issued.token_id,
        kind=issued.kind,
        name=issued.name,
        token=issued.secret,
        expires_at=issued.expires_at,
    )


def _store(request: Request) -> CredentialStore:
    store: CredentialStore = request.app.state.credentials
    return store


@router.get(
    "/ca.crt",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"application/x-pem-file": {"schema": {"type": "string"}}}},
        404: {
            "description": "this coordinator runs without TLS",
            "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
        },
    },
)
def ca_certificate(settings: SettingsDep) -> PlainTextResponse:
    """The coordinator's CA certificate (PEM); check its fingerprint before trusting it."""
    path = settings.state_dir / "pki" / "ca.crt"
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "this coordinator has no CA: it runs in the --insecure-dev mode",
        )
    return PlainTextResponse(path.read_text(), media_type="application/x-pem-file")


@router.post(
    "/enroll-tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedSecret,
    responses=AUTH_ERRORS,
    dependencies=[Depends(authorize)],
)
def create_enrollment_token(body: EnrollmentTokenRequest, request: Request) -> IssuedSecret:
    """A one-time token for enrolling one device (admin); the secret is shown this once."""
    issued = _store(request).create(
        "enroll",
        body.name or "enrollment",
        expires_in=timedelta(seconds=body.expires_in_s),
        labels=body.labels,
    )
    log.info("enrollment_token_created", token_id=issued.token_id, expires_at=issued.expires_at)
    return issued_secret(issued)


@router.post(
    "/enroll",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrollmentGranted,
    responses=REFUSED,
)
def enroll(
    body: EnrollmentRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> EnrollmentGranted:
    """Trade a one-time token and the device's SuperNode public key for its identity."""
    ca_path = settings.pki_dir / "ca.crt"
    if settings.insecure or not ca_path.is_file():
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "enrollment needs TLS and SuperNode authentication: this coordinator runs with "
            "--insecure-dev; run `fl-coordinator init`, then serve without that flag",
        )
    try:
        node_key_pem(body.public_key)  # a bad key must not burn the token
    except NodeKeyRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    store = _store(request)
    try:
        grant = store.consume_enrollment(body.enrollment_token)
    except EnrollmentRefused as exc:
        log.warning("enrollment_refused", reason=str(exc))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    registration = body.registration.model_copy(
        update={"device_id": None, "labels": {**body.registration.labels, **grant.labels}}
    )
    control = request.app.state.run_service.control
    try:
        node_id = control.register_node(body.public_key, registration.name)
    except (NodeKeyRefused, SuperLinkUnreachable) as exc:
        store.release_enrollment(grant.token_id)  # nothing was enrolled: the token stays good
        code = 422 if isinstance(exc, NodeKeyRefused) else 503
        raise HTTPException(code, str(exc)) from exc
    device = registry.register_device(registration)
    registry.set_node_identity(device.device_id, node_id, body.public_key)
    if body.capabilities is not None:
        registry.record_capabilities(device.device_id, body.capabilities)
    credential = store.issue_device_credential(device.device_id)
    ca = ca_path.read_text()
    log.info("device_enrolled", device_id=device.device_id, node_id=node_id, token=grant.token_id)
    return EnrollmentGranted(
        device_id=device.device_id,
        device_credential=credential.secret,
        ca_certificate=ca,
        node_id=node_id,
        superlink_address=_fleet_address_for(request, settings),
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )


def _fleet_address_for(request: Request, settings: CoordinatorSettings) -> str:
    """host:port of the Fleet API for the device enrolling now.

    With the gateway on every address and no fleet_address set, the name the device itself
    used to reach this API (checked against the server certificate by its TLS) reaches the
    gateway too, which serves the same certificate; "127.0.0.1" would only work on this host.
    """
    wildcard = settings.gateway_host in ("0.0.0.0", "::", "")  # noqa: S104
    host = request.url.hostname
    if settings.fleet_address or not wildcard or not host:
        return settings.advertised_fleet_address
    return f"[{host}]:{settings.fleet_port}" if ":" in host else f"{host}:{settings.fleet_port}"
