"""Oversized request bodies get 413 JSON and change nothing (real app, real registry)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.coordinator.api_harness import Harness, api_harness

from fl_coordinator.body_limit import DEFAULT_LIMIT_BYTES, LIMITS_BY_PATH


class NoControl:
    def start_fab(self, fab: bytes, overrides: dict[str, Any]) -> int:
        raise AssertionError("an oversized app must never reach the SuperLink")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with api_harness(tmp_path, NoControl()) as harness:
        yield harness


def test_a_huge_registration_is_413_and_registers_nothing(harness: Harness) -> None:
    body = {"name": "dev", "labels": {"blob": "x" * (DEFAULT_LIMIT_BYTES + 10)}}
    answer = harness.client.post("/api/v1/devices", json=body)
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"
    assert str(DEFAULT_LIMIT_BYTES) in answer.json()["detail"]
    assert harness.registry.list_devices() == []


def test_a_streamed_body_without_length_is_cut_off_too(harness: Harness) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "dev", "hostname": "'
        for _ in range(40):
            yield b"y" * 32_768  # 1.25 MiB in all, no Content-Length
        yield b'"}'

    answer = harness.client.post(
        "/api/v1/devices", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert harness.registry.list_devices() == []


def test_an_app_upload_has_its_own_larger_limit(harness: Harness) -> None:
    small_but_over_default = base64.b64encode(b"z" * (DEFAULT_LIMIT_BYTES + 1)).decode()
    answer = harness.client.post("/api/v1/runs/app", json={"fab_base64": small_but_over_default})
    assert answer.status_code == 422  # read and refused as a bundle, not as too large
    too_big = "A" * (LIMITS_BY_PATH["/api/v1/runs/app"] + 1)
    answer = harness.client.post("/api/v1/runs/app", json={"fab_base64": too_big})
    assert answer.status_code == 413
    assert harness.registry.list_runs() == []
