"""create_app: the FastAPI application of the coordinator (REST API and health)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from fl_coordinator import __version__, routes_devices, routes_models, routes_runs
from fl_coordinator.body_limit import BodyLimitMiddleware
from fl_coordinator.errors import (
    DeviceNotFound,
    DeviceRevoked,
    RunAlreadyFinished,
    RunNotFound,
    SuperLinkUnreachable,
)
from fl_coordinator.model_store import ModelNotFound
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_coordinator.telemetry import TracingMiddleware
from fl_coordinator.user_app import InvalidApp
from fl_shared.wire import ErrorBody


class Health(BaseModel):
    """The answer of /healthz."""

    status: str
    version: str


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{_field(tuple(err.get('loc', ())))}: "
        + str(err.get("msg", "")).removeprefix("Value error, ")
        for err in exc.errors()
    ]
    body = ErrorBody(error="invalid_request", detail="; ".join(problems))
    return JSONResponse(
        {**body.model_dump(), "fields": [_field(tuple(e.get("loc", ()))) for e in exc.errors()]},
        status_code=422,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    names = {
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        426: "upgrade_required",
        503: "unavailable",
    }
    body = ErrorBody(error=names.get(exc.status_code, "error"), detail=str(exc.detail))
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)


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
    registry: Registry, run_service: RunService, settings: CoordinatorSettings
) -> FastAPI:
    """Build the API around already-started services (nothing starts at import time)."""
    app = FastAPI(title="fl-coordinator", version=__version__)
    app.state.registry = registry
    app.state.run_service = run_service
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for kind, _code, _name in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain_error)
    app.add_middleware(BodyLimitMiddleware)  # oversized bodies: 413 before any parsing
    app.add_middleware(TracingMiddleware)  # a span per request (exported only if configured)
    app.include_router(routes_devices.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_models.router)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    return app
