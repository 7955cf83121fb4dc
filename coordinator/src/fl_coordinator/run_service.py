"""RunService: turns a run request into a Flower run and keeps its status in step."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import structlog

from fl_coordinator.errors import SuperLinkUnreachable
from fl_coordinator.flower_control import FlowerControl
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.wire import Run, RunRequest

log = structlog.get_logger(__name__)


def run_config_for(
    request: RunRequest, run_id: int, settings: CoordinatorSettings
) -> dict[str, Any]:
    """The Flower run config (kebab-case, as Flower apps expect) for one run.

    ClientApps on devices see this config too, so it carries no secret: the ServerApp's
    report token stays in a file on the coordinator host.
    """
    return {
        "model": request.model,
        "dataset": request.dataset,
        "partitioner": request.partitioner,
        "dirichlet-alpha": float(request.dirichlet_alpha),
        "num-rounds": request.num_rounds,
        "min-devices": request.min_devices,
        "local-epochs": request.local_epochs,
        "batch-size": request.batch_size,
        "learning-rate": float(request.learning_rate),
        "max-train-samples": request.max_train_samples,
        "fraction-evaluate": float(request.fraction_evaluate),
        "device-wait-timeout": float(request.device_wait_timeout_s),
        "round-timeout": float(request.round_timeout_s),
        "seed": request.seed,
        "registry-run-id": run_id,
        "coordinator-url": settings.api_url,
        "report-token-file": str(token_file(settings, run_id)),
        "model-store": str(settings.model_store_dir),
        "server-data-dir": str(settings.data_dir),
    }


def token_file(settings: CoordinatorSettings, run_id: int) -> Path:
    """Where a run's report token is kept (readable by the coordinator's user only)."""
    return settings.state_dir / "run-tokens" / f"run-{run_id}.token"


class RunService:
    """Starts runs and reconciles their status with the SuperLink's."""

    def __init__(
        self, registry: Registry, control: FlowerControl, settings: CoordinatorSettings
    ) -> None:
        self._registry = registry
        self._control = control
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_run(self, request: RunRequest) -> Run:
        """Record the run, hand it to the SuperLink, return it as it stands."""
        run_id, token = self._registry.create_run(request)
        path = token_file(self._settings, run_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(path, token.encode(), mode=0o600)
        try:
            flower_run_id = self._control.start_run(run_config_for(request, run_id, self._settings))
        except SuperLinkUnreachable as exc:
            self._registry.update_run_status(run_id, "failed", str(exc))
            raise
        log.info("run_submitted", run_id=run_id, flower_run_id=flower_run_id)
        return self._registry.set_flower_run_id(run_id, flower_run_id)

    def start(self) -> None:
        """Begin reconciling run status in the background."""
        self._thread = threading.Thread(target=self._loop, name="run-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.run_poll_interval_s):
            try:
                self.reconcile()
            except Exception:
                log.exception("run_reconcile_failed")

    def reconcile(self) -> None:
        """Carry the SuperLink's verdict over for runs whose ServerApp could not report it."""
        for run_id, flower_run_id in self._registry.active_runs():
            if flower_run_id is None:
                continue
            try:
                state = self._control.run_state(int(flower_run_id))
            except SuperLinkUnreachable:
                return
            if state is None or state.status != "finished":
                continue
            # A ServerApp reports completion itself; reaching here with anything but a
            # completed sub-status means it crashed or was stopped before it could.
            if state.sub_status == "completed":
                self._registry.update_run_status(run_id, "completed")
            elif state.sub_status == "stopped":
                self._registry.update_run_status(run_id, "stopped", state.details)
            else:
                detail = state.details or "the ServerApp failed; see the coordinator log"
                self._registry.update_run_status(run_id, "failed", detail)
            log.info("run_reconciled", run_id=run_id, flower_status=state.sub_status)
