"""REST routes for runs: start, list, show, stop, logs, and the ServerApp's reports."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from fl_coordinator.api_deps import RegistryDep, RunServiceDep
from fl_coordinator.errors import SuperLinkUnreachable
from fl_shared.wire import RoundReport, Run, RunRequest, RunStatusReport

HTTP_422 = 422  # starlette renamed the constant; the number is the contract

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Run)
def start_run(body: RunRequest, service: RunServiceDep) -> Run:
    """Start a training run on the fleet."""
    return service.start_run(body)


class AppRunRequest(BaseModel):
    """A user's own Flower App to run on the fleet."""

    model_config = ConfigDict(extra="forbid")

    fab_base64: str = Field(
        description="the Flower App Bundle (`flwr build` output, or flctl builds it), base64"
    )
    config: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] = Field(
        default_factory=dict, description="overrides of keys the app declares"
    )


@router.post("/app", status_code=status.HTTP_201_CREATED, response_model=Run)
def start_app_run(body: AppRunRequest, service: RunServiceDep) -> Run:
    """Run your own Flower App (Message API) on the fleet; it shows like any run."""
    try:
        fab = base64.b64decode(body.fab_base64, validate=True)
    except binascii.Error as exc:
        raise HTTPException(HTTP_422, f"fab_base64 is not valid base64: {exc}") from exc
    return service.start_app_run(fab, body.config)


@router.get("", response_model=list[Run])
def list_runs(registry: RegistryDep) -> list[Run]:
    """Every run, newest first."""
    return registry.list_runs()


@router.get("/{run_id}", response_model=Run)
def show_run(run_id: int, registry: RegistryDep) -> Run:
    """One run with its per-round metrics."""
    return registry.get_run(run_id)


@router.post("/{run_id}/stop", response_model=Run)
def stop_run(run_id: int, service: RunServiceDep) -> Run:
    """Stop a run that has not ended; 409 if it already has."""
    return service.stop_run(run_id)


@router.post("/{run_id}/resume", response_model=Run)
def resume_run(run_id: int, service: RunServiceDep) -> Run:
    """Continue a failed or stopped run from its last checkpoint; 409 if there is nothing to."""
    return service.resume_run(run_id)


@router.get(
    "/{run_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "the ServerApp's log"}},
)
def run_logs(
    run_id: int,
    service: RunServiceDep,
    follow: Annotated[bool, Query(description="keep streaming until the run ends")] = False,
) -> StreamingResponse:
    """The run's ServerApp log as plain text; with ``follow=true``, live until the run ends."""
    lines = service.run_logs(run_id, follow=follow)
    return StreamingResponse(_safe(lines), media_type="text/plain; charset=utf-8")


def _safe(lines: Iterator[str]) -> Iterator[str]:
    """End the stream with one readable line if the SuperLink goes away midway."""
    try:
        yield from lines
    except SuperLinkUnreachable as exc:
        yield f"\n[log stream ended: {exc}]\n"


def _authorize(registry: RegistryDep, run_id: int, token: str | None) -> None:
    expected = registry.report_token(run_id)  # RunNotFound: 404
    if token is None or not hmac.compare_digest(token, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Run-Token")


RunToken = Annotated[str | None, Header(alias="X-Run-Token")]


@router.get("/{run_id}/eligible-devices", response_model=list[str])
def eligible_devices(run_id: int, registry: RegistryDep, token: RunToken = None) -> list[str]:
    """For the run's ServerApp: the device ids it may train on (not drained or revoked, not
    offline, carrying the run's target labels)."""
    _authorize(registry, run_id, token)
    return registry.eligible_device_ids(registry.get_run(run_id).target_labels)


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
