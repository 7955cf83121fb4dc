"""Resuming interrupted runs from their last checkpoint (registry real, Control API faked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.flower_control import FlowerRunState
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import RoundReport, RunRequest


class FakeControl:
    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.states: dict[int, FlowerRunState | None] = {}
        self.stopped: list[int] = []

    def start_run(self, run_config: dict[str, Any]) -> int:
        self.configs.append(run_config)
        return 100 + len(self.configs)

    def run_state(self, flower_run_id: int) -> FlowerRunState | None:
        return self.states.get(flower_run_id)

    def stop_run(self, flower_run_id: int) -> None:
        self.stopped.append(flower_run_id)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[RunService, Registry, FakeControl, Path]]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    registry = Registry(settings.resolved_database_url)
    registry.create_schema()
    control = FakeControl()
    yield RunService(registry, control, settings), registry, control, tmp_path  # type: ignore[arg-type]
    registry.close()


def _run_with_rounds(
    service: RunService, registry: Registry, tmp: Path, rounds: int, on_disk: set[int]
) -> int:
    run = service.start_run(RunRequest(num_rounds=5, dataset="digits"))
    for number in range(1, rounds + 1):
        path = tmp / f"round-{number}.pt"
        if number in on_disk:
            path.write_bytes(b"checkpoint")
        registry.record_round(
            run.run_id,
            RoundReport(round=number, eval_accuracy=0.1 * number, checkpoint=str(path)),
        )
    registry.update_run_status(run.run_id, "failed", "ServerApp crashed")
    return run.run_id


def test_resume_continues_after_the_last_checkpoint(env: Any) -> None:
    service, registry, control, tmp = env
    run_id = _run_with_rounds(service, registry, tmp, rounds=3, on_disk={1, 2, 3})
    resumed = service.resume_run(run_id)
    assert resumed.status == "starting" and resumed.attempt == 2
    assert resumed.resumed_from_round == 3 and resumed.finished_at is None
    assert resumed.flower_run_id == 102
    config = control.configs[-1]
    assert config["resume-from-round"] == 3
    assert config["resume-checkpoint"] == str(tmp / "round-3.pt")
    assert config["registry-run-id"] == run_id and config["num-rounds"] == 5
    assert [r.round for r in registry.get_run(run_id).rounds] == [1, 2, 3]  # nothing lost


def test_a_missing_checkpoint_falls_back_to_an_earlier_one(env: Any) -> None:
    service, registry, control, tmp = env
    run_id = _run_with_rounds(service, registry, tmp, rounds=3, on_disk={1, 2})
    assert service.resume_run(run_id).resumed_from_round == 2
    assert control.configs[-1]["resume-checkpoint"] == str(tmp / "round-2.pt")


def test_no_checkpoint_restarts_from_the_initial_model(env: Any) -> None:
    service, registry, control, tmp = env
    run_id = _run_with_rounds(service, registry, tmp, rounds=0, on_disk=set())
    resumed = service.resume_run(run_id)
    assert resumed.resumed_from_round == 0 and "initial model" in resumed.detail
    assert "resume-from-round" not in control.configs[-1]


def test_all_rounds_done_is_just_completed(env: Any) -> None:
    service, registry, control, tmp = env
    run_id = _run_with_rounds(service, registry, tmp, rounds=5, on_disk={5})
    after = service.resume_run(run_id)
    assert after.status == "completed" and "all 5 rounds were recorded" in after.detail
    assert len(control.configs) == 1  # nothing new submitted


def test_rest_resume_and_its_refusals(env: Any, tmp_path: Path) -> None:
    service, registry, control, tmp = env
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    run_id = _run_with_rounds(service, registry, tmp, rounds=2, on_disk={2})
    with TestClient(create_app(registry, service, settings)) as client:
        answer = client.post(f"/api/v1/runs/{run_id}/resume")
        assert answer.status_code == 200 and answer.json()["resumed_from_round"] == 2
        control.states[102] = FlowerRunState("running", "", "")
        still = client.post(f"/api/v1/runs/{run_id}/resume")
        assert still.status_code == 409 and "still running" in still.json()["detail"]
        registry.update_run_status(run_id, "completed")
        done = client.post(f"/api/v1/runs/{run_id}/resume")
        assert done.status_code == 409 and "completed" in done.json()["detail"]
        assert client.post("/api/v1/runs/999/resume").status_code == 404


def test_start_up_resumes_runs_that_were_going(env: Any) -> None:
    service, registry, control, _tmp = env
    going = service.start_run(RunRequest(num_rounds=4))  # Flower run 101: gone after a crash
    stale = service.start_run(RunRequest(num_rounds=4))  # Flower run 102: "running" on record
    done = service.start_run(RunRequest(num_rounds=4))  # Flower run 103: finished meanwhile
    control.states[102] = FlowerRunState("running", "", "")
    control.states[103] = FlowerRunState("finished", "completed", "")
    service.recover_interrupted(resume=True)
    assert registry.get_run(going.run_id).attempt == 2
    assert registry.get_run(going.run_id).flower_run_id == 104
    # Its ServerApp died with the old SuperLink: the Flower run is stopped, ours resumed.
    assert control.stopped == [102]
    assert registry.get_run(stale.run_id).attempt == 2
    assert registry.get_run(done.run_id).status == "completed"


def test_start_up_without_resume_marks_them_failed_with_the_fix(env: Any) -> None:
    service, registry, _control, _tmp = env
    run = service.start_run(RunRequest(num_rounds=4))
    service.recover_interrupted(resume=False)
    after = registry.get_run(run.run_id)
    assert after.status == "failed"
    assert f"flctl runs resume {run.run_id}" in after.detail
