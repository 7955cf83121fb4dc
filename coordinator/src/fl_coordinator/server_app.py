"""The fleet's Flower ServerApp (Message API): training over enrolled devices, per-round records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from fl_coordinator.aggregation_choice import AggregationChoice
from fl_coordinator.device_wake_up import wake_up_devices
from fl_coordinator.errors import NotEnoughDevices
from fl_coordinator.fast_grid import FastGrid
from fl_coordinator.fleet_strategy import wait_for_nodes
from fl_coordinator.model_store import ModelStore
from fl_coordinator.round_recorder import RoundRecorder
from fl_coordinator.round_selection import RoundSelection, SelectionSettings
from fl_coordinator.run_reporter import RunReporter
from fl_coordinator.telemetry import configure_tracing
from fl_shared.datasets import load_dataset
from fl_shared.errors import DatasetUnavailableError
from fl_shared.models import create_model

NUM_CLASSES = 10
# How long a run waits for its devices to answer the wake-up query before round 1.
WAKE_UP_TIMEOUT_S = 15.0

app = ServerApp()
log = structlog.get_logger(__name__)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run one training run and report every step of it to the coordinator."""
    cfg = context.run_config
    run_id = int(cfg["registry-run-id"])
    ca_file = str(cfg.get("coordinator-ca-file", ""))
    reporter = RunReporter(
        str(cfg["coordinator-url"]),
        run_id,
        Path(str(cfg["report-token-file"])),
        ca_file=Path(ca_file) if ca_file else None,
    )
    try:
        final = _train(grid, context, reporter)
        reporter.status("completed", "" if final is None else f"final accuracy {final:.4f}")
    except NotEnoughDevices as exc:
        reporter.status("failed", str(exc))
    except DatasetUnavailableError as exc:
        reporter.status("failed", f"evaluation data unavailable on the coordinator: {exc}")
    except Exception as exc:
        reporter.status("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.close()
        configure_tracing().force_flush()  # this process ends with the run


def _train(grid: Grid, context: Context, reporter: RunReporter) -> float | None:
    cfg = context.run_config
    run_id = int(cfg["registry-run-id"])
    min_devices = int(cfg["min-devices"])
    wait_timeout = float(cfg["device-wait-timeout"])
    architecture = str(cfg["model"])
    reporter.status("running", f"waiting for {min_devices} devices")
    node_ids = wait_for_nodes(grid, min_devices, wait_timeout)
    grid = FastGrid(grid)
    devices = wake_up_devices(grid, node_ids, min(WAKE_UP_TIMEOUT_S, wait_timeout))
    _keep_to_eligible_devices(grid, devices, reporter, min_devices)
    reporter.status("running", "training")
    selection_settings = SelectionSettings.from_run_config(cfg)

    torch.manual_seed(int(cfg["seed"]))
    model = create_model(architecture, NUM_CLASSES)
    # A resumed run starts from its last checkpoint and continues the round numbering.
    resumed_from = int(cfg.get("resume-from-round", 0))
    if resumed_from > 0:
        model, _meta = ModelStore.load(Path(str(cfg["resume-checkpoint"])))
        log.info("run_resumed", run_id=run_id, from_round=resumed_from)
    data_dir = str(cfg["server-data-dir"]) or None
    test_data = load_dataset(str(cfg["dataset"]), "test", data_dir=data_dir)
    # FedAvg, a robust aggregation or central DP, with screened updates (robust-training.md).
    # The run's selection policy picks each round's devices (docs/device-selection.md).
    selection = RoundSelection(
        settings=selection_settings,
        devices=devices,
        candidates=reporter.candidates,
        min_devices=min_devices,
        wait_timeout_s=wait_timeout,
        model_bytes=sum(t.numel() * t.element_size() for t in model.parameters()),
    )
    strategy = AggregationChoice.from_run_config(cfg).build(
        min_devices=min_devices,
        device_wait_timeout_s=wait_timeout,
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        run_id=run_id,
        prior_releases=resumed_from,
        selection=selection,
    )
    recorder = RoundRecorder(
        run_id=run_id,
        architecture=architecture,
        num_classes=NUM_CLASSES,
        model=model,
        test_data=test_data,
        strategy=strategy,
        store=model_store_for(cfg),
        reporter=reporter,
        dataset=str(cfg["dataset"]),
        data_dir=data_dir,
        round_offset=resumed_from,
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(cfg["num-rounds"]) - resumed_from,
        timeout=float(cfg["round-timeout"]),
        train_config=ConfigRecord({}),
        evaluate_fn=recorder,
    )
    return recorder.reports[-1].eval_accuracy if recorder.reports else None


def model_store_for(run_config: Mapping[str, bool | float | int | str]) -> ModelStore:
    """The run's model store, with the coordinator's retention setting (model_keep_last)."""
    return ModelStore(
        Path(str(run_config["model-store"])), keep_last=int(run_config["model-keep-last"])
    )


def _keep_to_eligible_devices(
    grid: FastGrid, devices: dict[int, str], reporter: RunReporter, min_devices: int
) -> None:
    """Train only on devices the registry allows (not drained/revoked, the run's labels)."""
    eligible = reporter.eligible_devices()
    if eligible is None:
        return  # registry unreachable: Flower's view of the fleet stands
    allowed = [node for node, device in devices.items() if device in eligible]
    log.info("devices_selected", eligible=len(allowed), answered=len(devices))
    if len(allowed) < min_devices:
        raise NotEnoughDevices(
            f"only {len(allowed)} of the connected devices may take part (not drained or "
            f"revoked, with the run's target labels); the run needs {min_devices}: undrain "
            "devices, label more of them, or lower min_devices"
        )
    grid.restrict_to(allowed)
