"""ONNX export on the real exporter, validated by the real ONNX Runtime on the digits test set."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fl_coordinator import onnx_export
from fl_coordinator.model_store import ModelStore
from fl_coordinator.onnx_export import (
    INPUT_NAME,
    OPSET,
    OnnxValidationFailed,
    export_onnx,
    stored_onnx,
)
from fl_shared.datasets import ArrayDataset, load_dataset
from fl_shared.models import MLP, create_model
from fl_shared.training import train

# torch's own exporter code trips a deprecation inside torch; nothing of ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec:FutureWarning")


@pytest.fixture(scope="module")
def digits_test() -> ArrayDataset:
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def trained_mlp() -> MLP:
    torch.manual_seed(0)
    model = MLP()
    train(model, load_dataset("digits", "train"), epochs=5, batch_size=32, learning_rate=0.05)
    return model.eval()


class ExportsSomethingElse(MLP):
    """A model whose exported graph is not what it computes in eager mode: shifted classes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out.roll(1, dims=1) if torch.compiler.is_exporting() else out


@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
def test_export_matches_torch_on_the_test_set(
    tmp_path: Path, digits_test: ArrayDataset, architecture: str
) -> None:
    torch.manual_seed(1)
    model = create_model(architecture).eval()
    dest = tmp_path / f"{architecture}.onnx"
    record = export_onnx(model, dest, digits_test, dataset="digits")

    data = dest.read_bytes()
    assert record.sha256 == hashlib.sha256(data).hexdigest() and record.size_bytes == len(data)
    assert record.samples == len(digits_test) == 360
    assert abs(record.torch_accuracy - record.onnx_accuracy) <= 0.005
    assert record.opset == OPSET == 18 and "dynamo" in record.exporter
    proto = onnx.load_from_string(data)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {18}
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # a dynamic batch axis
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = digits_test.images[:7]  # a batch size the export never saw
    (onnx_out,) = session.run(None, {INPUT_NAME: x})
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]  # no temporary files


def test_a_trained_model_keeps_its_accuracy(
    tmp_path: Path, digits_test: ArrayDataset, trained_mlp: MLP
) -> None:
    record = export_onnx(trained_mlp, tmp_path / "m.onnx", digits_test, dataset="digits")
    assert record.torch_accuracy > 0.85
    assert record.onnx_accuracy == pytest.approx(record.torch_accuracy, abs=0.005)


def test_an_export_that_computes_something_else_fails_loudly_and_leaves_nothing(
    tmp_path: Path, digits_test: ArrayDataset, trained_mlp: MLP
) -> None:
    model = ExportsSomethingElse()
    model.load_state_dict(trained_mlp.state_dict())
    model.eval()
    dest = tmp_path / "model.onnx"
    with pytest.raises(OnnxValidationFailed) as info:
        export_onnx(model, dest, digits_test, dataset="digits")
    err = info.value
    assert err.torch_accuracy > 0.85 and err.onnx_accuracy < 0.3 and err.samples == 360
    message = str(err)
    assert f"{err.torch_accuracy:.4f}" in message and f"{err.onnx_accuracy:.4f}" in message
    assert list(tmp_path.iterdir()) == []

    dest.write_bytes(b"the previous, good export")
    with pytest.raises(OnnxValidationFailed):
        export_onnx(model, dest, digits_test, dataset="digits")
    assert dest.read_bytes() == b"the previous, good export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_stored_versions_are_exported_once_and_cached(
    tmp_path: Path, trained_mlp: MLP, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    store.save(
        run_id=5,
        server_round=2,
        architecture="mlp",
        num_classes=10,
        state_dict=trained_mlp.state_dict(),
        metrics={"eval-accuracy": 0.9},
        dataset="digits",
    )
    version = store.resolve(5, "best")
    assert store.onnx_export(version) is None
    data, record = stored_onnx(store, version, dataset="digits", data_dir=None)
    assert store.onnx_path(5, 2).read_bytes() == data
    assert store.onnx_export(version) == record
    assert record.checkpoint_sha256 == version.sha256 and record.torch_accuracy > 0.85

    def no_export(*_a: object, **_k: object) -> None:
        raise AssertionError("a current cached export must be served as it is")

    real_export = onnx_export.export_validated
    monkeypatch.setattr(onnx_export, "export_validated", no_export)
    assert stored_onnx(store, version, dataset="digits", data_dir=None) == (data, record)

    store.onnx_path(5, 2).write_bytes(b"damaged")  # the cache no longer matches its record
    monkeypatch.setattr(onnx_export, "export_validated", real_export)
    again, _record = stored_onnx(store, version, dataset="digits", data_dir=None)
    assert again == data == store.onnx_path(5, 2).read_bytes()  # the exporter is deterministic
