"""REST routes for stored models: versions, metadata, checkpoint and validated ONNX downloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from fl_coordinator.api_deps import RegistryDep, SettingsDep
from fl_coordinator.errors import RunNotFound
from fl_coordinator.model_store import (
    CheckpointCorrupt,
    ModelNotFound,
    ModelStore,
    ModelVersion,
    OnnxExport,
    RoundSpec,
    RunIndex,
)
from fl_shared.errors import DatasetUnavailableError
from fl_shared.wire import REGISTRY_INT_MAX, ErrorBody

router = APIRouter(prefix="/api/v1/models", tags=["models"])
log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_BINARY = "application/octet-stream"


class ModelVersionView(ModelVersion):
    """A stored version with its place in the run and its cached ONNX export, if any."""

    best: bool = Field(description="the run's highest eval accuracy (ties: the later round)")
    latest: bool
    onnx: OnnxExport | None = Field(
        default=None, description="the validated ONNX export cached for this checkpoint"
    )


class RunModels(BaseModel):
    """A run's stored versions, its best and its latest."""

    run_id: int
    keep_last: int = Field(description="retention: the best round plus this many latest rounds")
    best_round: int | None
    latest_round: int
    best: ModelVersionView | None
    latest: ModelVersionView
    versions: list[ModelVersionView]


def _store(settings: SettingsDep) -> ModelStore:
    return ModelStore(settings.model_store_dir, keep_last=settings.model_keep_last)


StoreDep = Annotated[ModelStore, Depends(_store)]
RunId = Annotated[int, Path(ge=1, le=REGISTRY_INT_MAX, description="the run's id")]
RoundParam = Annotated[
    str,
    Path(
        description="a round number (1, 2, ...), `best` or `latest`",
        examples=["best"],
        # Documented only: _round_spec checks it, with a message that says what is allowed.
        json_schema_extra={"pattern": "^([0-9]+|best|latest)$"},
    ),
]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such run, round or stored model"}
}


def _round_spec(raw: str) -> RoundSpec:
    if raw in ("best", "latest"):
        return raw  # type: ignore[return-value]
    if raw.isascii() and raw.isdigit():
        return int(raw)
    raise RequestValidationError(
        [
            {
                "loc": ("path", "round"),
                "msg": f"must be a round number (1, 2, ...), 'best' or 'latest', got {raw!r}",
                "type": "value_error",
            }
        ]
    )


def _view(store: ModelStore, index: RunIndex, version: ModelVersion) -> ModelVersionView:
    return ModelVersionView(
        **version.model_dump(),
        best=version.round == index.best_round,
        latest=version.round == index.latest_round,
        onnx=store.onnx_export(version),
    )


def _index(store: ModelStore, run_id: int) -> RunIndex:
    try:
        return store.index(run_id)
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def _version(store: ModelStore, run_id: int, raw_round: str) -> tuple[RunIndex, ModelVersion]:
    spec = _round_spec(raw_round)
    index = _index(store, run_id)
    try:
        return index, store.resolve(run_id, spec)
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def _error(code: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({**ErrorBody(error=error, detail=detail).model_dump(), **extra}, code)


def _attachment(version: ModelVersion, suffix: str) -> str:
    return f'attachment; filename="run-{version.run_id}-round-{version.round:04d}.{suffix}"'


@router.get("", response_model=list[ModelVersionView], responses=_NOT_FOUND)
def list_models(
    store: StoreDep,
    run_id: Annotated[
        int | None, Query(ge=1, le=REGISTRY_INT_MAX, description="only this run's versions")
    ] = None,
) -> list[ModelVersionView]:
    """Every stored model version with its metrics, by run then round."""
    run_ids = [run_id] if run_id is not None else store.run_ids()
    views: list[ModelVersionView] = []
    for rid in run_ids:
        try:
            index = store.index(rid)
        except ModelNotFound as exc:
            if run_id is not None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
            continue  # an empty run directory: nothing to list
        views.extend(_view(store, index, v) for v in index.versions)
    return views


@router.get("/{run_id}", response_model=RunModels, responses=_NOT_FOUND)
def run_models(run_id: RunId, store: StoreDep) -> RunModels:
    """One run's stored versions, with its best and latest."""
    index = _index(store, run_id)
    views = {v.round: _view(store, index, v) for v in index.versions}
    return RunModels(
        run_id=run_id,
        keep_last=index.keep_last,
        best_round=index.best_round,
        latest_round=index.latest_round,
        best=views.get(index.best_round) if index.best_round is not None else None,
        latest=views[index.latest_round],
        versions=list(views.values()),
    )


@router.get("/{run_id}/rounds/{round}", response_model=ModelVersionView, responses=_NOT_FOUND)
def model_version(run_id: RunId, round: RoundParam, store: StoreDep) -> ModelVersionView:
    """Metadata of one stored version (a round number, `best` or `latest`)."""
    index, version = _version(store, run_id, round)
    return _view(store, index, version)


@router.get(
    "/{run_id}/rounds/{round}/checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {"content": {_BINARY: {}}, "description": "the PyTorch checkpoint (torch.save)"},
        **_NOT_FOUND,
    },
)
def download_checkpoint(run_id: RunId, round: RoundParam, store: StoreDep) -> StreamingResponse:
    """The version's `.pt` file; its sha256 is in the `X-Model-SHA256` header."""
    _, version = _version(store, run_id, round)
    try:
        fh = store.open_checkpoint(version)  # open now: retention may unlink it meanwhile
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    headers = {
        "Content-Disposition": _attachment(version, "pt"),
        "Content-Length": str(os.fstat(fh.fileno()).st_size),
        "X-Model-SHA256": version.sha256,
        "X-Model-Round": str(version.round),
    }
    log.info("checkpoint_download", run_id=run_id, round=version.round)
    return StreamingResponse(_chunks(fh), media_type=_BINARY, headers=headers)


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


@router.get(
    "/{run_id}/rounds/{round}/onnx",
    response_class=Response,
    responses={
        200: {"content": {_BINARY: {}}, "description": "the validated ONNX model"},
        **_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "ONNX Runtime's test accuracy differs from torch's by more than "
            "0.5 percentage points; the body also carries `torch_accuracy` and `onnx_accuracy`",
        },
        503: {"model": ErrorBody, "description": "the validation test set is missing here"},
    },
)
def download_onnx(
    run_id: RunId,
    round: RoundParam,
    store: StoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
) -> Response:
    """The version exported to ONNX (opset 18, dynamic batch), validated with ONNX Runtime.

    Exported on first request, validated on the run's test set (ONNX Runtime's accuracy must
    be within 0.5 percentage points of torch's), then cached beside the checkpoint.
    """
    from fl_coordinator import onnx_export  # torch loads only when someone exports

    _, version = _version(store, run_id, round)
    dataset, data_dir = version.dataset, version.data_dir
    if dataset is None:  # checkpoints from before the index recorded it: ask the registry
        try:
            dataset = registry.get_run(run_id).request.dataset
        except RunNotFound:
            return _error(
                409,
                "dataset_unknown",
                f"run {run_id} round {version.round}: the checkpoint does not record its dataset "
                "and the registry no longer knows the run, so the export cannot be validated; "
                "download the checkpoint instead",
            )
    try:
        data, record = onnx_export.stored_onnx(
            store, version, dataset=dataset, data_dir=data_dir or str(settings.data_dir)
        )
    except ModelNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except onnx_export.OnnxValidationFailed as exc:
        return _error(
            409,
            "onnx_validation_failed",
            str(exc),
            torch_accuracy=exc.torch_accuracy,
            onnx_accuracy=exc.onnx_accuracy,
            samples=exc.samples,
        )
    except DatasetUnavailableError as exc:
        return _error(
            503,
            "unavailable",
            f"the {dataset} test set that validates ONNX exports is unavailable on the "
            f"coordinator: {exc}",
        )
    except (CheckpointCorrupt, onnx_export.OnnxExportFailed) as exc:
        log.error("onnx_export_error", run_id=run_id, round=version.round, error=str(exc))
        return _error(500, "export_failed", str(exc))
    headers = {
        "Content-Disposition": _attachment(version, "onnx"),
        "X-Model-SHA256": record.sha256,
        "X-Model-Round": str(version.round),
        "X-Checkpoint-SHA256": record.checkpoint_sha256,
        "X-Onnx-Opset": str(record.opset),
        "X-Torch-Accuracy": f"{record.torch_accuracy:.6f}",
        "X-Onnx-Accuracy": f"{record.onnx_accuracy:.6f}",
        "X-Validation-Samples": str(record.samples),
    }
    return Response(content=data, media_type=_BINARY, headers=headers)
