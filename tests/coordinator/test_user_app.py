"""A user's own Flower App: bundle checks, config overrides, the REST route and flctl's builder."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from flwr.cli.build import build_fab_from_disk
from tests.coordinator.api_harness import api_harness

from fl_coordinator.flctl_api import CliError
from fl_coordinator.flctl_runs import _build_app, _overrides
from fl_coordinator.user_app import InvalidApp, check_overrides, inspect_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byo-app"


def _fab(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def test_the_example_app_is_a_valid_bundle() -> None:
    info = inspect_app(build_fab_from_disk(EXAMPLE))
    assert info.source == "app:example/my-fleet-app@1.0.0"
    assert info.serverapp == "my_fleet_app.server_app:app"
    assert info.config["num-server-rounds"] == 2
    check_overrides(info, {"num-server-rounds": 3, "learning-rate": 0.1})


def test_unknown_override_names_the_key_and_the_declared_ones() -> None:
    info = inspect_app(build_fab_from_disk(EXAMPLE))
    with pytest.raises(
        InvalidApp, match=r"config keys rounds are not declared .*num-server-rounds"
    ):
        check_overrides(info, {"rounds": 3})


@pytest.mark.parametrize(
    ("fab", "message"),
    [
        (b"not a zip", "not a Flower App Bundle"),
        (_fab({"README.md": "hi"}), "not a valid Flower App"),
        (
            _fab(
                {
                    "pyproject.toml": '[project]\nname = "x"\nversion = "1.0.0"\n'
                    '[tool.flwr.app]\npublisher = "p"\n[tool.flwr.app.components]\n'
                    'serverapp = "x.server:app"\n'
                }
            ),
            '"clientapp" missing',
        ),
    ],
)
def test_bad_bundles_are_refused_with_the_fix(fab: bytes, message: str) -> None:
    with pytest.raises(InvalidApp, match=message):
        inspect_app(fab)


def test_flctl_overrides_are_typed_like_toml() -> None:
    assert _overrides(["a=3", "b=0.5", "c=true", "d=word", 'e="quoted"']) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "word",
        "e": "quoted",
    }
    with pytest.raises(CliError, match="expected KEY=VALUE"):
        _overrides(["novalue"])


def test_flctl_refuses_a_directory_without_pyproject(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"has no pyproject\.toml"):
        _build_app(tmp_path)
    assert inspect_app(base64.b64decode(_build_app(EXAMPLE))).name == "my-fleet-app"


class FakeControl:
    def __init__(self) -> None:
        self.fabs: list[tuple[bytes, dict[str, Any]]] = []

    def start_fab(self, fab: bytes, overrides: dict[str, Any]) -> int:
        self.fabs.append((fab, overrides))
        return 99


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, FakeControl]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness.client, control


def test_rest_runs_an_app_and_labels_the_run(api: Any) -> None:
    client, control = api
    fab = build_fab_from_disk(EXAMPLE)
    body = {"fab_base64": base64.b64encode(fab).decode(), "config": {"num-server-rounds": 3}}
    answer = client.post("/api/v1/runs/app", json=body)
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["app_source"] == "app:example/my-fleet-app@1.0.0"
    assert run["status"] == "starting" and run["flower_run_id"] == 99
    assert control.fabs == [(fab, {"num-server-rounds": 3})]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"fab_base64": "%%%"}, "not valid base64"),
        ({"fab_base64": base64.b64encode(b"zip?").decode()}, "not a Flower App Bundle"),
        ({"fab_base64": "", "config": {"k": [1]}}, "config.k"),
    ],
)
def test_rest_refuses_bad_apps_with_422(api: Any, body: dict[str, Any], detail: str) -> None:
    client, control = api
    answer = client.post("/api/v1/runs/app", json=body)
    assert answer.status_code == 422
    assert detail in answer.json()["detail"]
    assert control.fabs == []
