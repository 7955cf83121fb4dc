"""ONNX export of stored models, validated by ONNX Runtime against torch on the test set."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import onnx
import onnxruntime as ort
import structlog
import torch
from torch import nn

from fl_coordinator.errors import FlCoordinatorError
from fl_coordinator.model_store import ModelStore, ModelVersion, OnnxExport, sha256_hex
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.datasets import ArrayDataset, load_dataset

__all__ = [
    "INPUT_NAME",
    "MAX_ACCURACY_GAP_PP",
    "OPSET",
    "OUTPUT_NAME",
    "OnnxExportFailed",
    "OnnxValidationFailed",
    "export_onnx",
    "export_validated",
    "stored_onnx",
]

# The dynamo exporter (torch.export + onnxscript) is torch 2.13's default; the TorchScript one
# is deprecated. It emits opset 18 natively, which ONNX Runtime >= 1.14 and TensorRT 8.6 read.
OPSET: Final[int] = 18
EXPORTER: Final[str] = f"torch.onnx.export(dynamo=True) torch {torch.__version__.split('+')[0]}"
MAX_ACCURACY_GAP_PP: Final[float] = 0.5
INPUT_NAME: Final[str] = "input"
OUTPUT_NAME: Final[str] = "log_probs"
_BATCH: Final[int] = 512

log = structlog.get_logger(__name__)


class OnnxExportFailed(FlCoordinatorError):
    """torch.onnx.export (or the ONNX checker) rejected the model."""


class OnnxValidationFailed(FlCoordinatorError):
    """ONNX Runtime's test accuracy differs from torch's by more than the allowed gap."""

    def __init__(
        self, message: str, *, torch_accuracy: float, onnx_accuracy: float, samples: int
    ) -> None:
        super().__init__(message)
        self.torch_accuracy = torch_accuracy
        self.onnx_accuracy = onnx_accuracy
        self.samples = samples


def export_validated(
    model: nn.Module,
    test_data: ArrayDataset,
    *,
    dataset: str,
    checkpoint_sha256: str = "",
    opset: int = OPSET,
    max_gap_pp: float = MAX_ACCURACY_GAP_PP,
) -> tuple[bytes, OnnxExport]:
    """Export ``model`` to ONNX bytes and validate them; nothing is written.

    Raises OnnxValidationFailed (naming both accuracies) when ONNX Runtime's accuracy on
    ``test_data`` is more than ``max_gap_pp`` percentage points away from torch's.
    """
    if len(test_data) == 0:
        raise ValueError("test_data is empty: an export cannot be validated without examples")
    started = time.monotonic()
    model.eval()
    data = _export_bytes(model, opset)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    torch_accuracy = _accuracy(_torch_predictions(model, test_data.images), test_data.labels)
    onnx_accuracy = _accuracy(_onnx_predictions(session, test_data.images), test_data.labels)
    gap_pp = abs(torch_accuracy - onnx_accuracy) * 100.0
    if gap_pp > max_gap_pp:
        log.error(
            "onnx_validation_failed",
            torch_accuracy=torch_accuracy,
            onnx_accuracy=onnx_accuracy,
            gap_pp=gap_pp,
            samples=len(test_data),
            dataset=dataset,
        )
        raise OnnxValidationFailed(
            f"ONNX export rejected: ONNX Runtime accuracy {onnx_accuracy:.4f} vs torch accuracy "
            f"{torch_accuracy:.4f} on {len(test_data)} {dataset} test examples differ by "
            f"{gap_pp:.2f} percentage points (at most {max_gap_pp} allowed); the exported graph "
            "does not compute what the model does, so it was not kept",
            torch_accuracy=torch_accuracy,
            onnx_accuracy=onnx_accuracy,
            samples=len(test_data),
        )
    record = OnnxExport(
        sha256=sha256_hex(data),
        size_bytes=len(data),
        opset=opset,
        exporter=EXPORTER,
        torch_accuracy=torch_accuracy,
        onnx_accuracy=onnx_accuracy,
        samples=len(test_data),
        dataset=dataset,
        checkpoint_sha256=checkpoint_sha256,
        seconds=round(time.monotonic() - started, 3),
        created_at=datetime.now(UTC),
    )
    log.info("onnx_exported", **record.model_dump(exclude={"created_at"}))
    return data, record


def export_onnx(
    model: nn.Module,
    dest: Path,
    test_data: ArrayDataset,
    *,
    dataset: str,
    checkpoint_sha256: str = "",
    opset: int = OPSET,
    max_gap_pp: float = MAX_ACCURACY_GAP_PP,
) -> OnnxExport:
    """Export, validate, then write ``dest`` atomically; a failed export leaves ``dest`` alone."""
    data, record = export_validated(
        model,
        test_data,
        dataset=dataset,
        checkpoint_sha256=checkpoint_sha256,
        opset=opset,
        max_gap_pp=max_gap_pp,
    )
    atomic_write_bytes(dest, data)
    return record


def stored_onnx(
    store: ModelStore, version: ModelVersion, *, dataset: str, data_dir: str | None
) -> tuple[bytes, OnnxExport]:
    """A stored version as validated ONNX bytes: the cached export if current, else a new one.

    A new export is cached as ``round-<n>.onnx`` with its validation record beside it (the
    file first, then the record; the cache only counts when both agree).
    """
    cached = _cached(store, version)
    if cached is not None:
        log.info("onnx_cache_hit", run_id=version.run_id, round=version.round)
        return cached
    model, _meta = store.load_version(version)
    test_data = load_dataset(dataset, "test", data_dir=data_dir)
    data, record = export_validated(
        model, test_data, dataset=dataset, checkpoint_sha256=version.sha256
    )
    atomic_write_bytes(store.onnx_path(version.run_id, version.round), data)
    atomic_write_bytes(
        store.onnx_record_path(version.run_id, version.round),
        record.model_dump_json(indent=2).encode(),
    )
    log.info("onnx_cached", run_id=version.run_id, round=version.round, sha256=record.sha256)
    return data, record


def _cached(store: ModelStore, version: ModelVersion) -> tuple[bytes, OnnxExport] | None:
    record = store.onnx_export(version)
    if record is None:
        return None
    try:
        data = store.onnx_path(version.run_id, version.round).read_bytes()
    except OSError:
        return None
    return (data, record) if sha256_hex(data) == record.sha256 else None


def _export_bytes(model: nn.Module, opset: int) -> bytes:
    # The exporter warns once per call that torchvision's ops are not registered; we use none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    example = torch.zeros(2, 1, 28, 28)  # batch 2: torch.export would specialize a batch of 1
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            optimize=True,
            verbose=False,
        )
        if program is None:
            raise OnnxExportFailed("torch.onnx.export returned no program")
        proto = program.model_proto
        onnx.checker.check_model(proto)
        return proto.SerializeToString()
    except OnnxExportFailed:
        raise
    except Exception as exc:  # exporter errors come in many types: name the one it was
        raise OnnxExportFailed(
            f"torch.onnx.export (dynamo, opset {opset}) failed for "
            f"{type(model).__name__}: {type(exc).__name__}: {exc}"
        ) from exc


def _torch_predictions(model: nn.Module, images: np.ndarray) -> np.ndarray:
    out: list[np.ndarray] = []
    with torch.no_grad():
        for begin in range(0, len(images), _BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(images[begin : begin + _BATCH]))
            out.append(model(batch).argmax(dim=1).numpy())
    return np.concatenate(out)


def _onnx_predictions(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    out: list[np.ndarray] = []
    for begin in range(0, len(images), _BATCH):
        batch = np.ascontiguousarray(images[begin : begin + _BATCH], dtype=np.float32)
        (log_probs,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        out.append(np.asarray(log_probs).argmax(axis=1))
    return np.concatenate(out)


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean())
