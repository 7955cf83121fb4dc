"""FleetFedAvg and its siblings: Flower's strategies with the fleet's way of running a round.

``FleetRounds`` is mixed in before a Flower strategy class: a bounded wait for the devices,
screening of the updates before aggregation (``UpdateScreening``), and a record of who
trained, who was rejected and what the round measured. The aggregation itself stays
Flower's: ``FleetFedAvg`` (FedAvg), ``FleetFedMedian``, ``FleetFedTrimmedAvg``, ``FleetKrum``
and ``FleetCentralDp`` (Flower's server-side fixed-clipping DP wrapper around a FedAvg).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from fl_coordinator.errors import NotEnoughDevices
from fl_coordinator.fast_grid import FastGrid
from fl_coordinator.privacy_ledger import PrivacyLedger
from fl_coordinator.round_selection import RoundSelection, finite_or_none, metric_number
from fl_coordinator.update_screening import DEVICE_RECORD, WEIGHT_KEY, UpdateScreening
from fl_shared.wire import DeviceRoundResult, RejectedUpdate, SelectionDecision

__all__ = [
    "DEVICE_RECORD",
    "FleetCentralDp",
    "FleetFedAvg",
    "FleetFedMedian",
    "FleetFedTrimmedAvg",
    "FleetKrum",
    "FleetRounds",
    "device_results",
    "wait_for_nodes",
]

log = structlog.get_logger(__name__)


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
                num_examples=int(metric_number(metrics.get("num-examples"), 0)),
                train_loss=finite_or_none(metrics.get("train-loss")),
                train_seconds=metric_number(metrics.get("train-seconds"), 0.0),
            )
        )
    return results


class FleetRounds(Strategy):
    """The fleet's round over the Flower strategy it is mixed in before.

    After a bounded wait for ``min_devices`` connected devices, a ``RoundSelection`` (when
    given) picks the round's devices with the run's policy (random, oort, capability);
    without one every connected device is sent the model. With over-commit the round stops
    waiting once ``devices_per_round`` updates came. Replies are screened before the
    strategy aggregates them; the round's devices, rejections, selection decisions and
    metrics are kept for its report (``RoundRecorder``). Its ``super()`` calls reach the
    Flower class mixed in after it (mypy sees only the abstract Strategy).
    """

    def __init__(
        self,
        *,
        min_devices: int,
        device_wait_timeout_s: float,
        screening: UpdateScreening | None = None,
        privacy: PrivacyLedger | None = None,
        run_id: int | None = None,
        selection: RoundSelection | None = None,
        **kwargs: object,
    ) -> None:
        if isinstance(self, FedAvg):  # train on every device, and on no fewer than min_devices
            kwargs = {"min_train_nodes": min_devices, "min_available_nodes": min_devices, **kwargs}
        super().__init__(**kwargs)
        self.min_devices = min_devices
        self.device_wait_timeout_s = device_wait_timeout_s
        self.screening = screening if screening is not None else UpdateScreening()
        self.privacy = privacy
        self.run_id = run_id
        self.selection = selection
        self.round_selection: list[SelectionDecision] = []
        self._grid: Grid | None = None
        self.round_started = time.monotonic()
        self.round_devices: list[DeviceRoundResult] = []
        self.round_rejected: list[RejectedUpdate] = []
        self.round_train_metrics: MetricRecord | None = None
        self.round_evaluate_metrics: MetricRecord | None = None
        self._round_arrays = ArrayRecord()

    def _averaging(self) -> FedAvg | None:
        """The FedAvg-family strategy doing the work (this one, or the one a wrapper wraps)."""
        if isinstance(self, FedAvg):
            return self
        inner = getattr(self, "strategy", None)
        return inner if isinstance(inner, FedAvg) else None

    def summary(self) -> None:
        """Log the fleet's settings, then Flower's summary of the strategy."""
        log.info(
            "strategy_settings",
            strategy=type(self).__name__,
            min_devices=self.min_devices,
            screening_mad_k=self.screening.mad_k,
            screening_max_norm=self.screening.max_norm,
            privacy=None if self.privacy is None else self.privacy.mechanism,
        )
        super().summary()  # type: ignore[safe-super]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Wait (bounded) for enough devices, then send every one of them the model."""
        self.round_started = time.monotonic()
        self.round_devices = []
        self.round_rejected = []
        self.round_train_metrics = None
        self.round_evaluate_metrics = None
        self._round_arrays = arrays  # what the updates are measured against
        self.round_selection = []
        self._grid = grid
        wait_for_nodes(grid, self.min_devices, self.device_wait_timeout_s)
        if self.selection is None:
            messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[safe-super]
        else:
            messages = self._configure_selected(server_round, arrays, config, grid, self.selection)
        if self.privacy is not None and messages:
            self.privacy.round_sent()
        return messages

    def _configure_selected(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        selection: RoundSelection,
    ) -> list[Message]:
        """Messages for the selected devices only: the Flower strategy samples all of them."""
        chosen = selection.choose(server_round, grid.get_node_ids)
        self.round_selection = list(selection.decisions)
        view = FastGrid(grid)
        view.restrict_to(chosen)
        target = selection.target
        if target is not None and isinstance(grid, FastGrid) and target < len(chosen):
            grid.expect_replies(target)  # over-commit: aggregate the first `target` updates
        averaging = self._averaging()
        if averaging is None:
            return list(super().configure_train(server_round, arrays, config, view))  # type: ignore[safe-super]
        saved = (averaging.fraction_train, averaging.min_train_nodes, averaging.min_available_nodes)
        averaging.fraction_train = 1.0
        averaging.min_train_nodes = averaging.min_available_nodes = len(chosen)
        try:
            return list(super().configure_train(server_round, arrays, config, view))  # type: ignore[safe-super]
        finally:
            (
                averaging.fraction_train,
                averaging.min_train_nodes,
                averaging.min_available_nodes,
            ) = saved

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screen the updates, then aggregate the kept ones as the Flower strategy does."""
        replies = list(replies)
        failed = [msg for msg in replies if msg.has_error()]
        screened = self.screening.screen(replies, self._round_arrays)
        self.round_rejected = screened.rejected
        for rejection in screened.rejected:
            log.warning(
                "update_rejected",
                run_id=self.run_id,
                round=server_round,
                device_id=rejection.device_id,
                node_id=rejection.node_id,
                reason=rejection.reason,
                norm=rejection.norm,
                limit=rejection.limit,
                detail=rejection.detail,
            )
        self.round_devices = device_results(screened.kept)
        if self.selection is not None:
            grid = self._grid
            self.selection.learn(
                server_round,
                replies,
                rejected=[r.device_id for r in screened.rejected],
                reply_seconds=grid.reply_seconds if isinstance(grid, FastGrid) else {},
            )
        arrays, metrics = self._aggregate(server_round, screened.kept, failed)
        self.round_train_metrics = metrics
        log.info(
            "round_trained",
            round=server_round,
            devices=[d.device_id for d in self.round_devices],
            failures=len(failed),
            rejected=[r.device_id for r in screened.rejected],
        )
        return arrays, metrics

    def _aggregate(
        self, server_round: int, kept: list[Message], failed: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Hand the kept replies to the Flower strategy (the failures too: it logs them)."""
        if not kept:
            return None, None  # the global model stays as it is
        return super().aggregate_train(server_round, [*kept, *failed])  # type: ignore[safe-super]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation (when enabled) with the same bounded wait as training."""
        averaging = self._averaging()
        if averaging is not None and averaging.fraction_evaluate > 0:
            wait_for_nodes(grid, averaging.min_evaluate_nodes, self.device_wait_timeout_s)
        return super().configure_evaluate(server_round, arrays, config, grid)  # type: ignore[safe-super]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate as the strategy does, remembering the result for the round's report."""
        metrics = super().aggregate_evaluate(server_round, replies)  # type: ignore[safe-super]
        self.round_evaluate_metrics = metrics
        return metrics


class FleetFedAvg(FleetRounds, FedAvg):
    """FedAvg (mean weighted by examples) over every connected device, updates screened."""


class FleetFedMedian(FleetRounds, FedMedian):
    """Coordinate-wise median of the screened updates (Yin et al., 2018)."""


class FleetFedTrimmedAvg(FleetRounds, FedTrimmedAvg):
    """Coordinate-wise mean without the ``beta`` largest and smallest values (Yin et al.)."""


class FleetKrum(FleetRounds, Krum):
    """The one update closest to its n - f - 2 nearest others (Blanchard et al., 2017)."""

    def _aggregate(
        self, server_round: int, kept: list[Message], failed: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        needed = 2 * self.num_malicious_nodes + 3
        if 0 < len(kept) < needed:
            # Krum still picks one update, but no longer tolerates f poisoned ones.
            log.warning(
                "krum_below_tolerance",
                run_id=self.run_id,
                round=server_round,
                updates=len(kept),
                needed=needed,
                malicious_devices=self.num_malicious_nodes,
            )
        return super()._aggregate(server_round, kept, failed)


class FleetCentralDp(FleetRounds, DifferentialPrivacyServerSideFixedClipping):
    """Central DP: Flower's server-side fixed clipping and Gaussian noise around a FedAvg.

    The kept updates are clipped to ``clipping_norm``, averaged *unweighted* and noised with
    std ``noise_multiplier * clipping_norm / n`` for the n updates actually averaged, so one
    device moves the sum by at most the clipping norm whatever the others do. Failed and
    rejected replies are left out first (Flower's wrapper would skip the whole round).
    """

    def __init__(
        self,
        *,
        strategy: FedAvg,
        noise_multiplier: float,
        clipping_norm: float,
        min_devices: int,
        device_wait_timeout_s: float,
        screening: UpdateScreening | None = None,
        privacy: PrivacyLedger | None = None,
        run_id: int | None = None,
        selection: RoundSelection | None = None,
    ) -> None:
        super().__init__(
            min_devices=min_devices,
            device_wait_timeout_s=device_wait_timeout_s,
            screening=screening,
            privacy=privacy,
            run_id=run_id,
            selection=selection,
            strategy=strategy,
            noise_multiplier=noise_multiplier,
            clipping_norm=clipping_norm,
            num_sampled_clients=min_devices,
        )

    def _aggregate(
        self, server_round: int, kept: list[Message], failed: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not kept:
            return None, None  # nothing released, no budget spent
        for msg in kept:
            # Equal weights: a device claiming many examples must not outweigh the noise.
            next(iter(msg.content.metric_records.values()))[WEIGHT_KEY] = 1
        self.num_sampled_clients = len(kept)  # the noise is calibrated to what is averaged
        arrays, metrics = super()._aggregate(server_round, kept, [])
        if arrays is not None and self.privacy is not None:
            self.privacy.aggregate_released()
        return arrays, metrics
