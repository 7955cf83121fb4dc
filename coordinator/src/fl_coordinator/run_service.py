"""RunService: turns a run request into a Flower run and keeps its status in step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from fl_coordinator.aggregation_choice import run_config_entries
from fl_coordinator.errors import RunAlreadyFinished, SuperLinkUnreachable
from fl_coordinator.flower_control import FlowerControl
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings
from fl_coordinator.user_app import ConfigValue, check_overrides, inspect_app
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.wire import TERMINAL_RUN_STATUSES, Run, RunRequest

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
        # The CA the ServerApp trusts for its reports ("" in the development mode).
        "coordinator-ca-file": "" if settings.insecure else str(settings.pki_dir / "ca.crt"),
        "report-token-file": str(token_file(settings, run_id)),
        "model-store": str(settings.model_store_dir),
        "model-keep-last": settings.model_keep_last,
        "server-data-dir": str(settings.data_dir),
        # Aggregation, update screening and differential privacy (docs/robust-training.md).
        **run_config_entries(request),
        # Device selection per round (docs/device-selection.md); 0: every eligible device.
        "selection": request.selection,
        "devices-per-round": request.devices_per_round or 0,
        "overcommit": float(request.overcommit),
        "max-staleness-rounds": request.max_staleness_rounds,
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
        self.control = control  # the enrollment and revoke routes register nodes through it
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_run(self, request: RunRequest) -> Run:
        """Record the run, hand it to the SuperLink, return it as it stands."""
        run_id, token = self._registry.create_run(
            request, target_labels=request.target_labels, selection_policy=request.selection
        )
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

    def start_app_run(self, fab: bytes, overrides: dict[str, ConfigValue]) -> Run:
        """Run a user's own Flower App on the fleet (InvalidApp if it cannot be run)."""
        info = inspect_app(fab)
        check_overrides(info, overrides)
        run_id, _token = self._registry.create_run(RunRequest(), app_source=info.source)
        try:
            flower_run_id = self._control.start_fab(fab, dict(overrides))
        except SuperLinkUnreachable as exc:
            self._registry.update_run_status(run_id, "failed", str(exc))
            raise
        log.info("app_run_submitted", run_id=run_id, app=info.source, flower_run_id=flower_run_id)
        return self._registry.set_flower_run_id(run_id, flower_run_id)

    def resume_run(self, run_id: int, *, interrupted: bool = False) -> Run:
        """Continue an interrupted run from its last checkpoint, keeping its round numbering.

        ``interrupted``: the caller knows its ServerApp is gone (start-up recovery).
        """
        run = self._registry.get_run(run_id)
        if run.app_source != "builtin":
            raise RunAlreadyFinished(
                f"run {run_id} runs your own app ({run.app_source}): start it again instead"
            )
        if run.status == "completed":
            raise RunAlreadyFinished(f"run {run_id} completed: nothing to resume")
        if not interrupted and run.status not in TERMINAL_RUN_STATUSES and self._still_running(run):
            raise RunAlreadyFinished(f"run {run_id} is still running: nothing to resume")
        last, checkpoint = self._last_checkpoint(run)
        if last >= run.request.num_rounds:
            log.info("run_resume_not_needed", run_id=run_id, rounds=last)
            self._registry.reopen_run(run_id, last, "")
            return self._registry.update_run_status(
                run_id, "completed", f"all {last} rounds were recorded before it was interrupted"
            )
        detail = f"resuming from round {last}" if last else "restarting from the initial model"
        self._registry.reopen_run(run_id, last, detail)
        config = run_config_for(run.request, run_id, self._settings)
        if last:
            config |= {"resume-from-round": last, "resume-checkpoint": str(checkpoint)}
        try:
            flower_run_id = self._control.start_run(config)
        except SuperLinkUnreachable as exc:
            self._registry.update_run_status(run_id, "failed", str(exc))
            raise
        log.info("run_resumed", run_id=run_id, from_round=last, flower_run_id=flower_run_id)
        return self._registry.set_flower_run_id(run_id, flower_run_id)

    def recover_interrupted(self, *, resume: bool) -> None:
        """At start-up: runs that were going when we went down resume (or are marked failed).

        The coordinator has just started its own SuperLink (it refuses to start while an old
        one holds the port), so every ServerApp of before is gone, even where the SuperLink's
        database still says "running" until its task heartbeat times out: such a Flower run
        is stopped first.
        """
        for run_id, flower_run_id in self._registry.active_runs():
            state = None
            if flower_run_id is not None:
                try:
                    state = self._control.run_state(int(flower_run_id))
                    if state is not None and state.status != "finished":
                        self._control.stop_run(int(flower_run_id))
                        state = None
                except SuperLinkUnreachable:
                    return
            if state is not None and state.sub_status == "completed":
                self._registry.update_run_status(run_id, "completed")
                continue
            run = self._registry.get_run(run_id)
            if resume and run.app_source == "builtin":
                try:
                    self.resume_run(run_id, interrupted=True)
                    continue
                except (RunAlreadyFinished, SuperLinkUnreachable) as exc:
                    log.warning("run_resume_failed", run_id=run_id, error=str(exc))
            self._registry.update_run_status(
                run_id,
                "failed",
                f"interrupted when the coordinator stopped; `flctl runs resume {run_id}` "
                "continues it from its last checkpoint",
            )

    def _still_running(self, run: Run) -> bool:
        if run.flower_run_id is None:
            return False
        state = self._control.run_state(int(run.flower_run_id))
        return state is not None and state.status != "finished"

    def _last_checkpoint(self, run: Run) -> tuple[int, Path | None]:
        """The latest round whose checkpoint is still on disk (0, None: none)."""
        for report in sorted(run.rounds, key=lambda r: r.round, reverse=True):
            if report.round > 0 and report.checkpoint and Path(report.checkpoint).is_file():
                return report.round, Path(report.checkpoint)
        return 0, None

    def stop_run(self, run_id: int) -> Run:
        """Stop a run that has not ended (RunAlreadyFinished otherwise); returns it stopped."""
        run = self._registry.get_run(run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            raise RunAlreadyFinished(f"run {run_id} already ended ({run.status}): nothing to stop")
        self._registry.request_run_stop(run_id)
        if run.flower_run_id is not None:
            self._control.stop_run(int(run.flower_run_id))
        log.info("run_stop_requested", run_id=run_id, flower_run_id=run.flower_run_id)
        return self._registry.update_run_status(run_id, "stopped", "stopped on request")

    def run_logs(self, run_id: int, *, follow: bool = False) -> Iterator[str]:
        """The run's ServerApp log (RunNotFound for an unknown run; empty before it started)."""
        run = self._registry.get_run(run_id)
        if run.flower_run_id is None:
            return iter(())
        return self._control.stream_logs(int(run.flower_run_id), follow=follow)

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
            if state is not None and state.status == "running":
                # Our ServerApp says so itself; a user's own app does not know our API.
                self._registry.mark_run_running(run_id)
                continue
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
