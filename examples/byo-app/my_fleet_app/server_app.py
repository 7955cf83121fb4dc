"""ServerApp: FedAvg with the platform's building blocks (bounded device wait, fast replies)."""

from __future__ import annotations

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
    """Train an MLP on digits across the fleet and print the accuracy after every round."""
    min_devices = int(context.run_config["min-devices"])
    wait_for_nodes(grid, min_devices, timeout_s=120)  # Flower's own wait never ends
    model = create_model("mlp", 10)
    test = load_dataset("digits", "test")

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        result = evaluate(model, test)
        print(f"example-app round {server_round} accuracy {result.accuracy:.4f}", flush=True)
        return MetricRecord({"accuracy": result.accuracy, "loss": result.loss})

    strategy = FleetFedAvg(
        min_devices=min_devices, device_wait_timeout_s=120, fraction_evaluate=0.0
    )
    strategy.start(
        grid=FastGrid(grid),
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(context.run_config["num-server-rounds"]),
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate_fn,
    )
