"""Tests for fl_edge_agent.device_identity: the persisted device id."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fl_edge_agent.device_identity import DeviceIdentity


def test_load_is_none_before_save(tmp_path: Path) -> None:
    identity = DeviceIdentity(tmp_path)
    assert identity.path == tmp_path / "device.json"
    assert identity.load() is None
    assert not identity.path.exists()


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    DeviceIdentity(tmp_path).save("dev-0123abcd")
    assert DeviceIdentity(tmp_path).load() == "dev-0123abcd"
    assert json.loads((tmp_path / "device.json").read_text()) == {"device_id": "dev-0123abcd"}


def test_save_replaces_previous_id(tmp_path: Path) -> None:
    identity = DeviceIdentity(tmp_path)
    identity.save("first")
    identity.save("second")
    assert identity.load() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json"]


def test_save_creates_missing_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "nested" / "state"
    DeviceIdentity(state_dir).save("dev-1")
    assert DeviceIdentity(state_dir).load() == "dev-1"


def test_saved_file_is_private(tmp_path: Path) -> None:
    identity = DeviceIdentity(tmp_path)
    identity.save("dev-1")
    assert stat.S_IMODE(identity.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "\x00\x01\x02",
        "[]",
        '"dev-1"',
        "{}",
        '{"device_id": 42}',
        '{"device_id": ""}',
        '{"device_id": null}',
    ],
)
def test_corrupt_file_yields_none(tmp_path: Path, content: str) -> None:
    (tmp_path / "device.json").write_text(content)
    assert DeviceIdentity(tmp_path).load() is None


def test_undecodable_bytes_yield_none(tmp_path: Path) -> None:
    (tmp_path / "device.json").write_bytes(b"\xff\xfe\x80garbage")
    assert DeviceIdentity(tmp_path).load() is None


def test_directory_in_place_of_file_yields_none(tmp_path: Path) -> None:
    (tmp_path / "device.json").mkdir()
    assert DeviceIdentity(tmp_path).load() is None


def test_save_after_corruption_recovers(tmp_path: Path) -> None:
    (tmp_path / "device.json").write_text("{broken")
    identity = DeviceIdentity(tmp_path)
    assert identity.load() is None
    identity.save("dev-new")
    assert identity.load() == "dev-new"
