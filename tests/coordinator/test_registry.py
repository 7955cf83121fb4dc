"""Contract tests of the registry, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from fl_coordinator.errors import DeviceNotFound, DeviceRevoked, RunNotFound
from fl_coordinator.registry import DeviceFilter, Registry
from fl_shared.capabilities import Capabilities, Identity, JetsonInfo, NvidiaGpu
from fl_shared.wire import (
    DeviceRegistration,
    DeviceRoundResult,
    Heartbeat,
    RoundReport,
    RunRequest,
)

STALE_S, OFFLINE_S = 30.0, 50.0


@pytest.fixture
def registry(database_url: str, fake_clock: Any) -> Iterator[Registry]:
    reg = Registry(database_url, stale_after_s=STALE_S, offline_after_s=OFFLINE_S, clock=fake_clock)
    reg.migrate()
    yield reg
    reg.close()


def _enroll(reg: Registry, name: str, **labels: str) -> str:
    return reg.register_device(DeviceRegistration(name=name, labels=labels)).device_id


def _caps(arch: str, *, gpu: str | None = None, jetson: bool = False) -> Capabilities:
    return Capabilities(
        identity=Identity(arch=arch),
        nvidia_gpus=[NvidiaGpu(name=gpu)] if gpu else [],
        jetson=JetsonInfo(model="NVIDIA Jetson Orin Nano") if jetson else None,
    )


def _ids(reg: Registry, **flt: Any) -> set[str]:
    return {d.device_id for d in reg.list_devices(DeviceFilter(**flt))}


# -- enrollment and heartbeats ------------------------------------------------------------------


def test_register_assigns_id_and_reregister_keeps_it(registry: Registry) -> None:
    first = registry.register_device(DeviceRegistration(name="jetson-1", platform="Linux-aarch64"))
    assert first.device_id.startswith("dev-")
    again = registry.register_device(
        DeviceRegistration(device_id=first.device_id, name="jetson-1b", agent_version="0.2.0")
    )
    assert again.device_id == first.device_id
    devices = registry.list_devices()
    assert [d.name for d in devices] == ["jetson-1b"]
    assert devices[0].agent_version == "0.2.0"


def test_unknown_persisted_id_is_adopted(registry: Registry) -> None:
    # A coordinator that lost its database takes devices back under the ids they keep.
    device = registry.register_device(DeviceRegistration(device_id="dev-kept", name="x"))
    assert device.device_id == "dev-kept"


def test_heartbeat_updates_state_and_unknown_device_is_none(
    registry: Registry, fake_clock: Any
) -> None:
    device_id = _enroll(registry, "d")
    fake_clock.advance(OFFLINE_S + 1)
    assert registry.get_device(device_id).status == "offline"
    beat = Heartbeat(device_id=device_id, supernode_state="restarting", cpu_percent=12.5)
    stored = registry.record_heartbeat(beat)
    assert stored is not None and stored.status == "online"
    listed = registry.get_device(device_id)
    assert listed.online and listed.supernode_state == "restarting"
    assert listed.last_status is not None and listed.last_status.cpu_percent == 12.5
    assert registry.record_heartbeat(Heartbeat(device_id="dev-unknown")) is None


@pytest.mark.parametrize(
    ("age_s", "state", "online"),
    [
        (0.0, "online", True),
        (STALE_S, "online", True),
        (STALE_S + 0.001, "stale", True),
        (OFFLINE_S, "stale", True),
        (OFFLINE_S + 0.001, "offline", False),
    ],
)
def test_states_at_the_thresholds(
    registry: Registry, fake_clock: Any, age_s: float, state: str, online: bool
) -> None:
    device_id = _enroll(registry, "d")
    fake_clock.advance(age_s)
    device = registry.get_device(device_id)
    assert (device.status, device.online) == (state, online)
    # The SQL filter agrees with the computed state, exactly at the threshold too.
    for candidate in ("online", "stale", "offline", "drained", "revoked"):
        assert _ids(registry, status=candidate) == ({device_id} if candidate == state else set())


# -- drain and revoke ---------------------------------------------------------------------------


def test_drained_device_still_heartbeats_but_is_not_eligible(
    registry: Registry, fake_clock: Any
) -> None:
    keep, drained = _enroll(registry, "keep"), _enroll(registry, "drained")
    assert set(registry.eligible_device_ids()) == {keep, drained}
    first = registry.drain(drained, "disk swap")
    assert (first.status, first.status_reason) == ("drained", "disk swap")
    fake_clock.advance(5)
    again = registry.drain(drained, "twice")
    assert again.drained_at == first.drained_at  # draining again keeps the original time
    assert registry.record_heartbeat(Heartbeat(device_id=drained)) is not None
    assert registry.get_device(drained).last_heartbeat_at == fake_clock.now
    assert set(registry.eligible_device_ids()) == {keep}
    assert _ids(registry, status="drained") == {drained}
    assert _ids(registry, status="online") == {keep}
    undrained = registry.undrain(drained)
    assert (undrained.status, undrained.status_reason, undrained.drained_at) == (
        "online",
        "",
        None,
    )
    assert set(registry.eligible_device_ids()) == {keep, drained}


def test_revoked_device_is_refused_until_unrevoked(registry: Registry) -> None:
    device_id = _enroll(registry, "lost")
    revoked = registry.revoke(device_id, "reported stolen")
    assert (revoked.status, revoked.online) == ("revoked", False)
    with pytest.raises(DeviceRevoked, match="reported stolen") as info:
        registry.record_heartbeat(Heartbeat(device_id=device_id))
    assert f"flctl devices unrevoke {device_id}" in str(info.value)
    with pytest.raises(DeviceRevoked):
        registry.register_device(DeviceRegistration(device_id=device_id, name="lost"))
    with pytest.raises(DeviceRevoked):
        registry.record_capabilities(device_id, _caps("aarch64"))
    assert registry.get_device(device_id).name == "lost"  # nothing was stored
    assert set(registry.eligible_device_ids()) == set()
    assert _ids(registry, status="revoked") == {device_id}
    # Revoked wins over drained; unrevoking leaves the drain in place.
    registry.drain(device_id)
    assert registry.get_device(device_id).status == "revoked"
    assert registry.unrevoke(device_id).status == "drained"
    assert registry.record_heartbeat(Heartbeat(device_id=device_id)) is not None


def test_admin_actions_on_unknown_device(registry: Registry) -> None:
    for action in (registry.drain, registry.undrain, registry.revoke, registry.unrevoke):
        with pytest.raises(DeviceNotFound, match="dev-nope"):
            action("dev-nope")
    with pytest.raises(DeviceNotFound):
        registry.set_labels("dev-nope", {"a": "b"})
    with pytest.raises(DeviceNotFound):
        registry.device_detail("dev-nope")
    with pytest.raises(DeviceNotFound):
        registry.heartbeat_history("dev-nope")


# -- labels, filters, pages ---------------------------------------------------------------------


def test_labels_set_patch_remove_and_agent_merge(registry: Registry) -> None:
    device_id = _enroll(registry, "d", site="lab")
    assert registry.set_labels(device_id, {"site": "field", "rack": "4"}).labels == {
        "site": "field",
        "rack": "4",
    }
    patched = registry.patch_labels(device_id, {"rack": None, "tier": "gold", "ghost": None})
    assert patched.labels == {"site": "field", "tier": "gold"}
    assert _ids(registry, labels={"tier": "gold"}) == {device_id}
    assert _ids(registry, labels={"rack": "4"}) == set()  # the index forgot the removed label
    # The agent re-enrolls with its configured labels: they win for their keys only.
    registry.register_device(
        DeviceRegistration(device_id=device_id, name="d", labels={"site": "lab"})
    )
    assert registry.get_device(device_id).labels == {"site": "lab", "tier": "gold"}
    assert registry.set_labels(device_id, {}).labels == {}
    assert _ids(registry, labels={"site": "lab"}) == set()


def test_filters_combine(registry: Registry, fake_clock: Any) -> None:
    orin = _enroll(registry, "orin", site="lab", tier="gold")
    x86 = _enroll(registry, "x86-gpu", site="lab")
    pi = _enroll(registry, "pi", site="field")
    bare = _enroll(registry, "never-probed")
    registry.record_capabilities(orin, _caps("aarch64", jetson=True))
    registry.record_capabilities(x86, _caps("x86_64", gpu="NVIDIA A2"))
    registry.record_capabilities(pi, _caps("aarch64"))
    assert _ids(registry, arch="aarch64") == {orin, pi}
    assert _ids(registry, has_gpu=True) == {orin, x86}
    assert _ids(registry, has_gpu=False) == {pi, bare}
    assert _ids(registry, labels={"site": "lab"}) == {orin, x86}
    assert _ids(registry, labels={"site": "lab", "tier": "gold"}) == {orin}
    assert _ids(registry, arch="aarch64", has_gpu=True, labels={"site": "lab"}) == {orin}
    fake_clock.advance(STALE_S + 1)
    registry.record_heartbeat(Heartbeat(device_id=pi))
    assert _ids(registry, status="online") == {pi}
    assert _ids(registry, status="stale", has_gpu=True) == {orin, x86}
    assert set(registry.eligible_device_ids({"site": "field"})) == {pi}
    # A new probe that no longer finds the GPU (driver gone) updates the filter columns.
    registry.record_capabilities(x86, _caps("x86_64"))
    assert _ids(registry, has_gpu=True) == {orin}


def test_pages_are_stable_and_counted(registry: Registry, fake_clock: Any) -> None:
    ids = []
    for i in range(7):
        ids.append(_enroll(registry, f"d{i}", parity=str(i % 2)))
        fake_clock.advance(1)
    first = registry.device_page(DeviceFilter(), limit=3, offset=0)
    second = registry.device_page(DeviceFilter(), limit=3, offset=3)
    last = registry.device_page(DeviceFilter(), limit=3, offset=6)
    assert [d.device_id for d in first.items + second.items + last.items] == ids
    assert (first.total, second.total, last.total) == (7, 7, 7)
    odd = registry.device_page(DeviceFilter(labels={"parity": "1"}), limit=2, offset=2)
    assert [d.device_id for d in odd.items] == [ids[5]] and odd.total == 3
    beyond = registry.device_page(DeviceFilter(), limit=3, offset=50)
    assert beyond.items == [] and beyond.total == 7


def test_same_enrollment_time_orders_by_id(registry: Registry) -> None:
    ids = [_enroll(registry, f"d{i}") for i in range(4)]  # the fake clock stands still
    pages = [registry.device_page(DeviceFilter(), limit=1, offset=i).items for i in range(4)]
    assert [p[0].device_id for p in pages] == sorted(ids)


# -- heartbeat history --------------------------------------------------------------------------


def _beats(reg: Registry, clock: Any, device_id: str, count: int, every_s: float) -> list[float]:
    cpus = []
    for i in range(count):
        clock.advance(every_s)
        cpu = float(i % 97)
        cpus.append(cpu)
        reg.record_heartbeat(
            Heartbeat(device_id=device_id, cpu_percent=cpu, max_temp_c=40.0 + i % 13)
        )
    return cpus


def test_history_keeps_the_last_hour_raw_and_summarises_older(
    registry: Registry, fake_clock: Any
) -> None:
    device_id = _enroll(registry, "d")
    cpus = _beats(registry, fake_clock, device_id, count=600, every_s=15)  # 2.5 hours
    history = registry.heartbeat_history(device_id, "24h")
    now = fake_clock.now
    raw = [h for h in history if h.resolution_s == 0]
    summaries = [h for h in history if h.resolution_s == 300]
    assert len(raw) + len(summaries) == len(history)
    # Every beat of the last hour is there; beyond 1 h (plus at most a bucket and the
    # 5-minute compaction pace) only 5-minute points remain, one per bucket.
    assert all(now - h.at <= timedelta(minutes=70) for h in raw)
    assert len([h for h in raw if now - h.at < timedelta(hours=1)]) == 240
    assert all(now - h.at > timedelta(hours=1) for h in summaries)
    assert all(h.at.timestamp() % 300 == 0 for h in summaries)
    assert len({h.at for h in summaries}) == len(summaries)
    # Nothing is lost before a week: the beats add up, and each mean is the inputs' mean.
    assert sum(h.samples for h in history) == 600
    start = now - timedelta(seconds=15 * 600)
    for point in summaries:
        members = [
            (cpu, 40.0 + i % 13)
            for i, cpu in enumerate(cpus)
            if point.at <= start + timedelta(seconds=15 * (i + 1)) < point.at + timedelta(minutes=5)
        ]
        assert point.samples == len(members)
        assert point.cpu_percent == pytest.approx(sum(c for c, _ in members) / len(members))
        assert point.max_temp_c == max(t for _, t in members)
    assert len(registry.heartbeat_history(device_id, "1h")) <= 241 + 1


def test_history_tiers_and_a_week_of_retention(registry: Registry, fake_clock: Any) -> None:
    device_id = _enroll(registry, "d")
    _beats(registry, fake_clock, device_id, count=8 * 24 * 3, every_s=20 * 60)  # 8 days
    now = fake_clock.now
    history = registry.heartbeat_history(device_id, "7d")
    assert all(now - h.at <= timedelta(days=7) for h in history)
    older = [h for h in history if now - h.at > timedelta(hours=25)]
    day = [h for h in history if timedelta(hours=2) < now - h.at < timedelta(hours=23)]
    assert older and all(h.resolution_s == 3600 and h.samples == 3 for h in older)
    assert len({h.at for h in older}) == len(older)
    assert day and all(h.resolution_s == 300 and h.samples == 1 for h in day)
    # Bounded: about 6 days of hourly points, a day of 5-minute ones (one beat per 20 min).
    assert len(history) <= 6 * 24 + 24 * 3 + 10
    assert registry.heartbeat_history(device_id, "1h")[-1].at == now


def test_devices_that_stop_beating_are_swept(registry: Registry, fake_clock: Any) -> None:
    quiet, busy = _enroll(registry, "quiet"), _enroll(registry, "busy")
    _beats(registry, fake_clock, quiet, count=240, every_s=15)  # an hour, then silence
    _beats(registry, fake_clock, busy, count=3 * 60, every_s=60)  # 3 more hours
    history = registry.heartbeat_history(quiet, "24h")
    assert {h.resolution_s for h in history} == {300}
    assert sum(h.samples for h in history) == 240


def test_compact_history_on_demand(registry: Registry, fake_clock: Any) -> None:
    device_id = _enroll(registry, "d")
    _beats(registry, fake_clock, device_id, count=10, every_s=15)
    fake_clock.advance(8 * 86_400)
    assert registry.compact_history() == 1
    assert registry.heartbeat_history(device_id, "7d") == []


# -- rounds and participation -------------------------------------------------------------------


def _result(device_id: str, loss: float) -> DeviceRoundResult:
    return DeviceRoundResult(
        device_id=device_id, node_id=7, num_examples=100, train_loss=loss, train_seconds=2.5
    )


def test_round_devices_feed_participation(registry: Registry) -> None:
    a, b = _enroll(registry, "a"), _enroll(registry, "b")
    first, _ = registry.create_run(RunRequest())
    second, _ = registry.create_run(RunRequest())
    registry.record_round(first, RoundReport(round=1, devices=[_result(a, 0.9), _result(b, 1.0)]))
    registry.record_round(first, RoundReport(round=2, devices=[_result(a, 0.5)]))
    # A round reported again replaces who trained in it.
    registry.record_round(first, RoundReport(round=2, devices=[_result(b, 0.4)]))
    registry.record_round(second, RoundReport(round=1, devices=[_result(a, 0.3), _result(a, 0.2)]))
    detail = registry.device_detail(a)
    assert [(p.run_id, p.round, p.train_loss) for p in detail.participation] == [
        (second, 1, 0.2),
        (first, 1, 0.9),
    ]
    assert [(p.run_id, p.round) for p in registry.device_detail(b).participation] == [
        (first, 2),
        (first, 1),
    ]
    assert detail.heartbeat_history == []  # only when a window is asked for
    unknown = DeviceRoundResult(device_id=b, node_id=2, num_examples=4, train_seconds=1.0)
    registry.record_round(second, RoundReport(round=2, devices=[unknown]))
    assert registry.device_detail(b).participation[0].train_loss is None


# -- runs ---------------------------------------------------------------------------------------


def test_run_lifecycle_and_rounds(registry: Registry) -> None:
    run_id, token = registry.create_run(RunRequest(model="mlp", dataset="digits", num_rounds=2))
    assert len(token) >= 32 and registry.report_token(run_id) == token
    # Flower ids are unsigned 64-bit; linking a pending run makes it "starting".
    assert registry.set_flower_run_id(run_id, 2**63 + 5).status == "starting"
    device = DeviceRoundResult(
        device_id="dev-a", node_id=2**64 - 1, num_examples=10, train_loss=1.0, train_seconds=0.5
    )
    registry.record_round(run_id, RoundReport(round=0, eval_accuracy=0.1))
    registry.record_round(run_id, RoundReport(round=1, devices=[device], eval_accuracy=0.6))
    registry.record_round(
        run_id, RoundReport(round=1, devices=[device], eval_accuracy=0.7, checkpoint="/m/1.pt")
    )
    run = registry.get_run(run_id)
    assert run.status == "running"  # the first round report moves it on
    assert run.flower_run_id == 2**63 + 5
    assert [r.round for r in run.rounds] == [0, 1]
    assert run.final_accuracy == 0.7 and run.checkpoint == "/m/1.pt"
    assert run.rounds[1].devices[0].node_id == 2**64 - 1
    assert run.request.model == "mlp"

    done = registry.update_run_status(run_id, "completed", "ok")
    assert done.status == "completed" and done.finished_at is not None
    # A finished run never changes again (a late crash report must not flip it).
    assert registry.update_run_status(run_id, "failed", "late").status == "completed"
    assert registry.active_runs() == []


def test_late_link_never_moves_a_running_run_back(registry: Registry) -> None:
    run_id, _ = registry.create_run(RunRequest())
    registry.update_run_status(run_id, "running", "training")  # the ServerApp was quick
    assert registry.set_flower_run_id(run_id, 9).status == "running"


def test_runs_listed_newest_first_and_missing_run(registry: Registry) -> None:
    first, _ = registry.create_run(RunRequest())
    second, _ = registry.create_run(RunRequest())
    assert [r.run_id for r in registry.list_runs()] == [second, first]
    assert {r for r, _ in registry.active_runs()} == {first, second}
    with pytest.raises(RunNotFound):
        registry.get_run(999)
    with pytest.raises(RunNotFound):
        registry.request_run_stop(999)


def test_run_options_defaults_and_changes(registry: Registry) -> None:
    plain, _ = registry.create_run(RunRequest())
    run = registry.get_run(plain)
    assert (run.attempt, run.resumed_from_round, run.stop_requested) == (1, 0, False)
    assert (run.app_source, run.target_labels, run.selection_policy) == (
        "builtin",
        {},
        "fedavg-all",
    )
    custom, _ = registry.create_run(
        RunRequest(),
        app_source="fab:sha256:abc",
        target_labels={"site": "lab"},
        selection_policy="capability-aware",
    )
    run = registry.get_run(custom)
    assert (run.app_source, run.target_labels, run.selection_policy) == (
        "fab:sha256:abc",
        {"site": "lab"},
        "capability-aware",
    )
    assert registry.request_run_stop(custom).stop_requested
    registry.update_run_status(custom, "stopped")
    resumed = registry.reopen_run(custom, resumed_from_round=3, detail="resuming from round 3")
    assert (resumed.attempt, resumed.resumed_from_round) == (2, 3)
    assert (resumed.status, resumed.finished_at, resumed.stop_requested) == ("pending", None, False)
    assert registry.get_run(plain).stop_requested is False


# -- concurrency --------------------------------------------------------------------------------


def test_concurrent_enrollments_and_heartbeats(registry: Registry) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def agent(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                # Everyone fights over the same two ids, and beats on them.
                device_id = f"dev-shared-{(n + i) % 2}"
                registry.register_device(
                    DeviceRegistration(device_id=device_id, name=f"a{n}", labels={"n": str(n)})
                )
                registry.record_heartbeat(Heartbeat(device_id=device_id, cpu_percent=float(n)))
                registry.patch_labels(device_id, {f"k{n}": "v"})
        except BaseException as exc:  # noqa: BLE001 - reported below with the thread's view
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    devices = registry.list_devices()
    assert sorted(d.device_id for d in devices) == ["dev-shared-0", "dev-shared-1"]
    for device in devices:
        assert {f"k{n}" for n in range(8)} <= set(device.labels)
        assert _ids(registry, labels={"k3": "v"}) == _ids(registry)
    history = registry.heartbeat_history("dev-shared-0", "1h")
    assert sum(h.samples for h in history) == 40
