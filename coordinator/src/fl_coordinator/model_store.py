"""ModelStore: per-round checkpoints with metadata, written atomically."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import torch

from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.models import create_model


class ModelStore:
    """Checkpoints under ``<root>/run-<id>/round-<n>.pt``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def checkpoint_path(self, run_id: int, server_round: int) -> Path:
        """Where one round's checkpoint lives."""
        return self.root / f"run-{run_id}" / f"round-{server_round:04d}.pt"

    def save(
        self,
        *,
        run_id: int,
        server_round: int,
        architecture: str,
        num_classes: int,
        state_dict: dict[str, torch.Tensor],
        metrics: dict[str, float],
    ) -> Path:
        """Write one checkpoint; readers never see a partial file."""
        payload = {
            "model_state_dict": state_dict,
            "metadata": {
                "run_id": run_id,
                "round": server_round,
                "architecture": architecture,
                "num_classes": num_classes,
                "metrics": metrics,
                "created_at": time.time(),
                "framework": "pytorch",
            },
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = self.checkpoint_path(run_id, server_round)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @staticmethod
    def load(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Rebuild the model a checkpoint holds; returns it with the metadata."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta: dict[str, Any] = payload["metadata"]
        model = create_model(meta["architecture"], meta["num_classes"])
        model.load_state_dict(payload["model_state_dict"])
        return model, meta
