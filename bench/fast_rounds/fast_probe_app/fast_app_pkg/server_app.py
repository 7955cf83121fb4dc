"""bench/plain_app's ServerApp, with send_and_receive polling through FastGrid (issue 3)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fast_app_pkg.fast_grid import FastGrid
from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.training import evaluate

app = ServerApp()


def _write_json(path: Path, payload: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg for num-rounds; evaluate_fn stamps time.time() for round 0..num-rounds."""
    cfg = context.run_config
    timings_file = Path(str(cfg["timings-file"])) if cfg["timings-file"] else None
    torch.manual_seed(int(cfg["seed"]))
    model = create_model(str(cfg["model"]), 10)
    test_data = load_dataset(str(cfg["dataset"]), "test")
    rounds: list[dict[str, float]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        result = evaluate(model, test_data)
        rounds.append(
            {
                "round": server_round,
                "time": time.time(),
                "eval-loss": result.loss,
                "eval-accuracy": result.accuracy,
            }
        )
        if timings_file is not None:
            _write_json(timings_file, {"rounds": rounds})
        return MetricRecord({"eval-loss": result.loss, "eval-accuracy": result.accuracy})

    strategy = FedAvg(
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_available_nodes=int(cfg["min-available-nodes"]),
    )
    strategy.start(
        grid=FastGrid(grid),  # type: ignore[arg-type]
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(cfg["num-rounds"]),
        timeout=float(cfg["round-timeout"]),
        evaluate_fn=evaluate_fn,
    )
