"""Contract tests of the registry, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from fl_coordinator.errors import DeviceNotFound, DeviceRevoked, RunNotFound
from fl_coordinator.registry import DeviceFilter, Registry
from fl_coordinator.registry_schema import RunRow
from fl_shared.capabilities import Capabilities, Identity, JetsonInfo, NvidiaGpu, SpeedScore
from fl_shared.wire import (
    DEVICE_SORTS,
    DeviceRegistration,
    DeviceRoundResult,
    Heartbeat,
    RoundReport,
    RunRequest,
    SelectionDecision,
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


# -- dashboard: sorting, search, fleet summary -------------------------------------------------


def _speed_caps(arch: str, samples_per_s: float | None) -> Capabilities:
    return Capabilities(
        identity=Identity(arch=arch), speed=SpeedScore(torch_train_samples_per_s=samples_per_s)
    )


def _order(reg: Registry, sort: Any, **flt: Any) -> list[str]:
    page = reg.device_page(DeviceFilter(**flt), limit=None, sort=sort)
    return [d.name for d in page.items]


def test_sort_orders_with_ties_by_device_id_and_unmeasured_speed_last(
    registry: Registry, fake_clock: Any
) -> None:
    # (name, arch, samples/s, seconds of the clock before enrollment); ids are given so that
    # ties have a known order: dev-1 < dev-2 < ...
    fleet = [
        ("bravo", "x86_64", 50.0, 0),
        ("alpha", "aarch64", None, 1),
        ("charlie", "aarch64", 900.0, 1),
        ("alpha", "riscv64", 50.0, 1),
        ("delta", "x86_64", 0.0, 1),  # not a measurement: sorts as unmeasured
    ]
    for i, (name, arch, speed, wait) in enumerate(fleet, start=1):
        fake_clock.advance(wait)
        registry.register_device(DeviceRegistration(device_id=f"dev-{i}", name=name))
        registry.record_capabilities(f"dev-{i}", _speed_caps(arch, speed))
    # Last heartbeats: dev-5 oldest ... dev-1 newest, dev-3 and dev-4 at the same instant.
    for device_id in ("dev-5", "dev-4"):
        fake_clock.advance(1)
        registry.record_heartbeat(Heartbeat(device_id=device_id))
    registry.record_heartbeat(Heartbeat(device_id="dev-3"))
    fake_clock.advance(1)
    registry.record_heartbeat(Heartbeat(device_id="dev-2"))
    fake_clock.advance(1)
    registry.record_heartbeat(Heartbeat(device_id="dev-1"))

    def ids(sort: Any) -> list[str]:
        page = registry.device_page(DeviceFilter(), limit=None, sort=sort)
        return [d.device_id for d in page.items]

    expected = {
        "registered": ["dev-1", "dev-2", "dev-3", "dev-4", "dev-5"],  # dev-2..5 tie on time
        "name": ["dev-2", "dev-4", "dev-1", "dev-3", "dev-5"],
        "last_heartbeat": ["dev-5", "dev-3", "dev-4", "dev-2", "dev-1"],
        "arch": ["dev-2", "dev-3", "dev-4", "dev-1", "dev-5"],
        "speed": ["dev-1", "dev-4", "dev-3", "dev-2", "dev-5"],
        "-speed": ["dev-3", "dev-4", "dev-1", "dev-5", "dev-2"],
    }
    for sort, order in expected.items():
        assert ids(sort) == order, sort
    for sort in ("registered", "name", "last_heartbeat", "arch"):
        assert ids(f"-{sort}") == expected[sort][::-1], sort
    reversed_ = {f"-{s}" for s in ("registered", "name", "last_heartbeat", "arch")}
    assert set(DEVICE_SORTS) == set(expected) | reversed_  # every order is checked here
    # Pages of a sorted listing cover every device once, in order.
    pages = [
        registry.device_page(DeviceFilter(), limit=2, offset=o, sort="-speed") for o in (0, 2, 4)
    ]
    assert [d.device_id for p in pages for d in p.items] == expected["-speed"]
    assert {p.total for p in pages} == {5}
    # A new probe without a speed clears it; a measured one sets it.
    registry.record_capabilities("dev-3", _speed_caps("aarch64", None))
    registry.record_capabilities("dev-2", _speed_caps("aarch64", 10.0))
    assert ids("speed") == ["dev-2", "dev-1", "dev-4", "dev-3", "dev-5"]


def test_search_is_case_insensitive_on_name_hostname_and_id(registry: Registry) -> None:
    registry.register_device(
        DeviceRegistration(device_id="dev-orin-01", name="Orin Lab", hostname="edge-a.lab")
    )
    registry.register_device(
        DeviceRegistration(device_id="dev-pi-02", name="pi_50%", hostname="RASPI.field")
    )
    registry.register_device(DeviceRegistration(device_id="dev-x-03", name="x", hostname="h"))

    def found(query: str, **flt: Any) -> set[str]:
        return {d.device_id for d in registry.list_devices(DeviceFilter(query=query, **flt))}

    assert found("orin lab") == {"dev-orin-01"}  # name, other case
    assert found("raspi") == {"dev-pi-02"}  # hostname, other case
    assert found("X-03") == {"dev-x-03"}  # device id, other case
    assert found("DEV-") == {"dev-orin-01", "dev-pi-02", "dev-x-03"}
    # LIKE's wildcards are plain characters in a search.
    assert found("_50%") == {"dev-pi-02"}
    assert found("%") == {"dev-pi-02"}
    assert found("o_in") == set() and found("pi%0") == set()  # as wildcards they would match
    # A search combines with the other filters; the count follows it.
    registry.drain("dev-orin-01")
    assert found("dev", status="drained") == {"dev-orin-01"}
    page = registry.device_page(DeviceFilter(query="-0"), limit=1, sort="-name")
    assert page.total == 3 and [d.device_id for d in page.items] == ["dev-x-03"]


@pytest.mark.parametrize(
    "age_s", [0.0, STALE_S, STALE_S + 0.001, OFFLINE_S, OFFLINE_S + 0.001, 10 * OFFLINE_S]
)
def test_fleet_summary_counts_as_the_status_filter(
    registry: Registry, fake_clock: Any, age_s: float
) -> None:
    fresh = [_enroll(registry, f"fresh{i}") for i in range(3)]
    fake_clock.advance(age_s)
    aged = [_enroll(registry, f"aged{i}") for i in range(2)]
    for device_id in aged:  # their last beat is age_s older than now
        registry.record_heartbeat(Heartbeat(device_id=device_id))
    fake_clock.advance(age_s)
    registry.drain(fresh[0])
    registry.revoke(fresh[1])
    registry.drain(fresh[1])  # revoked beats drained
    summary = registry.fleet_summary()
    counts = {s: getattr(summary, s) for s in ("online", "stale", "offline", "drained", "revoked")}
    assert counts == {s: len(_ids(registry, status=s)) for s in counts}
    assert (summary.drained, summary.revoked, summary.total) == (1, 1, 5)
    assert sum(counts.values()) == summary.total
    expected = registry.get_device(aged[0]).status
    assert getattr(summary, expected) >= 2  # both aged devices (and fresh[2]) in their state
    assert (summary.stale_after_s, summary.offline_after_s) == (STALE_S, OFFLINE_S)
    assert summary.server_time == fake_clock.now


def test_fleet_summary_of_an_empty_fleet(registry: Registry) -> None:
    summary = registry.fleet_summary()
    assert (summary.online, summary.stale, summary.offline, summary.total) == (0, 0, 0, 0)
    assert (summary.drained, summary.revoked) == (0, 0)


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


def _decision(device_id: str, selected: bool, reason: str, score: float | None = None) -> Any:
    return SelectionDecision(
        device_id=device_id, selected=selected, reason=reason, score=score, predicted_s=1.5
    )


def test_round_selection_feeds_the_selection_history(registry: Registry) -> None:
    a, b = _enroll(registry, "a"), _enroll(registry, "b")
    first, _ = registry.create_run(RunRequest())
    second, _ = registry.create_run(RunRequest())
    registry.record_round(
        first,
        RoundReport(
            round=1,
            selection=[_decision(a, True, "fastest predicted", 2.0), _decision(b, False, "slow")],
        ),
    )
    registry.record_round(first, RoundReport(round=2, selection=[_decision(a, False, "x")]))
    # A round reported again replaces its decisions; a device listed twice counts once (last).
    registry.record_round(
        first,
        RoundReport(
            round=2,
            selection=[
                _decision(b, False, "first entry"),
                _decision(b, True, "staleness bound"),
            ],
        ),
    )
    registry.record_round(second, RoundReport(round=1, selection=[_decision(a, True, "random")]))
    history_a = registry.device_detail(a).selection_history
    assert [(h.run_id, h.round, h.selected, h.reason) for h in history_a] == [
        (second, 1, True, "random"),
        (first, 1, True, "fastest predicted"),
    ]
    assert (history_a[1].score, history_a[1].predicted_s) == (2.0, 1.5)
    history_b = registry.device_detail(b).selection_history
    assert [(h.run_id, h.round, h.selected, h.reason) for h in history_b] == [
        (first, 2, True, "staleness bound"),
        (first, 1, False, "slow"),
    ]
    assert history_b[0].score is None
    # Participation is still its own list (nobody trained here).
    assert registry.device_detail(a).participation == []
    # Deleting a run deletes its decisions (ON DELETE CASCADE, as round_devices).
    registry.write(lambda s: s.execute(delete(RunRow).where(RunRow.run_id == first)))
    assert [h.run_id for h in registry.device_detail(b).selection_history] == []
    assert [h.run_id for h in registry.device_detail(a).selection_history] == [second]


def test_selection_history_keeps_the_newest_hundred(registry: Registry) -> None:
    device_id = _enroll(registry, "busy")
    run_id, _ = registry.create_run(RunRequest())
    for server_round in range(1, 106):
        registry.record_round(
            run_id, RoundReport(round=server_round, selection=[_decision(device_id, True, "r")])
        )
    history = registry.device_detail(device_id).selection_history
    assert [h.round for h in history] == list(range(105, 5, -1))


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
