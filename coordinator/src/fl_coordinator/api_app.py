"""create_app: the FastAPI application of the coordinator (REST API and health)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from fl_coordinator import (
    __version__,
    routes_devices,
    routes_enroll,
    routes_fleet,
    routes_models,
    routes_runs,
    routes_tokens,
)
from fl_coordinator.api_auth import AUTH_ERRORS, authorize
from fl_coordinator.body_limit import BodyLimitMiddleware
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.dashboard_routes import router as dashboard_router
from fl_coordinator.errors import (
    DeviceNotFound,
    DeviceRevoked,
    RunAlreadyFinished,
    RunNotFound,
    SuperLinkUnreachable,
)
from fl_coordinator.heartbeat_fast_path import HeartbeatFastPath
from fl_coordinator.model_store import ModelNotFound
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_coordinator.telemetry import TracingMiddleware
from fl_coordinator.user_app import InvalidApp
from fl_shared.wire import ErrorBody, InvalidRequestBody


class Health(BaseModel):
    """The answer of /healthz."""

    status: str
    version: str


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _problem(err: dict[str, Any]) -> tuple[str, str]:
    """The field at fault and what is wrong with it, for one of pydantic's errors."""
    if err.get("type") == "json_invalid":  # its loc is ("body", character offset)
        position = err.get("loc", ("body", 0))[-1]
        reason = (err.get("ctx") or {}).get("error", "")
        return "body", f"not valid JSON ({reason} at character {position})"
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    return _field(tuple(err.get("loc", ()))), message


def _invalid(problems: list[tuple[str, str]]) -> JSONResponse:
    body = InvalidRequestBody(
        error="invalid_request",
        detail="; ".join(f"{field}: {message}" for field, message in problems),
        fields=[field for field, _message in problems],
    )
    return JSONResponse(body.model_dump(), status_code=422)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _invalid([_problem(err) for err in exc.errors()])


# What any route of the API may answer to bad input (FastAPI would document its own 422).
BAD_INPUT: dict[int | str, dict[str, Any]] = {
    413: {
        "model": ErrorBody,
        "description": "the request body is over 1 MiB (16 MiB for /api/v1/runs/app)",
    },
    422: {
        "model": InvalidRequestBody,
        "description": "invalid request: `detail` says what is wrong and how to fix it, "
        "`fields` names the fields at fault",
    },
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names one route's alone)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


# FastAPI's answer to a body that json.loads cannot even decode (not UTF-8); a bad body is a
# 422 naming it here, as every other bad body is.
_UNREADABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
        return _invalid([("body", "cannot be read as JSON: send UTF-8 encoded JSON")])
    names = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        422: "invalid_request",
        426: "upgrade_required",
        503: "unavailable",
    }
    body = ErrorBody(error=names.get(exc.status_code, "error"), detail=str(exc.detail))
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)


# Domain errors a route lets through, as HTTP answers (first match wins).
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (RunNotFound, 404, "not_found"),
    (DeviceNotFound, 404, "not_found"),
    (ModelNotFound, 404, "not_found"),
    (DeviceRevoked, 403, "forbidden"),
    (RunAlreadyFinished, 409, "conflict"),
    (InvalidApp, 422, "invalid_request"),
    (SuperLinkUnreachable, 503, "unavailable"),
)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    for kind, code, name in DOMAIN_ERRORS:
        if isinstance(exc, kind):
            body = ErrorBody(error=name, detail=str(exc))
            return JSONResponse(body.model_dump(), status_code=code)
    raise exc


def create_app(
    registry: Registry,
    run_service: RunService,
    settings: CoordinatorSettings,
    credentials: CredentialStore | None = None,
) -> FastAPI:
    """Build the API around already-started services (nothing starts at import time)."""
    app = FastAPI(title="fl-coordinator", version=__version__)
    app.state.registry = registry
    app.state.run_service = run_service
    app.state.settings = settings
    app.state.credentials = credentials or CredentialStore(registry)
    # Device credentials stay cached, refreshed with the heartbeat writer's reloads.
    registry.heartbeats.housekeeping.append(app.state.credentials.warm_devices)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for kind, _code, _name in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain_error)
    for module in (routes_devices, routes_runs, routes_models, routes_fleet):
        app.include_router(
            module.router,
            responses={**BAD_INPUT, **AUTH_ERRORS},
            dependencies=[Depends(authorize)],  # per route: api_auth.ROUTE_ACCESS
        )
    app.include_router(routes_enroll.router, responses=BAD_INPUT)  # public, but for one route
    app.include_router(routes_tokens.router, responses=BAD_INPUT)  # admin: its own dependency
    app.include_router(routes_runs.report_router, responses=BAD_INPUT)  # X-Run-Token
    app.include_router(dashboard_router)  # the web dashboard's static files: /ui/
    # Middleware, innermost first: the heartbeat fast path, the body limit, tracing.
    heartbeat_route = next(
        r for r in routes_devices.router.routes if getattr(r, "name", "") == "heartbeat"
    )
    app.add_middleware(
        HeartbeatFastPath,
        ingest=registry.heartbeats,
        credentials=app.state.credentials,
        development=settings.insecure,
        route=heartbeat_route,
    )
    app.add_middleware(BodyLimitMiddleware)  # oversized bodies: 413 before any parsing
    app.add_middleware(TracingMiddleware)  # a span per request (exported only if configured)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    return app
