"""REST API of the model store, on real checkpoints, a real SQLite registry and real exports."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from fl_coordinator import onnx_export
from fl_coordinator.api_app import create_app
from fl_coordinator.model_store import ModelStore
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.wire import RunRequest

# torch's own exporter code trips a deprecation inside torch; nothing of ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec:FutureWarning")


class NoControl:
    """The SuperLink is not needed to read stored models."""

    def start_run(self, run_config: dict[str, Any]) -> int:
        raise AssertionError("no run is started here")


Env = tuple[TestClient, ModelStore, Path]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True, data_dir=tmp_path / "none")
    registry = Registry(settings.resolved_database_url)
    registry.create_schema()
    run1, _ = registry.create_run(RunRequest(model="mlp", dataset="digits"))
    run2, _ = registry.create_run(RunRequest(model="mlp", dataset="digits"))
    run3, _ = registry.create_run(RunRequest(model="mlp", dataset="fashion-mnist"))
    assert (run1, run2, run3) == (1, 2, 3)
    store = ModelStore(settings.model_store_dir, keep_last=2)
    torch.manual_seed(0)
    state = create_model("mlp").state_dict()
    for server_round, accuracy in enumerate([0.6, 0.2, 0.3, 0.4], start=1):  # best: round 1
        _save(store, 1, server_round, accuracy, state, dataset="digits")
    _save(store, 2, 1, 0.5, state, dataset=None)  # written before checkpoints named a dataset
    _save(store, 3, 1, 0.5, state, dataset="fashion-mnist")
    service = RunService(registry, NoControl(), settings)  # type: ignore[arg-type]
    with TestClient(create_app(registry, service, settings)) as client:
        yield client, store, tmp_path
    registry.close()


def _save(
    store: ModelStore,
    run_id: int,
    server_round: int,
    accuracy: float,
    state: dict[str, torch.Tensor],
    dataset: str | None,
) -> None:
    store.save(
        run_id=run_id,
        server_round=server_round,
        architecture="mlp",
        num_classes=10,
        state_dict=state,
        metrics={"eval-accuracy": accuracy, "eval-loss": 2.0},
        dataset=dataset,
    )


def _error(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "detail"}
    return body


def test_list_every_version_and_filter_by_run(env: Env) -> None:
    client, _, _ = env
    listed = client.get("/api/v1/models").json()
    assert [(v["run_id"], v["round"]) for v in listed] == [(1, 1), (1, 3), (1, 4), (2, 1), (3, 1)]
    first = listed[0]
    assert (first["best"], first["latest"], first["eval_accuracy"]) == (True, False, 0.6)
    assert first["metrics"] == {"eval-accuracy": 0.6, "eval-loss": 2.0}
    assert len(first["sha256"]) == 64 and first["onnx"] is None
    only = client.get("/api/v1/models", params={"run_id": 2}).json()
    assert [(v["run_id"], v["round"], v["best"], v["latest"]) for v in only] == [(2, 1, True, True)]
    assert "run 9" in _error(client.get("/api/v1/models?run_id=9"), 404)["detail"]
    assert _error(client.get("/api/v1/models?run_id=x"), 422)["fields"] == ["run_id"]


def test_a_runs_versions_best_and_latest(env: Env) -> None:
    client, _, _ = env
    run = client.get("/api/v1/models/1").json()
    assert (run["best_round"], run["latest_round"], run["keep_last"]) == (1, 4, 2)
    assert run["best"]["round"] == 1 and run["latest"]["round"] == 4
    assert [v["round"] for v in run["versions"]] == [1, 3, 4]
    body = _error(client.get("/api/v1/models/42"), 404)
    assert body["error"] == "not_found" and "run 42" in body["detail"]


def test_one_versions_metadata_by_number_best_or_latest(env: Env) -> None:
    client, store, _ = env
    assert client.get("/api/v1/models/1/rounds/best").json()["round"] == 1
    assert client.get("/api/v1/models/1/rounds/latest").json()["round"] == 4
    three = client.get("/api/v1/models/1/rounds/3").json()
    assert three["sha256"] == store.resolve(1, 3).sha256 and three["dataset"] == "digits"
    assert "pruned" in _error(client.get("/api/v1/models/1/rounds/2"), 404)["detail"]
    assert "initial model" in _error(client.get("/api/v1/models/1/rounds/0"), 404)["detail"]
    assert "run 8" in _error(client.get("/api/v1/models/8/rounds/best"), 404)["detail"]
    body = _error(client.get("/api/v1/models/1/rounds/newest"), 422)
    assert body["fields"] == ["round"] and "'best' or 'latest'" in body["detail"]
    assert _error(client.get("/api/v1/models/0"), 422)["fields"] == ["run_id"]


def test_checkpoint_download(env: Env) -> None:
    client, store, _ = env
    response = client.get("/api/v1/models/1/rounds/best/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert 'filename="run-1-round-0001.pt"' in response.headers["content-disposition"]
    expected = (store.run_dir(1) / "round-0001.pt").read_bytes()
    assert response.content == expected
    assert response.headers["x-model-sha256"] == hashlib.sha256(expected).hexdigest()
    assert int(response.headers["content-length"]) == len(expected)
    payload = torch.load(io.BytesIO(response.content), weights_only=True)
    assert payload["metadata"]["round"] == 1
    assert client.get("/api/v1/models/1/rounds/2/checkpoint").status_code == 404


def test_onnx_export_is_validated_cached_and_downloadable(env: Env) -> None:
    client, store, _ = env
    response = client.get("/api/v1/models/1/rounds/best/onnx")
    assert response.status_code == 200, response.text
    assert 'filename="run-1-round-0001.onnx"' in response.headers["content-disposition"]
    assert response.headers["x-model-sha256"] == hashlib.sha256(response.content).hexdigest()
    assert response.headers["x-onnx-opset"] == "18"
    assert response.headers["x-validation-samples"] == "360"
    torch_acc = float(response.headers["x-torch-accuracy"])
    assert float(response.headers["x-onnx-accuracy"]) == pytest.approx(torch_acc, abs=0.005)
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.zeros((3, 1, 28, 28), np.float32)})
    assert out.shape == (3, 10)
    assert store.onnx_path(1, 1).read_bytes() == response.content  # cached beside the .pt
    meta = client.get("/api/v1/models/1/rounds/1").json()
    assert meta["onnx"]["sha256"] == response.headers["x-model-sha256"]
    assert meta["onnx"]["torch_accuracy"] == pytest.approx(torch_acc, abs=1e-6)
    again = client.get("/api/v1/models/1/rounds/1/onnx")
    assert again.content == response.content


def test_onnx_export_of_an_older_checkpoint_takes_the_dataset_from_the_registry(
    env: Env,
) -> None:
    client, _, _ = env
    response = client.get("/api/v1/models/2/rounds/1/onnx")
    assert response.status_code == 200, response.text
    assert response.headers["x-validation-samples"] == "360"  # the digits test split


def test_onnx_validation_failure_is_409_with_both_accuracies(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store, _ = env
    labels = load_dataset("digits", "test").labels

    def perfect_runtime(_session: object, _images: np.ndarray) -> np.ndarray:
        return labels  # ONNX Runtime "answers" differently from torch

    monkeypatch.setattr(onnx_export, "_onnx_predictions", perfect_runtime)
    body = _error(client.get("/api/v1/models/1/rounds/latest/onnx"), 409)
    assert body["error"] == "onnx_validation_failed" and body["onnx_accuracy"] == 1.0
    assert body["torch_accuracy"] < 0.5 and body["samples"] == 360
    assert f"{body['torch_accuracy']:.4f}" in body["detail"] and "1.0000" in body["detail"]
    assert not store.onnx_path(1, 4).exists() and not store.onnx_record_path(1, 4).exists()


def test_onnx_export_without_the_test_set_says_what_is_missing(env: Env) -> None:
    client, store, tmp_path = env
    body = _error(client.get("/api/v1/models/3/rounds/1/onnx"), 503)
    assert "fashion-mnist" in body["detail"] and "dataset-fashion-mnist" in body["detail"]
    assert str(tmp_path / "none") in body["detail"]
    assert not store.onnx_path(3, 1).exists()
