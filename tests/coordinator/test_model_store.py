"""ModelStore: atomic checkpoints, the per-run index, best tracking, retention, crash safety."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from fl_coordinator import model_store
from fl_coordinator.model_store import (
    CheckpointCorrupt,
    ModelNotFound,
    ModelStore,
    RunIndex,
)
from fl_shared.models import create_model

STATE = create_model("mlp").state_dict()


class Crash(BaseException):
    """Stands for the process dying at that point (not an error anyone handles)."""


def _save(store: ModelStore, run_id: int, server_round: int, accuracy: float | None) -> Path:
    metrics = {"eval-loss": 1.0 - (accuracy or 0.0), "train-loss": 0.5}
    if accuracy is not None:
        metrics["eval-accuracy"] = accuracy
    return store.save(
        run_id=run_id,
        server_round=server_round,
        architecture="mlp",
        num_classes=10,
        state_dict=STATE,
        metrics=metrics,
        dataset="digits",
        data_dir="/data/digits",
    )


def _on_disk(store: ModelStore, run_id: int) -> set[str]:
    return {p.name for p in store.run_dir(run_id).iterdir()}


def _index_file(store: ModelStore, run_id: int) -> RunIndex:
    return RunIndex.model_validate_json(store.index_path(run_id).read_bytes())


def _assert_consistent(store: ModelStore, run_id: int) -> RunIndex:
    """Every file the index names exists and has the recorded sha256."""
    index = _index_file(store, run_id)
    for version in index.versions:
        data = (store.run_dir(run_id) / version.checkpoint).read_bytes()
        assert hashlib.sha256(data).hexdigest() == version.sha256, version.checkpoint
    assert index.latest_round == max(v.round for v in index.versions)
    return index


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mlp")
    store = ModelStore(tmp_path)
    path = store.save(
        run_id=3,
        server_round=2,
        architecture="mlp",
        num_classes=10,
        state_dict=model.state_dict(),
        metrics={"eval-accuracy": 0.5},
    )
    assert path == tmp_path / "run-3" / "round-0002.pt"
    assert _on_disk(store, 3) == {"round-0002.pt", "index.json"}  # no temp files left
    loaded, meta = ModelStore.load(path)
    assert meta["run_id"] == 3 and meta["round"] == 2 and meta["architecture"] == "mlp"
    assert meta["metrics"] == {"eval-accuracy": 0.5}
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    loaded.eval()
    assert torch.allclose(model(x), loaded(x))


def test_overwrite_keeps_a_whole_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for accuracy in (0.1, 0.9):
        path = _save(store, 1, 1, accuracy)
    _model, meta = ModelStore.load(path)
    assert meta["metrics"]["eval-accuracy"] == 0.9
    assert [v.eval_accuracy for v in store.index(1).versions] == [0.9]


def test_index_holds_the_metadata_and_listing_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    path = _save(store, 7, 1, 0.75)
    raw = json.loads(store.index_path(7).read_text())
    (entry,) = raw["versions"]
    assert entry["run_id"] == 7 and entry["round"] == 1
    assert (entry["architecture"], entry["num_classes"]) == ("mlp", 10)
    assert (entry["dataset"], entry["data_dir"]) == ("digits", "/data/digits")
    assert entry["metrics"] == {"eval-accuracy": 0.75, "eval-loss": 0.25, "train-loss": 0.5}
    assert (entry["eval_accuracy"], entry["eval_loss"]) == (0.75, 0.25)
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["size_bytes"] == path.stat().st_size
    assert entry["created_at"].startswith("20") and entry["checkpoint"] == "round-0001.pt"
    assert (raw["best_round"], raw["latest_round"], raw["keep_last"]) == (1, 1, 3)

    def no_unpickling(*_a: Any, **_k: Any) -> None:
        raise AssertionError("listing must not load checkpoints")

    monkeypatch.setattr(torch, "load", no_unpickling)
    reader = ModelStore(tmp_path)  # another process: the REST API
    assert [(v.run_id, v.round) for v in reader.versions()] == [(7, 1)]
    assert reader.resolve(7, "best").sha256 == entry["sha256"]


def test_non_finite_metrics_stay_out_of_the_index(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save(
        run_id=1,
        server_round=1,
        architecture="mlp",
        num_classes=10,
        state_dict=STATE,
        metrics={"eval-accuracy": 0.2, "eval-loss": float("nan")},
    )
    version = _index_file(store, 1).versions[0]
    assert version.metrics == {"eval-accuracy": 0.2} and version.eval_loss is None


def test_best_is_the_highest_accuracy_and_ties_go_to_the_later_round(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, keep_last=10)
    for server_round, accuracy in enumerate([0.5, 0.7, 0.7, 0.6], start=1):
        _save(store, 1, server_round, accuracy)
    index = store.index(1)
    assert (index.best_round, index.latest_round) == (3, 4)
    assert store.resolve(1, "best").round == 3
    assert store.resolve(1, "latest").round == 4


def test_no_evaluation_means_no_best(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    _save(store, 1, 1, None)
    assert store.index(1).best_round is None
    with pytest.raises(ModelNotFound, match="no evaluated round"):
        store.resolve(1, "best")
    assert store.resolve(1, "latest").round == 1


def test_retention_keeps_the_best_and_the_last_n(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, keep_last=2)
    for server_round, accuracy in enumerate([0.9, 0.1, 0.2, 0.3], start=1):
        if server_round == 2:  # an ONNX export of round 2 went into the cache meanwhile
            (store.onnx_path(1, 2)).write_bytes(b"onnx")
            (store.onnx_record_path(1, 2)).write_text("{}")
        _save(store, 1, server_round, accuracy)
    _save(store, 1, 5, 0.4)
    index = _assert_consistent(store, 1)
    assert [v.round for v in index.versions] == [1, 4, 5]
    assert _on_disk(store, 1) == {"index.json", "round-0001.pt", "round-0004.pt", "round-0005.pt"}
    with pytest.raises(ModelNotFound, match=r"round 2 \(it was pruned.*stored rounds: 1, 4, 5"):
        store.resolve(1, 2)
    with pytest.raises(ModelNotFound, match="round 0 is the initial model"):
        store.resolve(1, 0)
    with pytest.raises(ModelNotFound, match="latest checkpoint is round 5"):
        store.resolve(1, 9)


@pytest.mark.parametrize("seed", range(6))
def test_retention_never_deletes_the_best_or_the_latest(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    keep_last = rng.randint(1, 3)
    store = ModelStore(tmp_path, keep_last=keep_last)
    seen: list[tuple[float, int]] = []
    for server_round in range(1, 13):
        accuracy = rng.choice([0.1, 0.2, 0.3, 0.4, 0.5])  # few values: many ties
        seen.append((accuracy, server_round))
        _save(store, 1, server_round, accuracy)
        index = _assert_consistent(store, 1)
        best = max(seen)[1]
        rounds = [v.round for v in index.versions]
        assert index.best_round == best and best in rounds
        assert index.latest_round == server_round and server_round in rounds
        assert set(rounds) == {best, *range(max(1, server_round - keep_last + 1), server_round + 1)}
        assert {f for f in _on_disk(store, 1) if f.endswith(".pt")} == {
            v.checkpoint for v in index.versions
        }


def test_a_crash_before_the_index_is_written_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path, keep_last=1)
    _save(store, 1, 1, 0.9)
    _save(store, 1, 2, 0.5)
    real_write = model_store.atomic_write_bytes

    def crash_on_index(path: Path, data: bytes, mode: int = 0o644) -> None:
        if path.name == "index.json":
            raise Crash
        real_write(path, data, mode)

    monkeypatch.setattr(model_store, "atomic_write_bytes", crash_on_index)
    with pytest.raises(Crash):
        _save(store, 1, 3, 0.4)  # would prune round 2
    index = _assert_consistent(store, 1)  # the old index, and everything it names is there
    assert [v.round for v in index.versions] == [1, 2]
    assert "round-0003.pt" in _on_disk(store, 1)  # written, but not part of the store

    monkeypatch.setattr(model_store, "atomic_write_bytes", real_write)
    _save(store, 1, 4, 0.3)  # the next save sweeps what the crash left behind
    assert [v.round for v in _assert_consistent(store, 1).versions] == [1, 4]
    assert _on_disk(store, 1) == {"index.json", "round-0001.pt", "round-0004.pt"}


def test_a_crash_while_pruning_leaves_a_consistent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path, keep_last=1)
    _save(store, 1, 1, 0.9)
    _save(store, 1, 2, 0.5)

    def crash(_path: Path) -> None:
        raise Crash

    monkeypatch.setattr(ModelStore, "_delete", staticmethod(crash))
    with pytest.raises(Crash):
        _save(store, 1, 3, 0.4)
    index = _assert_consistent(store, 1)
    assert [v.round for v in index.versions] == [1, 3]  # round 2 already left the index
    assert "round-0002.pt" in _on_disk(store, 1)  # its file outlived the crash

    monkeypatch.undo()
    _save(store, 1, 4, 0.3)
    assert _on_disk(store, 1) == {"index.json", "round-0001.pt", "round-0004.pt"}


def test_a_damaged_or_missing_index_is_rebuilt_from_the_checkpoints(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, keep_last=5)
    for server_round, accuracy in [(1, 0.3), (2, 0.6), (3, 0.5)]:
        _save(store, 2, server_round, accuracy)
    expected = _index_file(store, 2)
    store.index_path(2).write_text('{"format": 1, "run_')  # torn by hand, not by us
    rebuilt = store.index(2)
    assert rebuilt.best_round == 2 and rebuilt.latest_round == 3
    assert [(v.round, v.sha256, v.dataset) for v in rebuilt.versions] == [
        (v.round, v.sha256, v.dataset) for v in expected.versions
    ]
    store.index_path(2).unlink()  # checkpoints from before the index existed
    assert [v.round for v in store.index(2).versions] == [1, 2, 3]
    _save(store, 2, 4, 0.1)  # the writer starts a fresh index from them
    assert [v.round for v in _assert_consistent(store, 2).versions] == [1, 2, 3, 4]


def test_unknown_run_and_bad_arguments(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.run_ids() == [] and store.versions() == []
    with pytest.raises(ModelNotFound, match="no stored models for run 4"):
        store.index(4)
    with pytest.raises(ValueError, match="keep_last must be at least 1"):
        ModelStore(tmp_path, keep_last=0)
    with pytest.raises(ValueError, match="only rounds >= 1"):
        _save(store, 1, 0, 0.1)


def test_a_changed_checkpoint_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = _save(store, 1, 1, 0.5)
    version = store.resolve(1, 1)
    model, meta = store.load_version(version)
    assert meta["dataset"] == "digits" and isinstance(model, torch.nn.Module)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorrupt, match="does not match the sha256"):
        store.load_version(version)
