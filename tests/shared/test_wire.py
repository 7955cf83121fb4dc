"""Tests for fl_shared.wire: forward compatibility, RunRequest validation, wire_major."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from fl_shared.catalog import DATASET_NAMES, MODEL_NAMES, PARTITIONER_NAMES
from fl_shared.wire import (
    WIRE_MAJOR,
    WIRE_VERSION,
    DeviceRegistered,
    DeviceRegistration,
    ErrorBody,
    Heartbeat,
    HeartbeatAck,
    RunRequest,
    wire_major,
)


def test_wire_version_matches_major() -> None:
    assert wire_major(WIRE_VERSION) == WIRE_MAJOR


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (DeviceRegistered, {"device_id": "d", "heartbeat_interval_s": 5, "region": "eu"}),
        (DeviceRegistration, {"name": "n", "firmware": {"v": 2}, "schema_version": "1.7"}),
        (Heartbeat, {"device_id": "d", "gpu_temp_c": 61.5}),
        (
            HeartbeatAck,
            {"device_id": "d", "server_time": "2026-01-01T00:00:00Z", "next_beat_s": 3},
        ),
        (ErrorBody, {"error": "x", "detail": "y", "fields": ["a"]}),
        (RunRequest, {"model": "cnn", "new_knob": True}),
    ],
)
def test_unknown_fields_are_ignored(model: type, payload: dict[str, object]) -> None:
    parsed = model.model_validate(payload)
    from_json = model.model_validate_json(json.dumps(payload))
    known = set(model.model_fields)
    extra = set(payload) - known
    assert extra, "the payload must carry at least one unknown field"
    dumped = parsed.model_dump()
    assert set(dumped) == known
    assert not extra & set(dumped)
    assert from_json.model_dump() == dumped


def test_newer_minor_version_still_parses() -> None:
    beat = Heartbeat.model_validate({"schema_version": "1.9", "device_id": "d"})
    assert beat.schema_version == "1.9"
    assert wire_major(beat.schema_version) == WIRE_MAJOR


def test_heartbeat_rejects_unknown_supernode_state() -> None:
    with pytest.raises(ValidationError, match="supernode_state"):
        Heartbeat(device_id="d", supernode_state="exploded")  # type: ignore[arg-type]


def test_heartbeat_ack_parses_time() -> None:
    ack = HeartbeatAck.model_validate_json(
        '{"device_id": "d", "server_time": "2026-01-02T03:04:05Z"}'
    )
    assert ack.server_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_run_request_defaults_are_valid() -> None:
    request = RunRequest()
    assert request.model in MODEL_NAMES
    assert request.dataset in DATASET_NAMES
    assert request.partitioner in PARTITIONER_NAMES


@pytest.mark.parametrize(
    ("field", "bad", "valid"),
    [
        ("model", "gpt-5", MODEL_NAMES),
        ("dataset", "imagenet", DATASET_NAMES),
        ("partitioner", "shard", PARTITIONER_NAMES),
    ],
)
def test_run_request_rejects_unknown_names_listing_valid_ones(
    field: str, bad: str, valid: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        RunRequest.model_validate({field: bad})
    errors = info.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == (field,)
    message = errors[0]["msg"]
    assert bad in message
    for name in valid:
        assert name in message


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_run_request_accepts_every_catalog_model(name: str) -> None:
    assert RunRequest(model=name).model == name


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_rounds", 0),
        ("min_devices", 0),
        ("learning_rate", 0),
        ("fraction_evaluate", 1.5),
        ("dirichlet_alpha", 0),
        ("batch_size", 0),
    ],
)
def test_run_request_range_checks(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        RunRequest.model_validate({field: value})
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("version", "major"),
    [("1.3", 1), ("1.0", 1), ("2.0", 2), ("10.4", 10), ("1", 1), ("3.x.y", 3)],
)
def test_wire_major_parses(version: str, major: int) -> None:
    assert wire_major(version) == major


@pytest.mark.parametrize("version", ["x", "", ".1", "v1.0", "-1.0", " 1.0", "one.two"])
def test_wire_major_unparseable_is_zero(version: str) -> None:
    assert wire_major(version) == 0


def test_wire_major_unicode_digit_is_zero() -> None:
    # Regression: wire_major (wire.py:27-30) guards int() with str.isdigit(), which is also true
    # for characters int() cannot parse, such as superscript digits: wire_major("².0") raises
    # ValueError instead of returning 0. The value comes from peers (schema_version in every
    # request), so the coordinator answers 500 instead of 426. Fix: use
    # `head.isascii() and head.isdigit()` (or try/except ValueError around int()).
    assert wire_major("².0") == 0
