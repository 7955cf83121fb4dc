"""Contract tests of the registry (SQLite here; PostgreSQL joins through FL_TEST_DATABASE_URLS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fl_coordinator.errors import RunNotFound
from fl_coordinator.registry import Registry
from fl_shared.wire import DeviceRegistration, DeviceRoundResult, Heartbeat, RoundReport, RunRequest


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _urls(tmp: Path) -> list[str]:
    extra = [u for u in os.environ.get("FL_TEST_DATABASE_URLS", "").split() if u]
    return [f"sqlite:///{tmp / 'registry.db'}", *extra]


@pytest.fixture(params=["sqlite", "extra"])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Registry, FakeClock]]:
    urls = _urls(tmp_path)
    if request.param == "extra":
        if len(urls) == 1:
            # No second backend configured: run the contract on a second SQLite file instead.
            urls.append(f"sqlite:///{tmp_path / 'second.db'}")
        url = urls[1]
    else:
        url = urls[0]
    clock = FakeClock()
    reg = Registry(url, heartbeat_timeout_s=15, clock=clock)
    reg.create_schema()
    yield reg, clock
    reg.close()


def test_register_assigns_id_and_reregister_keeps_it(registry: tuple[Registry, FakeClock]) -> None:
    reg, _clock = registry
    first = reg.register_device(DeviceRegistration(name="jetson-1", platform="Linux-aarch64"))
    assert first.device_id.startswith("dev-")
    again = reg.register_device(
        DeviceRegistration(device_id=first.device_id, name="jetson-1b", agent_version="0.2.0")
    )
    assert again.device_id == first.device_id
    devices = reg.list_devices()
    assert [d.name for d in devices] == ["jetson-1b"]
    assert devices[0].agent_version == "0.2.0"


def test_unknown_persisted_id_is_adopted(registry: tuple[Registry, FakeClock]) -> None:
    # A coordinator that lost its database takes devices back under the ids they keep.
    reg, _ = registry
    device = reg.register_device(DeviceRegistration(device_id="dev-kept", name="x"))
    assert device.device_id == "dev-kept"


def test_liveness_follows_heartbeats(registry: tuple[Registry, FakeClock]) -> None:
    reg, clock = registry
    device = reg.register_device(DeviceRegistration(name="d"))
    assert reg.list_devices()[0].online
    clock.now += timedelta(seconds=16)
    assert not reg.list_devices()[0].online
    beat = Heartbeat(device_id=device.device_id, supernode_state="restarting")
    assert reg.record_heartbeat(beat) is not None
    listed = reg.list_devices()[0]
    assert listed.online and listed.supernode_state == "restarting"
    assert reg.record_heartbeat(Heartbeat(device_id="dev-unknown")) is None


def test_run_lifecycle_and_rounds(registry: tuple[Registry, FakeClock]) -> None:
    reg, _ = registry
    run_id, token = reg.create_run(RunRequest(model="mlp", dataset="digits", num_rounds=2))
    assert len(token) >= 32 and reg.report_token(run_id) == token
    # Flower ids are unsigned 64-bit; linking a pending run makes it "starting".
    assert reg.set_flower_run_id(run_id, 2**63 + 5).status == "starting"
    device = DeviceRoundResult(
        device_id="dev-a", node_id=2**64 - 1, num_examples=10, train_loss=1.0, train_seconds=0.5
    )
    reg.record_round(run_id, RoundReport(round=0, eval_accuracy=0.1))
    reg.record_round(run_id, RoundReport(round=1, devices=[device], eval_accuracy=0.6))
    reg.record_round(
        run_id, RoundReport(round=1, devices=[device], eval_accuracy=0.7, checkpoint="/m/1.pt")
    )
    run = reg.get_run(run_id)
    assert run.status == "running"  # the first round report moves it on
    assert run.flower_run_id == 2**63 + 5
    assert [r.round for r in run.rounds] == [0, 1]
    assert run.final_accuracy == 0.7 and run.checkpoint == "/m/1.pt"
    assert run.rounds[1].devices[0].node_id == 2**64 - 1
    assert run.request.model == "mlp"

    done = reg.update_run_status(run_id, "completed", "ok")
    assert done.status == "completed" and done.finished_at is not None
    # A finished run never changes again (a late crash report must not flip it).
    assert reg.update_run_status(run_id, "failed", "late").status == "completed"
    assert reg.active_runs() == []


def test_late_link_never_moves_a_running_run_back(registry: tuple[Registry, FakeClock]) -> None:
    reg, _ = registry
    run_id, _ = reg.create_run(RunRequest())
    reg.update_run_status(run_id, "running", "training")  # the ServerApp was quick
    assert reg.set_flower_run_id(run_id, 9).status == "running"


def test_runs_listed_newest_first_and_missing_run(registry: tuple[Registry, FakeClock]) -> None:
    reg, _ = registry
    first, _ = reg.create_run(RunRequest())
    second, _ = reg.create_run(RunRequest())
    assert [r.run_id for r in reg.list_runs()] == [second, first]
    assert {r for r, _ in reg.active_runs()} == {first, second}
    with pytest.raises(RunNotFound):
        reg.get_run(999)
