"""Selection through the REST API and flctl: run options, candidates, decisions per round."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.coordinator.api_harness import FakeControl, Harness, api_harness
from tests.coordinator.test_flctl_runs_robust import _forwarding_api, _start

from fl_coordinator.flctl import _parser as flctl_parser
from fl_coordinator.flctl import execute
from fl_coordinator.flctl_runs import print_run
from fl_shared.capabilities import Capabilities, CudaStack, MemoryInfo, SpeedScore
from fl_shared.wire import (
    DeviceRegistration,
    Heartbeat,
    RoundReport,
    RunRequest,
    SelectionDecision,
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Harness, FakeControl]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness, control


def _device(
    harness: Harness, name: str, *, memory_gib: int, cuda: bool = False, temp: float = 40.0
) -> str:
    registry = harness.registry
    device_id = registry.register_device(DeviceRegistration(name=name)).device_id
    registry.record_heartbeat(Heartbeat(device_id=device_id, max_temp_c=temp))
    registry.record_capabilities(
        device_id,
        Capabilities(
            memory=MemoryInfo(total_bytes=memory_gib * 2**30),
            cuda=CudaStack(torch_cuda_ok=cuda),
            speed=SpeedScore(torch_train_samples_per_s=100.0 * memory_gib),
        ),
    )
    return device_id


def test_selection_flags_reach_the_run_and_its_flower_config(env: Any) -> None:
    harness, control = env
    run, body = _start(
        harness,
        "--selection",
        "oort",
        "--devices-per-round",
        "10",
        "--overcommit",
        "1.5",
        "--max-staleness-rounds",
        "7",
        "--min-memory-mb",
        "2048",
        "--required-accelerator",
        "cuda",
    )
    assert body["selection"] == "oort" and body["devices_per_round"] == 10
    assert "dirichlet_alpha" in body and "max_staleness_rounds" in body
    assert run["selection_policy"] == "oort"
    assert run["request"]["overcommit"] == 1.5
    assert run["request"]["required_accelerator"] == "cuda"
    (config,) = control.configs
    assert config["selection"] == "oort"
    assert config["devices-per-round"] == 10
    assert config["overcommit"] == 1.5
    assert config["max-staleness-rounds"] == 7


def test_the_default_run_selects_with_the_capability_policy(env: Any) -> None:
    harness, control = env
    run, body = _start(harness)
    assert "selection" not in body  # the coordinator's default applies
    assert run["selection_policy"] == "capability"
    assert control.configs[0]["devices-per-round"] == 0  # every eligible device


def test_bad_selection_options_are_refused_in_one_line(
    env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    harness, _control = env
    response = harness.client.post("/api/v1/runs", json={"overcommit": 0.5})
    assert response.status_code == 422
    assert "overcommit" in response.text
    args = flctl_parser().parse_args(["runs", "start", "--devices-per-round", "0"])
    with pytest.raises(Exception, match="devices_per_round"):
        execute(args, _forwarding_api(harness), io.StringIO())


def test_candidates_carry_capabilities_and_hard_constraints_keep_devices_out(env: Any) -> None:
    harness, _control = env
    big = _device(harness, "big", memory_gib=8, cuda=True)
    hot = _device(harness, "hot", memory_gib=16, cuda=True, temp=91.0)
    small = _device(harness, "small", memory_gib=1, cuda=True)
    cpu = _device(harness, "cpu-only", memory_gib=32)
    drained = _device(harness, "drained", memory_gib=32, cuda=True)
    harness.registry.drain(drained)
    request = RunRequest(min_memory_mb=4096, required_accelerator="cuda")
    run_id, token = harness.registry.create_run(request)

    refused = harness.client.get(f"/api/v1/runs/{run_id}/candidates")
    assert refused.status_code == 403  # the run's own token only

    listing = harness.client.get(
        f"/api/v1/runs/{run_id}/candidates", headers={"X-Run-Token": token}
    ).json()
    candidates = {c["device_id"]: c for c in listing["candidates"]}
    assert set(candidates) == {big, hot}
    assert candidates[big]["samples_per_s"] == 800.0
    assert candidates[big]["accelerator"] == "cuda"
    assert candidates[big]["memory_bytes"] == 8 * 2**30
    assert candidates[hot]["throttled"] and not candidates[big]["throttled"]
    excluded = {d["device_id"]: d["reason"] for d in listing["excluded"]}
    assert excluded[small] == "1024 MiB memory, the run needs 4096"
    assert excluded[cpu] == "no CUDA accelerator, the run requires one"
    assert drained not in excluded and drained not in candidates  # never eligible


def test_runs_show_prints_who_was_selected_and_why(env: Any) -> None:
    harness, _control = env
    run_id, _token = harness.registry.create_run(
        RunRequest(devices_per_round=1), selection_policy="capability"
    )
    harness.registry.record_round(
        run_id,
        RoundReport(
            round=1,
            selection=[
                SelectionDecision(
                    device_id="dev-fast",
                    selected=True,
                    score=2.5,
                    reason="best utility per second",
                    predicted_s=1.0,
                ),
                SelectionDecision(
                    device_id="dev-slow",
                    selected=False,
                    score=0.1,
                    reason="slower than the round's deadline",
                    predicted_s=40.0,
                ),
            ],
        ),
    )
    run = harness.client.get(f"/api/v1/runs/{run_id}").json()
    assert run["rounds"][0]["selection"][1]["reason"] == "slower than the round's deadline"
    out = io.StringIO()
    print_run(run, out)
    text = out.getvalue()
    assert "selection capability, 1 updates per round (over-commit x1.3)" in text
    assert "+ dev-fast  score 2.5000  predicted 1.0 s  best utility per second" in text
    assert "- dev-slow  score 0.1000  predicted 40.0 s  slower than the round's deadline" in text
    json.dumps(run)  # the API's JSON carries it as is
