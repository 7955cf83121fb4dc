"""RoundRecorder: after each round, evaluates the global model, checkpoints it and reports."""

from __future__ import annotations

import math
import time

import structlog
import torch
from flwr.app import ArrayRecord, MetricRecord, MetricRecordValues

from fl_coordinator.fleet_strategy import FleetRounds
from fl_coordinator.model_store import ModelStore
from fl_coordinator.run_reporter import RunReporter
from fl_shared.datasets import ArrayDataset
from fl_shared.training import evaluate
from fl_shared.wire import RoundReport

log = structlog.get_logger(__name__)


class RoundRecorder:
    """The ``evaluate_fn`` of a run: called with round 0 (initial model) and after each round."""

    def __init__(
        self,
        *,
        run_id: int,
        architecture: str,
        num_classes: int,
        model: torch.nn.Module,
        test_data: ArrayDataset | None,
        strategy: FleetRounds,
        store: ModelStore,
        reporter: RunReporter,
        dataset: str | None = None,
        data_dir: str | None = None,
        round_offset: int = 0,
    ) -> None:
        self._run_id = run_id
        self._architecture = architecture
        self._num_classes = num_classes
        self._model = model
        self._test = test_data
        self._strategy = strategy
        self._store = store
        self._reporter = reporter
        # Recorded with each checkpoint, so an ONNX export is validated on the same test set.
        self._dataset = dataset
        self._data_dir = data_dir
        # A resumed run continues the numbering: Flower's round r is the run's round r + offset.
        self._offset = round_offset
        self.reports: list[RoundReport] = []

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Evaluate, checkpoint and report one round; the MetricRecord goes to Flower's result."""
        if server_round == 0 and self._offset > 0:
            return None  # the resumed-from model: its round is on record already
        flower_round, server_round = server_round, server_round + self._offset
        state_dict = arrays.to_torch_state_dict()
        metrics: dict[str, float] = {}
        if self._test is not None:
            self._model.load_state_dict(state_dict)
            result = evaluate(self._model, self._test)
            metrics = {"eval-loss": result.loss, "eval-accuracy": result.accuracy}
        checkpoint = None
        if flower_round > 0:
            train = self._strategy.round_train_metrics
            train_loss = train.get("train-loss") if train is not None else None
            if isinstance(train_loss, float) and math.isfinite(train_loss):
                metrics["train-loss"] = train_loss
            checkpoint = str(
                self._store.save(
                    run_id=self._run_id,
                    server_round=server_round,
                    architecture=self._architecture,
                    num_classes=self._num_classes,
                    state_dict=state_dict,
                    metrics=metrics,
                    dataset=self._dataset,
                    data_dir=self._data_dir,
                )
            )
        federated = self._strategy.round_evaluate_metrics if flower_round > 0 else None
        report = RoundReport(
            round=server_round,
            devices=self._strategy.round_devices if flower_round > 0 else [],
            train_loss=metrics.get("train-loss"),
            eval_loss=metrics.get("eval-loss"),
            eval_accuracy=metrics.get("eval-accuracy"),
            federated_eval_loss=_metric(federated, "eval-loss"),
            federated_eval_accuracy=_metric(federated, "eval-accuracy"),
            seconds=time.monotonic() - self._strategy.round_started if flower_round > 0 else 0.0,
            checkpoint=checkpoint,
            rejected_updates=self._strategy.round_rejected if flower_round > 0 else [],
            privacy=None if self._strategy.privacy is None else self._strategy.privacy.spent(),
            selection=self._strategy.round_selection if flower_round > 0 else [],
        )
        self.reports.append(report)
        self._reporter.round(report)
        log.info(
            "round_recorded",
            run_id=self._run_id,
            **report.model_dump(exclude={"devices", "rejected_updates", "privacy", "selection"}),
            rejected=len(report.rejected_updates),
            epsilon=None if report.privacy is None else report.privacy.epsilon,
        )
        return MetricRecord(dict[str, MetricRecordValues](metrics)) if metrics else None


def _metric(record: MetricRecord | None, key: str) -> float | None:
    value = record.get(key) if record is not None else None
    return float(value) if isinstance(value, int | float) else None
