"""flctl against a faked REST API: tables, JSON, and one-line errors."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import httpx
import pytest

from fl_coordinator.flctl import EXIT_UNREACHABLE, EXIT_USAGE, Api, CliError, _parser, execute

DEVICE = {
    "device_id": "dev-1",
    "name": "jetson-a",
    "online": True,
    "supernode_state": "running",
    "platform": "Linux-aarch64",
    "agent_version": "0.1.0",
    "last_heartbeat_at": "2026-01-01T00:00:00Z",
}
RUN = {
    "run_id": 4,
    "status": "completed",
    "detail": "final accuracy 0.8000",
    "request": {
        "model": "cnn",
        "dataset": "digits",
        "partitioner": "iid",
        "num_rounds": 1,
        "min_devices": 2,
    },
    "created_at": "2026-01-01T00:00:00Z",
    "rounds": [
        {
            "round": 0,
            "devices": [],
            "train_loss": None,
            "eval_loss": 2.3,
            "eval_accuracy": 0.1,
            "seconds": 0.0,
        },
        {
            "round": 1,
            "devices": [{}, {}],
            "train_loss": 0.5,
            "eval_loss": 0.6,
            "eval_accuracy": 0.8,
            "seconds": 12.5,
        },
    ],
    "final_accuracy": 0.8,
    "checkpoint": "/m/run-4/round-0001.pt",
}


def _run(argv: list[str], handler: Any) -> tuple[int, str, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[no-any-return]

    args = _parser().parse_args(argv)
    out = io.StringIO()
    code = execute(args, Api("http://coord:8080", transport=httpx.MockTransport(record)), out)
    return code, out.getvalue(), seen


def test_devices_list_table() -> None:
    code, out, _ = _run(["devices", "list"], lambda r: httpx.Response(200, json=[DEVICE]))
    assert code == 0
    header, rule, row = out.splitlines()
    assert header.split()[:3] == ["DEVICE", "NAME", "STATUS"]
    assert set(rule) == {"─"}  # the rule under the headers; no colour codes off a terminal
    assert row.split()[:4] == ["dev-1", "jetson-a", "online", "running"]


def test_runs_show_table_and_json() -> None:
    code, out, _ = _run(["runs", "show", "4"], lambda r: httpx.Response(200, json=RUN))
    assert code == 0
    assert out.startswith("run 4: completed (final accuracy 0.8000)")
    assert any(
        line.split()[:5] == ["1", "2", "0.5000", "0.6000", "0.8000"] for line in out.splitlines()
    )
    assert "checkpoint: /m/run-4/round-0001.pt" in out
    code, out, _ = _run(["--json", "runs", "show", "4"], lambda r: httpx.Response(200, json=RUN))
    assert json.loads(out)["final_accuracy"] == 0.8


def test_runs_start_sends_the_request() -> None:
    code, _, seen = _run(
        ["runs", "start", "--model", "mlp", "--dataset", "digits", "--rounds", "2"],
        lambda r: httpx.Response(201, json=RUN),
    )
    body = json.loads(seen[0].content)
    assert (seen[0].method, seen[0].url.path) == ("POST", "/api/v1/runs")
    assert (body["model"], body["dataset"], body["num_rounds"]) == ("mlp", "digits", 2)
    assert code == 0


def test_4xx_is_one_line_with_the_servers_detail() -> None:
    def reject(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": "invalid_request", "detail": "model: unknown"})

    with pytest.raises(CliError) as info:
        _run(["runs", "start", "--model", "x"], reject)
    assert info.value.code == EXIT_USAGE and str(info.value) == "422: model: unknown"


def test_unreachable_coordinator_says_how_to_fix() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CliError) as info:
        _run(["devices", "list"], down)
    assert info.value.code == EXIT_UNREACHABLE
    assert "--url" in str(info.value) and "\n" not in str(info.value)


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, (*path, name))
    return found


def test_every_command_and_group_has_an_example_in_its_help() -> None:
    commands = _commands(_parser())
    assert len(commands) > 15  # flctl, its groups and their actions
    for path, parser in commands:
        text = parser.format_help().replace("--json ", "")
        assert "example" in text and " ".join(("flctl", *path)) in text, path
