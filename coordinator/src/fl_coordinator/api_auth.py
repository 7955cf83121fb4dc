"""Who may call which REST route: admin and read-only tokens, device credentials, run tokens.

Every route has an access level (``ROUTE_ACCESS`` by route name; otherwise GET/HEAD need
``read`` and everything else ``admin``):

- ``public``: no credential (health, the CA certificate, enrollment with a one-time token);
- ``run``: the route checks the run's own ``X-Run-Token`` (the ServerApp's reports);
- ``device``: a device credential for the device in the path (another device's id: 403);
- ``read``: a read-only or admin token; ``admin``: an admin token.

Credentials come as ``Authorization: Bearer <secret>``; no or unknown credential: 401 with
``WWW-Authenticate: Bearer``, a valid one without the scope: 403. In the development mode
(``--insecure-dev``) a request without credentials is let through as an admin; in the public
read-only mode (``--public-read-only``) one to a ``read`` route is let through as the public
(admin and device routes still answer 401). A request that brings a credential is checked in
either mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fl_coordinator.credentials import CredentialStore, Principal
from fl_shared.wire import ErrorBody

Access = Literal["public", "run", "device", "read", "admin"]

ROUTE_ACCESS: dict[str, Access] = {
    "healthz": "public",
    "ca_certificate": "public",
    "enroll": "public",
    "register_device": "device",
    "heartbeat": "device",
    "report_capabilities": "device",
    "eligible_devices": "run",
    "selection_candidates": "run",
    "report_round": "run",
    "report_status": "run",
    "list_tokens": "admin",  # token listings are for admins, not read-only tokens
}
SCOPES: dict[Access, frozenset[str]] = {
    "read": frozenset({"read", "admin"}),
    "admin": frozenset({"admin"}),
    "device": frozenset({"device"}),
}
# What every route behind a credential may answer (public and run-token routes aside).
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "no credential, or an unknown, expired or revoked one",
    },
    403: {
        "model": ErrorBody,
        "description": "the credential lacks the scope, or is another device's",
    },
}
_bearer = HTTPBearer(auto_error=False, description="an admin, read-only or device credential")


@dataclass(frozen=True)
class Caller:
    """Who is calling: a principal, or nobody (public routes, the development mode, the
    public read-only mode)."""

    principal: Principal | None
    development: bool = False
    public: bool = False


def access_of(request: Request) -> Access:
    """The access level of the route this request matched."""
    route = request.scope.get("route")
    name = getattr(route, "name", "")
    if name in ROUTE_ACCESS:
        return ROUTE_ACCESS[name]
    return "read" if request.method in ("GET", "HEAD") else "admin"


def unauthorized(detail: str) -> HTTPException:
    """401 with the challenge a client needs to retry."""
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authorize(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The app-wide dependency: 401/403 unless the caller may use the matched route."""
    access = access_of(request)
    if access in ("public", "run"):
        return Caller(None)
    settings = request.app.state.settings
    if bearer is None:
        if settings.insecure:
            return Caller(None, development=True)
        if settings.public_read_only and access == "read":
            return Caller(None, public=True)
        raise unauthorized(
            "this route needs a credential: send `Authorization: Bearer <token>` (an admin "
            "token from `fl-coordinator init [--new-admin-token]`, or a device credential)"
            + (
                "; the public read-only mode opens read routes only"
                if settings.public_read_only
                else ""
            )
        )
    store: CredentialStore = request.app.state.credentials
    principal = store.cached(bearer.credentials)
    if principal is None:  # a database read: not on the event loop
        principal = await run_in_threadpool(store.authenticate, bearer.credentials)
    if principal is None:
        raise unauthorized(
            "the credential is unknown, expired or revoked: ask an administrator for a new one"
        )
    if principal.kind not in SCOPES[access]:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a {principal.kind} credential may not use this route (it needs {access} access)",
        )
    if access == "device":
        claimed = request.path_params.get("device_id")
        if claimed is not None and claimed != principal.device_id:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this credential belongs to device {principal.device_id}, not {claimed}",
            )
    return Caller(principal)


CallerDep = Annotated[Caller, Depends(authorize)]
