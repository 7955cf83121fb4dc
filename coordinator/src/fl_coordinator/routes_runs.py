"""REST routes for runs: start, preview, list, show, stop, logs, and the ServerApp's reports."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from fl_coordinator.api_deps import RegistryDep, RunServiceDep
from fl_coordinator.device_selector import Candidate, build_selector, overcommitted
from fl_coordinator.errors import SuperLinkUnreachable
from fl_coordinator.registry import Registry
from fl_coordinator.round_selection import DEFAULT_EXAMPLES, finite_or_none
from fl_coordinator.selection_candidates import candidate_listing
from fl_shared.wire import (
    REGISTRY_INT_MAX,
    CandidateListing,
    ErrorBody,
    PreviewDecision,
    RoundReport,
    Run,
    RunRequest,
    RunStatusReport,
    SelectionDecision,
    SelectionPreview,
)

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
# The run's ServerApp: its own run token (X-Run-Token), no bearer credential.
report_router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
log = structlog.get_logger(__name__)

RunId = Annotated[int, Path(ge=1, le=REGISTRY_INT_MAX, description="the run's id")]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "no run with that id"}}
FORBIDDEN: Responses = {403: {"model": ErrorBody, "description": "missing or wrong X-Run-Token"}}
NOT_STARTED: Responses = {
    503: {
        "model": ErrorBody,
        "description": "the SuperLink's Control API is unreachable; the run is recorded as failed",
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Run, responses=NOT_STARTED)
def start_run(body: RunRequest, service: RunServiceDep) -> Run:
    """Start a training run on the fleet."""
    return service.start_run(body)


@router.post("/preview", response_model=SelectionPreview)
def preview_run(body: RunRequest, registry: RegistryDep) -> SelectionPreview:
    """Which devices round 1 of this run would select now, and why the others would not;
    nothing is started or written (the same candidates, constraints and policy as a run)."""
    preview = selection_preview(registry, body)
    log.info(
        "run_previewed",
        policy=preview.policy,
        eligible=preview.eligible,
        selected=len(preview.selected),
        enough=preview.enough,
    )
    return preview


def selection_preview(registry: Registry, request: RunRequest) -> SelectionPreview:
    """Round 1's selection for ``request`` on the fleet as it is now.

    As RoundSelection.choose does it, but every candidate counts as connected (the run's
    SuperNodes are not known before it starts) and as holding the default number of examples.
    """
    devices = registry.eligible_devices(request.target_labels)
    names = {d.device_id: d.name for d in devices}
    listing = candidate_listing(devices, request)
    candidates = [
        Candidate(
            device_id=c.device_id,
            num_examples=DEFAULT_EXAMPLES,
            samples_per_s=c.samples_per_s,
            memory_bytes=c.memory_bytes,
            accelerator=c.accelerator,
            throttled=c.throttled,
        )
        for c in listing.candidates
    ]

    def named(decision: SelectionDecision) -> PreviewDecision:
        return PreviewDecision(**decision.model_dump(), name=names.get(decision.device_id, ""))

    selected: list[PreviewDecision] = []
    not_selected: list[PreviewDecision] = []
    target = request.devices_per_round
    if candidates:
        if target is None:
            count = len(candidates)
        else:
            target = min(target, len(candidates))
            count = min(overcommitted(target, request.overcommit), len(candidates))
        selector = build_selector(
            request.selection,
            seed=request.seed,
            max_staleness_rounds=request.max_staleness_rounds,
        )
        selection = selector.select(1, candidates, count, target=target)
        rank = {device_id: i for i, device_id in enumerate(selection.selected)}
        for d in selection.decisions:
            decision = named(
                SelectionDecision(
                    device_id=d.device_id,
                    selected=d.selected,
                    score=finite_or_none(d.score),
                    reason=d.reason[:200],
                    predicted_s=finite_or_none(d.predicted_s),
                )
            )
            (selected if d.selected else not_selected).append(decision)
        selected.sort(key=lambda d: rank.get(d.device_id, len(rank)))
    excluded = [named(d) for d in listing.excluded]
    eligible = len(candidates)
    enough = eligible >= request.min_devices
    return SelectionPreview(
        policy=request.selection,
        devices_per_round=request.devices_per_round,
        eligible=eligible,
        selected=selected,
        not_selected=not_selected,
        excluded=excluded,
        enough=enough,
        detail=_preview_detail(request, eligible, selected, not_selected, excluded, enough),
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _preview_detail(
    request: RunRequest,
    eligible: int,
    selected: list[PreviewDecision],
    not_selected: list[PreviewDecision],
    excluded: list[PreviewDecision],
    enough: bool,
) -> str:
    """One sentence: who would train, or why the run cannot start."""
    if not enough:
        reasons = "; ".join(f"{d.name or d.device_id}: {d.reason}" for d in excluded[:3])
        return (
            f"the run cannot start now: {_count(eligible, 'device')} may be selected and it "
            f"needs min_devices={request.min_devices}"
            + (f" (kept out: {reasons})" if reasons else "")
            + "; start or undrain devices, relax target_labels, min_memory_mb or "
            "required_accelerator, or lower min_devices"
        )
    sentence = (
        f"{_count(len(selected), 'device')} would train in round 1 ({request.selection} policy"
    )
    if request.devices_per_round is not None:
        target = min(request.devices_per_round, eligible)
        sentence += ", aggregating the first " + ("update" if target == 1 else f"{target} updates")
    sentence += ")"
    if not_selected:
        sentence += f"; {len(not_selected)} not selected"
    if excluded:
        sentence += f"; {len(excluded)} kept out by the run's constraints"
    return sentence


class AppRunRequest(BaseModel):
    """A user's own Flower App to run on the fleet."""

    model_config = ConfigDict(extra="forbid")

    fab_base64: str = Field(
        description="the Flower App Bundle (`flwr build` output, or flctl builds it), base64"
    )
    config: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] = Field(
        default_factory=dict, description="overrides of keys the app declares"
    )


@router.post(
    "/app",
    status_code=status.HTTP_201_CREATED,
    response_model=Run,
    responses={
        413: {"model": ErrorBody, "description": "the bundle is over 16 MiB (base64)"},
        **NOT_STARTED,
    },
)
def start_app_run(body: AppRunRequest, service: RunServiceDep) -> Run:
    """Run your own Flower App (Message API) on the fleet; it shows like any run."""
    try:
        fab = base64.b64decode(body.fab_base64, validate=True)
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        problem = {"loc": ("body", "fab_base64"), "type": "value_error"}
        raise RequestValidationError([{**problem, "msg": f"not valid base64: {exc}"}]) from exc
    return service.start_app_run(fab, body.config)


@router.get("", response_model=list[Run])
def list_runs(registry: RegistryDep) -> list[Run]:
    """Every run, newest first."""
    return registry.list_runs()


@router.get("/{run_id}", response_model=Run, responses=NOT_FOUND)
def show_run(run_id: RunId, registry: RegistryDep) -> Run:
    """One run with its per-round metrics."""
    return registry.get_run(run_id)


@router.post(
    "/{run_id}/stop",
    response_model=Run,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "the run has already ended"},
        503: {
            "model": ErrorBody,
            "description": "the SuperLink's Control API is unreachable; the stop is recorded "
            "as requested",
        },
    },
)
def stop_run(run_id: RunId, service: RunServiceDep) -> Run:
    """Stop a run that has not ended; 409 if it already has."""
    return service.stop_run(run_id)


@router.post(
    "/{run_id}/resume",
    response_model=Run,
    responses={
        **NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "nothing to resume: the run completed, still runs, or runs your own app",
        },
        **NOT_STARTED,
    },
)
def resume_run(run_id: RunId, service: RunServiceDep) -> Run:
    """Continue a failed or stopped run from its last checkpoint; 409 if there is nothing to."""
    return service.resume_run(run_id)


@router.get(
    "/{run_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "the ServerApp's log"},
        **NOT_FOUND,
    },
)
def run_logs(
    run_id: RunId,
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


@report_router.get(
    "/{run_id}/eligible-devices",
    response_model=list[str],
    responses={**NOT_FOUND, **FORBIDDEN},
)
def eligible_devices(run_id: RunId, registry: RegistryDep, token: RunToken = None) -> list[str]:
    """For the run's ServerApp: the device ids it may train on (not drained or revoked, not
    offline, carrying the run's target labels)."""
    _authorize(registry, run_id, token)
    return registry.eligible_device_ids(registry.get_run(run_id).target_labels)


@report_router.get(
    "/{run_id}/candidates",
    response_model=CandidateListing,
    responses={**NOT_FOUND, **FORBIDDEN},
)
def selection_candidates(
    run_id: RunId, registry: RegistryDep, token: RunToken = None
) -> CandidateListing:
    """For the run's ServerApp: the devices its next round may select from, with their
    measured capabilities, and those the run's hard constraints keep out (and why)."""
    _authorize(registry, run_id, token)
    run = registry.get_run(run_id)
    return candidate_listing(registry.eligible_devices(run.target_labels), run.request)


@report_router.post(
    "/{run_id}/rounds",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, **FORBIDDEN},
)
def report_round(
    run_id: RunId, body: RoundReport, registry: RegistryDep, token: RunToken = None
) -> None:
    """The run's ServerApp reports one round."""
    _authorize(registry, run_id, token)
    registry.record_round(run_id, body)


@report_router.post(
    "/{run_id}/status",
    response_model=Run,
    responses={**NOT_FOUND, **FORBIDDEN},
)
def report_status(
    run_id: RunId, body: RunStatusReport, registry: RegistryDep, token: RunToken = None
) -> Run:
    """The run's ServerApp reports a status change."""
    _authorize(registry, run_id, token)
    return registry.update_run_status(run_id, body.status, body.detail)
