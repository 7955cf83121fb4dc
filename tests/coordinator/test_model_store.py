"""Checkpoints: atomic, with metadata, loadable into the right architecture."""

from __future__ import annotations

from pathlib import Path

import torch

from fl_coordinator.model_store import ModelStore
from fl_shared.models import create_model


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
    assert [p.name for p in path.parent.iterdir()] == ["round-0002.pt"]  # no temp files left
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
        path = store.save(
            run_id=1,
            server_round=1,
            architecture="cnn",
            num_classes=10,
            state_dict=create_model("cnn").state_dict(),
            metrics={"eval-accuracy": accuracy},
        )
    _model, meta = ModelStore.load(path)
    assert meta["metrics"]["eval-accuracy"] == 0.9
