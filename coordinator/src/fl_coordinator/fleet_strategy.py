"""FleetFedAvg: FedAvg with a bounded wait for devices and a record of who trained."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import structlog
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fl_coordinator.errors import NotEnoughDevices
from fl_shared.wire import DeviceRoundResult

log = structlog.get_logger(__name__)

DEVICE_RECORD = "device"


def wait_for_nodes(
    grid: Grid,
    needed: int,
    timeout_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 0.5,
) -> list[int]:
    """Return the connected node ids once ``needed`` are there; NotEnoughDevices after timeout.

    Flower's own sampling waits forever for its minimum; a run must fail visibly instead.
    """
    deadline = clock() + timeout_s
    while True:
        node_ids = list(grid.get_node_ids())
        if len(node_ids) >= needed:
            return node_ids
        if clock() >= deadline:
            raise NotEnoughDevices(
                f"only {len(node_ids)} of the {needed} devices this run needs connected "
                f"within {timeout_s:.0f} s: start more agents or lower min_devices"
            )
        sleep(poll_s)


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _finite(value: object) -> float | None:
    number = _number(value, math.nan)
    return number if math.isfinite(number) else None


def device_results(replies: Iterable[Message]) -> list[DeviceRoundResult]:
    """Who trained in a round, from the replies that carry content."""
    results = []
    for msg in replies:
        if msg.has_error():
            continue
        content = msg.content
        device = content.config_records.get(DEVICE_RECORD, ConfigRecord())
        metrics = next(iter(content.metric_records.values()), MetricRecord())
        results.append(
            DeviceRoundResult(
                device_id=str(device.get("device-id", "")),
                node_id=int(msg.metadata.src_node_id),
                num_examples=int(_number(metrics.get("num-examples"), 0)),
                train_loss=_finite(metrics.get("train-loss")),
                train_seconds=_number(metrics.get("train-seconds"), 0.0),
            )
        )
    return results


class FleetFedAvg(FedAvg):
    """FedAvg over every connected device, failing a round that waits too long for them."""

    def __init__(self, *, min_devices: int, device_wait_timeout_s: float, **kwargs: object):
        super().__init__(
            min_train_nodes=min_devices,
            min_available_nodes=min_devices,
            **kwargs,  # type: ignore[arg-type]
        )
        self.min_devices = min_devices
        self.device_wait_timeout_s = device_wait_timeout_s
        self.round_started = time.monotonic()
        self.round_devices: list[DeviceRoundResult] = []
        self.round_train_metrics: MetricRecord | None = None
        self.round_evaluate_metrics: MetricRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Wait (bounded) for enough devices, then send every one of them the model."""
        self.round_started = time.monotonic()
        self.round_devices = []
        self.round_train_metrics = None
        self.round_evaluate_metrics = None
        wait_for_nodes(grid, self.min_devices, self.device_wait_timeout_s)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate as FedAvg does, remembering which devices contributed what."""
        replies = list(replies)
        self.round_devices = device_results(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.round_train_metrics = metrics
        log.info(
            "round_trained",
            round=server_round,
            devices=[d.device_id for d in self.round_devices],
            failures=sum(1 for m in replies if m.has_error()),
        )
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation (when enabled) with the same bounded wait as training."""
        if self.fraction_evaluate > 0:
            wait_for_nodes(grid, self.min_evaluate_nodes, self.device_wait_timeout_s)
        return super().configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate as FedAvg does, remembering the result for the round's report."""
        metrics = super().aggregate_evaluate(server_round, replies)
        self.round_evaluate_metrics = metrics
        return metrics
