"""REST routes of API tokens (admin): create admin and read-only tokens, list and revoke tokens."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from fl_coordinator.api_auth import AUTH_ERRORS, authorize
from fl_coordinator.credentials import CredentialStore, TokenInfo, TokenNotFound
from fl_coordinator.routes_enroll import issued_secret
from fl_shared.enrollment_wire import (
    ApiTokenRequest,
    IssuedSecret,
    TokenKind,
    TokenListing,
    TokenView,
)
from fl_shared.wire import NO_NUL_PATTERN, ErrorBody

# Every route is admin-only (api_auth.ROUTE_ACCESS names the GET one, which defaults to read).
router = APIRouter(
    prefix="/api/v1",
    tags=["tokens"],
    dependencies=[Depends(authorize)],
    responses=AUTH_ERRORS,
)
log = structlog.get_logger(__name__)

# The registry's column width for token ids (`tok-` and 12 hex digits today).
TOKEN_ID_MAX = 32
TokenIdPath = Annotated[
    str, Path(max_length=TOKEN_ID_MAX, pattern=NO_NUL_PATTERN, description="the token's id")
]
LAST_ADMIN = "this is the last active admin token: create another admin token first"
REVOKE_REFUSED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no token with this id"},
    409: {
        "model": ErrorBody,
        "description": "the last active admin token, or a device's credential (revoke the "
        "device instead)",
    },
}


def _store(request: Request) -> CredentialStore:
    store: CredentialStore = request.app.state.credentials
    return store


def _view(info: TokenInfo) -> TokenView:
    return TokenView.model_validate(asdict(info))


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=IssuedSecret)
def create_api_token(body: ApiTokenRequest, request: Request) -> IssuedSecret:
    """An admin or read-only token (admin); the secret is shown this once."""
    expires_in = timedelta(seconds=body.expires_in_s) if body.expires_in_s is not None else None
    issued = _store(request).create(body.kind, body.name, expires_in=expires_in)
    log.info(
        "token_created", token_id=issued.token_id, kind=issued.kind, expires_at=issued.expires_at
    )
    return issued_secret(issued)


@router.get("/tokens", response_model=TokenListing)
def list_tokens(
    request: Request,
    kind: Annotated[TokenKind | None, Query(description="only tokens of this kind")] = None,
) -> TokenListing:
    """Every token, oldest first, with its status (admin); never a secret."""
    return TokenListing(items=[_view(info) for info in _store(request).list(kind)])


@router.post("/tokens/{token_id}/revoke", response_model=TokenView, responses=REVOKE_REFUSED)
def revoke_token(token_id: TokenIdPath, request: Request) -> TokenView:
    """Revoke an admin, read-only or enrollment token (admin): 401 from now on. Again: no change."""
    store = _store(request)
    tokens = store.list()
    target = next((t for t in tokens if t.token_id == token_id), None)
    if target is not None and target.kind == "device":
        # The credential alone would leave the device's Flower node registered and training.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{token_id} is the credential of device {target.device_id}: revoke the device with "
            f"`flctl devices revoke {target.device_id}` (it also unregisters its Flower node)",
        )
    # Without an active admin token nobody could create one over the API again (only
    # `fl-coordinator init --new-admin-token` on the coordinator's host).
    active_admins = [t.token_id for t in tokens if t.kind == "admin" and t.status == "active"]
    if active_admins == [token_id]:
        raise HTTPException(status.HTTP_409_CONFLICT, LAST_ADMIN)
    try:
        info = store.revoke(token_id)
    except TokenNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    log.info("token_revoked", token_id=info.token_id, kind=info.kind)
    return _view(info)
