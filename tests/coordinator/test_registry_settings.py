"""Registry settings: device-state thresholds and database URLs, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_coordinator.settings import CoordinatorSettings
from fl_shared.errors import SettingsError


def _load(**flags: object) -> CoordinatorSettings:
    return CoordinatorSettings.load(None, "coordinator", insecure=True, **flags)


def test_thresholds_default_to_the_heartbeat_settings() -> None:
    settings = _load()
    assert (settings.stale_after_s, settings.offline_after_s) == (30.0, 50.0)
    slow = _load(heartbeat_interval_s=20, heartbeat_timeout_s=70)
    assert (slow.stale_after_s, slow.offline_after_s) == (40.0, 70.0)
    # A short timeout caps the default stale threshold rather than refusing to start.
    tight = _load(heartbeat_interval_s=15, heartbeat_timeout_s=20)
    assert (tight.stale_after_s, tight.offline_after_s) == (20.0, 20.0)
    own = _load(device_stale_after_s=45, device_offline_after_s=120)
    assert (own.stale_after_s, own.offline_after_s) == (45.0, 120.0)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"device_stale_after_s": 60, "device_offline_after_s": 50}, "device_stale_after_s"),
        ({"device_offline_after_s": 10}, "device_offline_after_s"),
        ({"device_stale_after_s": 0}, "device_stale_after_s"),
        ({"database_url": "mysql://u@h/db"}, "database_url"),
        ({"database_url": "not a url"}, "database_url"),
    ],
)
def test_bad_settings_are_one_line_naming_the_setting(flags: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError) as info:
        _load(**flags)
    assert field in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://fl:pw@db:5432/registry", "postgresql+psycopg://fl:pw@db:5432/registry"),
        ("postgres://fl@db/registry", "postgresql+psycopg://fl@db/registry"),
        ("postgresql+psycopg://fl@db/registry", "postgresql+psycopg://fl@db/registry"),
        ("sqlite:////srv/registry.db", "sqlite:////srv/registry.db"),
    ],
)
def test_database_urls_use_psycopg_3(given: str, used: str) -> None:
    assert _load(database_url=given).resolved_database_url == used


def test_default_database_is_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    assert _load(state_dir=tmp_path).resolved_database_url == f"sqlite:///{tmp_path}/registry.db"
