"""ModelStore: per-round checkpoints, a per-run metadata index, best-model tracking, retention."""

from __future__ import annotations

import hashlib
import io
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from fl_coordinator.errors import FlCoordinatorError
from fl_shared.atomic_write import atomic_write_bytes

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_KEEP_LAST",
    "INDEX_NAME",
    "CheckpointCorrupt",
    "ModelNotFound",
    "ModelStore",
    "ModelVersion",
    "OnnxExport",
    "RoundSpec",
    "RunIndex",
    "sha256_hex",
]

DEFAULT_KEEP_LAST: Final[int] = 3
INDEX_NAME: Final[str] = "index.json"
INDEX_FORMAT: Final[int] = 1
# Files of one round inside run-<id>/: the checkpoint, its cached ONNX export and that export's
# validation record. Retention deletes all three together.
_ROUND_FILE = re.compile(r"^round-(\d+)\.(pt|onnx|onnx\.json)$")
# Temporary files only the writer (the run's ServerApp) makes; a crash can leave them behind.
_WRITER_TEMP = re.compile(r"^\.(round-\d+\.pt|index\.json)\..*\.tmp$")
_RUN_DIR = re.compile(r"^run-(\d+)$")

RoundSpec = int | Literal["best", "latest"]

log = structlog.get_logger(__name__)


class ModelNotFound(FlCoordinatorError):
    """No stored model for that run, round or alias (HTTP 404)."""


class CheckpointCorrupt(FlCoordinatorError):
    """A checkpoint's bytes no longer match the sha256 its index recorded."""


class ModelVersion(BaseModel):
    """One stored checkpoint as the run's index (and the REST API) describes it."""

    model_config = ConfigDict(extra="ignore")

    run_id: int
    round: int = Field(ge=1)
    architecture: str
    num_classes: int
    dataset: str | None = Field(
        default=None, description="dataset of the run; its test split validates exports"
    )
    data_dir: str | None = Field(
        default=None, description="where the ServerApp read the test split (fashion-mnist)"
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    eval_accuracy: float | None = None
    eval_loss: float | None = None
    sha256: str = Field(description="sha256 of the checkpoint file's bytes")
    size_bytes: int
    created_at: datetime
    checkpoint: str = Field(description="file name inside the run's model directory")


class RunIndex(BaseModel):
    """``run-<id>/index.json``: every stored checkpoint of a run, oldest round first."""

    model_config = ConfigDict(extra="ignore")

    format: int = INDEX_FORMAT
    run_id: int
    keep_last: int
    best_round: int | None = Field(
        description="highest eval accuracy, ties to the later round; None without evaluations"
    )
    latest_round: int
    versions: list[ModelVersion]

    def find(self, server_round: int) -> ModelVersion | None:
        """The version of one round, if it is stored."""
        return next((v for v in self.versions if v.round == server_round), None)


class OnnxExport(BaseModel):
    """A validated ONNX export, also kept as ``round-<n>.onnx.json`` beside the cached file."""

    model_config = ConfigDict(extra="ignore")

    sha256: str = Field(description="sha256 of the .onnx file's bytes")
    size_bytes: int
    opset: int
    exporter: str
    torch_accuracy: float
    onnx_accuracy: float
    samples: int = Field(description="test examples both accuracies were measured on")
    dataset: str
    checkpoint_sha256: str = Field(description="the checkpoint this file was exported from")
    seconds: float
    created_at: datetime


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _best_round(versions: list[ModelVersion]) -> int | None:
    scored = [(v.eval_accuracy, v.round) for v in versions if v.eval_accuracy is not None]
    return max(scored)[1] if scored else None


class ModelStore:
    """Checkpoints under ``<root>/run-<id>/round-<n>.pt`` with ``run-<id>/index.json``.

    One writer per run (its ServerApp) calls :meth:`save`; any number of readers (the REST
    API) read the index, which is always replaced whole. Retention keeps the best round and the
    last ``keep_last`` rounds.
    """

    def __init__(self, root: Path, keep_last: int = DEFAULT_KEEP_LAST) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1 (the latest round), got {keep_last}")
        self.root = root
        self.keep_last = keep_last

    def run_dir(self, run_id: int) -> Path:
        """The directory of one run's models."""
        return self.root / f"run-{run_id}"

    def index_path(self, run_id: int) -> Path:
        """The run's metadata index."""
        return self.run_dir(run_id) / INDEX_NAME

    def checkpoint_path(self, run_id: int, server_round: int) -> Path:
        """Where one round's checkpoint lives."""
        return self.run_dir(run_id) / f"round-{server_round:04d}.pt"

    def onnx_path(self, run_id: int, server_round: int) -> Path:
        """Where one round's validated ONNX export is cached."""
        return self.run_dir(run_id) / f"round-{server_round:04d}.onnx"

    def onnx_record_path(self, run_id: int, server_round: int) -> Path:
        """The validation record of the cached ONNX export."""
        return self.run_dir(run_id) / f"round-{server_round:04d}.onnx.json"

    # -- writer side (the run's ServerApp) ----------------------------------------------------

    def save(
        self,
        *,
        run_id: int,
        server_round: int,
        architecture: str,
        num_classes: int,
        state_dict: dict[str, torch.Tensor],
        metrics: dict[str, float],
        dataset: str | None = None,
        data_dir: str | None = None,
    ) -> Path:
        """Write one round's checkpoint, record it in the index, then apply retention.

        Order matters for a crash at any point: (1) the checkpoint file, (2) the index that
        lists it and no longer lists pruned rounds, (3) deleting pruned files. The index never
        names a missing file; files left over by a crash are swept by the next save.
        """
        import torch

        if server_round < 1:
            raise ValueError(f"round {server_round}: only rounds >= 1 are checkpointed")
        created = time.time()
        payload = {
            "model_state_dict": state_dict,
            "metadata": {
                "run_id": run_id,
                "round": server_round,
                "architecture": architecture,
                "num_classes": num_classes,
                "dataset": dataset,
                "data_dir": data_dir,
                "metrics": metrics,
                "created_at": created,
                "framework": "pytorch",
            },
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        path = self.checkpoint_path(run_id, server_round)
        atomic_write_bytes(path, data)

        finite = {k: f for k, v in metrics.items() if (f := _finite(v)) is not None}
        version = ModelVersion(
            run_id=run_id,
            round=server_round,
            architecture=architecture,
            num_classes=num_classes,
            dataset=dataset,
            data_dir=data_dir,
            metrics=finite,
            eval_accuracy=finite.get("eval-accuracy"),
            eval_loss=finite.get("eval-loss"),
            sha256=sha256_hex(data),
            size_bytes=len(data),
            created_at=datetime.fromtimestamp(created, UTC),
            checkpoint=path.name,
        )
        previous = self._read_index(run_id) or self._scan(run_id)
        by_round = {v.round: v for v in (previous.versions if previous else [])}
        by_round[server_round] = version
        index = self._retain(run_id, sorted(by_round.values(), key=lambda v: v.round))
        atomic_write_bytes(self.index_path(run_id), index.model_dump_json(indent=2).encode())
        pruned = sorted(set(by_round) - {v.round for v in index.versions})
        self._sweep(run_id, {v.round for v in index.versions})
        log.info(
            "checkpoint_saved",
            run_id=run_id,
            round=server_round,
            path=str(path),
            sha256=version.sha256,
            eval_accuracy=version.eval_accuracy,
            best_round=index.best_round,
            kept_rounds=[v.round for v in index.versions],
            pruned_rounds=pruned,
        )
        return path

    def _retain(self, run_id: int, versions: list[ModelVersion]) -> RunIndex:
        best = _best_round(versions)
        rounds = sorted(v.round for v in versions)
        keep = set(rounds[-self.keep_last :]) | ({best} if best is not None else set())
        return RunIndex(
            run_id=run_id,
            keep_last=self.keep_last,
            best_round=best,
            latest_round=rounds[-1],
            versions=[v for v in versions if v.round in keep],
        )

    def _sweep(self, run_id: int, kept: set[int]) -> None:
        """Delete files of rounds the index no longer lists, and the writer's stale temps."""
        for entry in self.run_dir(run_id).iterdir():
            match = _ROUND_FILE.match(entry.name)
            stale = (match is not None and int(match[1]) not in kept) or bool(
                _WRITER_TEMP.match(entry.name)
            )
            if stale:
                self._delete(entry)

    @staticmethod
    def _delete(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the next save tries again; the index is already right
            log.warning("model_file_not_deleted", path=str(path), error=str(exc))

    # -- reader side (the REST API) -----------------------------------------------------------

    def run_ids(self) -> list[int]:
        """Runs that have a model directory, in ascending order."""
        if not self.root.is_dir():
            return []
        found = (_RUN_DIR.match(p.name) for p in self.root.iterdir() if p.is_dir())
        return sorted(int(m[1]) for m in found if m is not None)

    def index(self, run_id: int) -> RunIndex:
        """The run's index; ModelNotFound when the run has no stored checkpoint."""
        index = self._read_index(run_id) or self._scan(run_id)
        if index is None or not index.versions:
            raise ModelNotFound(
                f"no stored models for run {run_id}: the run does not exist or has not finished "
                "a round yet; `flctl models list` (GET /api/v1/models) shows the stored ones"
            )
        return index

    def versions(self, run_id: int | None = None) -> list[ModelVersion]:
        """Every stored version (of one run, or of all), by run then round."""
        if run_id is not None:
            return self.index(run_id).versions
        out: list[ModelVersion] = []
        for rid in self.run_ids():
            index = self._read_index(rid) or self._scan(rid)
            out.extend(index.versions if index else [])
        return out

    def resolve(self, run_id: int, spec: RoundSpec) -> ModelVersion:
        """The version a round number, ``best`` or ``latest`` names; ModelNotFound otherwise."""
        index = self.index(run_id)
        stored = ", ".join(str(v.round) for v in index.versions)
        if spec == "latest":
            spec = index.latest_round
        elif spec == "best":
            if index.best_round is None:
                raise ModelNotFound(
                    f"run {run_id} has no evaluated round, so no best model; ask for a round "
                    f"number instead (stored: {stored})"
                )
            spec = index.best_round
        version = index.find(spec)
        if version is not None:
            return version
        if spec == 0:
            why = "round 0 is the initial model, which is not checkpointed"
        elif spec > index.latest_round:
            why = f"the run's latest checkpoint is round {index.latest_round}"
        else:
            why = f"it was pruned: retention keeps the best round and the last {index.keep_last}"
        raise ModelNotFound(
            f"run {run_id} has no checkpoint for round {spec} ({why}); stored rounds: {stored}"
        )

    def open_checkpoint(self, version: ModelVersion) -> BinaryIO:
        """Open a version's checkpoint for reading; ModelNotFound if retention just pruned it."""
        path = self.run_dir(version.run_id) / version.checkpoint
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ModelNotFound(
                f"run {version.run_id} round {version.round}: the checkpoint was pruned by "
                "retention a moment ago; list the run's models again"
            ) from exc

    def read_checkpoint(self, version: ModelVersion) -> bytes:
        """A version's checkpoint bytes, checked against the sha256 in the index."""
        with self.open_checkpoint(version) as fh:
            data = fh.read()
        if sha256_hex(data) != version.sha256:
            raise CheckpointCorrupt(
                f"checkpoint {self.run_dir(version.run_id) / version.checkpoint} does not match "
                f"the sha256 its index recorded ({version.sha256[:12]}…): the file was changed "
                "or damaged on disk; restore it from a backup"
            )
        return data

    def load_version(self, version: ModelVersion) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Rebuild a stored version's model (checksum verified); returns it with the metadata."""
        return self._load_bytes(self.read_checkpoint(version))

    def onnx_export(self, version: ModelVersion) -> OnnxExport | None:
        """The validation record of the version's cached ONNX export, if it is current."""
        try:
            raw = self.onnx_record_path(version.run_id, version.round).read_bytes()
            record = OnnxExport.model_validate_json(raw)
        except (OSError, ValueError):
            return None
        return record if record.checkpoint_sha256 == version.sha256 else None

    @staticmethod
    def load(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Rebuild the model a checkpoint holds; returns it with the metadata."""
        return ModelStore._load_bytes(path.read_bytes())

    @staticmethod
    def _load_bytes(data: bytes) -> tuple[torch.nn.Module, dict[str, Any]]:
        import torch

        from fl_shared.models import create_model

        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        meta: dict[str, Any] = payload["metadata"]
        model = create_model(meta["architecture"], meta["num_classes"])
        model.load_state_dict(payload["model_state_dict"])
        return model, meta

    def _read_index(self, run_id: int) -> RunIndex | None:
        path = self.index_path(run_id)
        try:
            return RunIndex.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("model_index_unreadable", run_id=run_id, path=str(path), error=str(exc))
            return None

    def _scan(self, run_id: int) -> RunIndex | None:
        """Rebuild an index from the checkpoints themselves (older runs, or a damaged index)."""
        run_dir = self.run_dir(run_id)
        if not run_dir.is_dir():
            return None
        versions: list[ModelVersion] = []
        for path in sorted(run_dir.glob("round-*.pt")):
            try:
                data = path.read_bytes()
                _model, meta = self._load_bytes(data)
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not hide the rest
                log.warning("checkpoint_unreadable", path=str(path), error=str(exc))
                continue
            raw_metrics = dict(meta.get("metrics", {}))
            metrics = {k: f for k, v in raw_metrics.items() if (f := _finite(v)) is not None}
            versions.append(
                ModelVersion(
                    run_id=run_id,
                    round=int(meta["round"]),
                    architecture=str(meta["architecture"]),
                    num_classes=int(meta["num_classes"]),
                    dataset=meta.get("dataset"),
                    data_dir=meta.get("data_dir"),
                    metrics=metrics,
                    eval_accuracy=metrics.get("eval-accuracy"),
                    eval_loss=metrics.get("eval-loss"),
                    sha256=sha256_hex(data),
                    size_bytes=len(data),
                    created_at=datetime.fromtimestamp(float(meta.get("created_at", 0.0)), UTC),
                    checkpoint=path.name,
                )
            )
        if not versions:
            return None
        log.info("model_index_rebuilt", run_id=run_id, rounds=[v.round for v in versions])
        versions.sort(key=lambda v: v.round)
        return RunIndex(
            run_id=run_id,
            keep_last=self.keep_last,
            best_round=_best_round(versions),
            latest_round=versions[-1].round,
            versions=versions,
        )
