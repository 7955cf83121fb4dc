"""REST routes for runs: start, list, show, and the ServerApp's reports."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status

from fl_coordinator.api_deps import RegistryDep, RunServiceDep
from fl_coordinator.errors import RunNotFound, SuperLinkUnreachable
from fl_shared.wire import RoundReport, Run, RunRequest, RunStatusReport

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Run)
def start_run(body: RunRequest, service: RunServiceDep) -> Run:
    """Start a training run on the fleet."""
    try:
        return service.start_run(body)
    except SuperLinkUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


@router.get("", response_model=list[Run])
def list_runs(registry: RegistryDep) -> list[Run]:
    """Every run, newest first."""
    return registry.list_runs()


@router.get("/{run_id}", response_model=Run)
def show_run(run_id: int, registry: RegistryDep) -> Run:
    """One run with its per-round metrics."""
    try:
        return registry.get_run(run_id)
    except RunNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def _authorize(registry: RegistryDep, run_id: int, token: str | None) -> None:
    try:
        expected = registry.report_token(run_id)
    except RunNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if token is None or not hmac.compare_digest(token, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Run-Token")


RunToken = Annotated[str | None, Header(alias="X-Run-Token")]


@router.post("/{run_id}/rounds", status_code=status.HTTP_204_NO_CONTENT)
def report_round(
    run_id: int, body: RoundReport, registry: RegistryDep, token: RunToken = None
) -> None:
    """The run's ServerApp reports one round."""
    _authorize(registry, run_id, token)
    registry.record_round(run_id, body)


@router.post("/{run_id}/status", response_model=Run)
def report_status(
    run_id: int, body: RunStatusReport, registry: RegistryDep, token: RunToken = None
) -> Run:
    """The run's ServerApp reports a status change."""
    _authorize(registry, run_id, token)
    return registry.update_run_status(run_id, body.status, body.detail)
