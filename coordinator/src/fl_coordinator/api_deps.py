"""FastAPI dependencies of the REST API, as Annotated aliases (async: no threadpool hop)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings


async def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def _run_service(request: Request) -> RunService:
    service: RunService = request.app.state.run_service
    return service


async def _settings(request: Request) -> CoordinatorSettings:
    settings: CoordinatorSettings = request.app.state.settings
    return settings


RegistryDep = Annotated[Registry, Depends(_registry)]
RunServiceDep = Annotated[RunService, Depends(_run_service)]
SettingsDep = Annotated[CoordinatorSettings, Depends(_settings)]
