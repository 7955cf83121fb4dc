"""ServerApp: the platform's FleetFedAvg (which screens updates), printing each round's outcome."""

from __future__ import annotations

import math

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fl_coordinator.fast_grid import FastGrid
from fl_coordinator.fleet_strategy import FleetFedAvg, wait_for_nodes
from fl_shared.datasets import load_dataset
from fl_shared.models import create_model
from fl_shared.training import evaluate

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train an MLP on digits; print accuracy and the rejected updates after every round."""
    min_devices = int(context.run_config["min-devices"])
    wait_for_nodes(grid, min_devices, timeout_s=120)
    model = create_model("mlp", 10)
    test = load_dataset("digits", "test")
    strategy = FleetFedAvg(
        min_devices=min_devices, device_wait_timeout_s=120, fraction_evaluate=0.0
    )

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        result = evaluate(model, test)
        rejected = [f"{r.device_id}:{r.reason}" for r in strategy.round_rejected]
        trained = [d.device_id for d in strategy.round_devices]
        accuracy = result.accuracy if math.isfinite(result.loss) else float("nan")
        print(
            f"poison-test round {server_round} accuracy {accuracy:.4f} "
            f"trained {','.join(trained) or '-'} rejected {','.join(rejected) or '-'}",
            flush=True,
        )
        return MetricRecord({"accuracy": result.accuracy})

    strategy.start(
        grid=FastGrid(grid),
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(context.run_config["num-server-rounds"]),
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate_fn,
    )
