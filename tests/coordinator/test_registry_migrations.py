"""Registry migrations on SQLite and PostgreSQL: fresh databases, adopted 0.1 ones, mismatches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
    text,
)

from fl_coordinator.errors import ConfigError, RegistryError
from fl_coordinator.migrations import alembic_config, head_revision
from fl_coordinator.migrations.migrator import script_location
from fl_coordinator.registry import DeviceFilter, Registry
from fl_coordinator.registry_schema import Base
from fl_shared.capabilities import Capabilities, SpeedScore
from fl_shared.wire import (
    DeviceRegistration,
    Heartbeat,
    RoundReport,
    RunRequest,
    SelectionDecision,
)

T0 = datetime(2025, 12, 1, tzinfo=UTC)


def _release_0_1_tables(with_status: bool = True) -> MetaData:
    """The registry exactly as release 0.1 built it with create_all()."""
    meta = MetaData()
    Table(
        "devices",
        meta,
        Column("device_id", String(64), primary_key=True),
        Column("name", String(128), nullable=False),
        Column("hostname", String(255), nullable=False),
        Column("platform", String(255), nullable=False),
        Column("agent_version", String(64), nullable=False),
        Column("labels", JSON, nullable=False),
        Column("registered_at", DateTime(timezone=True), nullable=False),
        Column("last_heartbeat_at", DateTime(timezone=True)),
        Column("supernode_state", String(32), nullable=False),
        Column("supernode_restarts", Integer, nullable=False),
    )
    if with_status:
        Table(
            "device_status",
            meta,
            Column(
                "device_id",
                ForeignKey("devices.device_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            Column("heartbeat", JSON),
            Column("capabilities", JSON),
            Column("capabilities_at", DateTime(timezone=True)),
        )
    Table(
        "runs",
        meta,
        Column("run_id", Integer, primary_key=True, autoincrement=True),
        Column("flower_run_id", String(24), index=True),
        Column("status", String(16), nullable=False, index=True),
        Column("detail", Text, nullable=False),
        Column("request", JSON, nullable=False),
        Column("report_token", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
    )
    Table(
        "rounds",
        meta,
        Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        Column("round", Integer, primary_key=True),
        Column("report", JSON, nullable=False),
    )
    return meta


def _device(device_id: str, **labels: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "name": device_id,
        "hostname": "h",
        "platform": "Linux",
        "agent_version": "0.1.0",
        "labels": labels,
        "registered_at": T0,
        "last_heartbeat_at": T0,
        "supernode_state": "running",
        "supernode_restarts": 0,
    }


def _build_release_0_1(url: str, *, with_status: bool = True) -> None:
    meta = _release_0_1_tables(with_status)
    engine = create_engine(url)
    meta.create_all(engine)
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(
            insert(t["devices"]),
            [_device("dev-orin", site="lab"), _device("dev-pi", site="field", rack="2")],
        )
        if with_status:
            conn.execute(
                insert(t["device_status"]),
                [
                    {
                        "device_id": "dev-orin",
                        "heartbeat": {"device_id": "dev-orin", "activity": "idle"},
                        "capabilities": {
                            "identity": {"arch": "aarch64"},
                            "jetson": {"model": "NVIDIA Jetson AGX Orin"},
                        },
                        "capabilities_at": T0,
                    }
                ],
            )
        conn.execute(
            insert(t["runs"]),
            [
                {
                    "status": "completed",
                    "detail": "final accuracy 0.8",
                    "request": {"model": "cnn", "dataset": "digits", "num_rounds": 1},
                    "report_token": "t" * 43,
                    "created_at": T0,
                    "finished_at": T0,
                }
            ],
        )
        device = {"node_id": 1, "num_examples": 50, "train_loss": 0.7, "train_seconds": 3.0}
        conn.execute(
            insert(t["rounds"]),
            [
                {"run_id": 1, "round": 0, "report": {"round": 0, "eval_accuracy": 0.1}},
                {
                    "run_id": 1,
                    "round": 1,
                    "report": {
                        "round": 1,
                        "eval_accuracy": 0.8,
                        "devices": [
                            {**device, "device_id": "dev-orin"},
                            {**device, "device_id": "dev-pi", "train_loss": 0.9},
                        ],
                    },
                },
            ],
        )
    engine.dispose()


def test_fresh_database_matches_the_models(database_url: str) -> None:
    registry = Registry(database_url)
    outcome = registry.migrate()
    assert (outcome.before, outcome.after, outcome.adopted) == (None, head_revision(), False)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        # What the migrations built is what the ORM expects: no column, index or type drifts.
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    again = registry.migrate()
    assert (again.before, again.after) == (head_revision(), head_revision())
    registry.close()


@pytest.mark.parametrize("with_status", [True, False], ids=["0.1", "0.1-early"])
def test_release_0_1_registry_is_adopted_without_losing_rows(
    database_url: str, with_status: bool
) -> None:
    _build_release_0_1(database_url, with_status=with_status)
    registry = Registry(database_url, clock=lambda: T0)
    outcome = registry.migrate()
    assert (outcome.before, outcome.after, outcome.adopted) == (None, head_revision(), True)

    devices = {d.device_id: d for d in registry.list_devices()}
    assert set(devices) == {"dev-orin", "dev-pi"}
    assert devices["dev-pi"].labels == {"site": "field", "rack": "2"}
    assert devices["dev-orin"].status == "online"
    # Labels and hardware were indexed from the old rows.
    assert [d.device_id for d in registry.list_devices(DeviceFilter(labels={"rack": "2"}))] == [
        "dev-pi"
    ]
    gpu = [d.device_id for d in registry.list_devices(DeviceFilter(has_gpu=True))]
    assert gpu == (["dev-orin"] if with_status else [])
    if with_status:
        assert devices["dev-orin"].capabilities is not None
        assert registry.list_devices(DeviceFilter(arch="aarch64"))[0].device_id == "dev-orin"

    run = registry.get_run(1)
    assert (run.status, run.final_accuracy, run.attempt, run.selection_policy) == (
        "completed",
        0.8,
        1,
        "fedavg-all",
    )
    participation = registry.device_detail("dev-pi").participation
    assert [(p.run_id, p.round, p.train_loss) for p in participation] == [(1, 1, 0.9)]

    # The adopted registry keeps working: new rows, new runs (ids continue).
    assert registry.record_heartbeat(Heartbeat(device_id="dev-pi")) is not None
    run_id, _ = registry.create_run(run.request)
    assert run_id == 2
    registry.record_round(run_id, RoundReport(round=1))
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    registry.close()


def test_credentials_revision_downgrades_and_upgrades_again(database_url: str) -> None:
    registry = Registry(database_url)
    registry.migrate()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    with engine.connect() as conn:
        assert "api_tokens" not in inspect(conn).get_table_names()
    # SQLite keeps the two device columns on downgrade; the upgrade must cope with them.
    assert registry.migrate().before == "0003"
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    registry.close()


def test_dashboard_revision_fills_speed_and_selection_from_stored_rows(database_url: str) -> None:
    registry = Registry(database_url, clock=lambda: T0)
    registry.migrate()
    fast = registry.register_device(DeviceRegistration(device_id="dev-fast", name="fast"))
    slow = registry.register_device(DeviceRegistration(device_id="dev-slow", name="slow"))
    registry.register_device(DeviceRegistration(device_id="dev-unprobed", name="unprobed"))
    for device, speed in ((fast, 900.0), (slow, 12.5)):
        registry.record_capabilities(
            device.device_id, Capabilities(speed=SpeedScore(torch_train_samples_per_s=speed))
        )
    run_id, _ = registry.create_run(RunRequest())
    decisions = [
        SelectionDecision(device_id="dev-fast", selected=True, reason="fastest", score=3.0),
        SelectionDecision(device_id="dev-slow", selected=False, reason="slow", predicted_s=9.0),
    ]
    registry.record_round(run_id, RoundReport(round=1, selection=decisions))
    engine = create_engine(database_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004")
    with engine.begin() as conn:
        assert "round_selection" not in inspect(conn).get_table_names()
        if "train_samples_per_s" in {c["name"] for c in inspect(conn).get_columns("devices")}:
            # SQLite keeps the column on downgrade: forget its values, the upgrade refills them.
            conn.execute(text("UPDATE devices SET train_samples_per_s = NULL"))
    assert registry.migrate().before == "0004"
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    by_speed = registry.device_page(DeviceFilter(), limit=None, sort="-speed").items
    assert [d.device_id for d in by_speed] == ["dev-fast", "dev-slow", "dev-unprobed"]
    history = registry.device_detail("dev-slow").selection_history
    assert [(h.run_id, h.round, h.selected, h.reason, h.predicted_s) for h in history] == [
        (run_id, 1, False, "slow", 9.0)
    ]
    assert registry.device_detail("dev-fast").selection_history[0].score == 3.0
    registry.close()


def test_registry_from_a_newer_release_is_refused(database_url: str) -> None:
    registry = Registry(database_url)
    registry.migrate()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(RegistryError, match="newer release"):
        registry.migrate()
    registry.close()


def test_unusable_urls_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="database_url"):
        Registry("mysql+nodriver://x/y")
    down = Registry("postgresql+psycopg://nobody@127.0.0.1:1/registry")
    with pytest.raises(RegistryError, match="check database_url"):
        down.migrate()
    down.close()


def test_migrations_ship_inside_the_package() -> None:
    location = script_location()
    assert location.parent.name == "fl_coordinator"
    assert (location / "env.py").is_file() and (location / "script.py.mako").is_file()
    assert head_revision() == "0005"
    assert sorted(p.name for p in (location / "versions").glob("v*.py")) == [
        "v0001_baseline.py",
        "v0002_fleet_states.py",
        "v0003_nullable_train_loss.py",
        "v0004_credentials.py",
        "v0005_dashboard.py",
    ]
