"""`flctl runs start` with robust-training and privacy flags, against the real REST API."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from tests.coordinator.api_harness import FakeControl, Harness, api_harness

from fl_coordinator import flctl
from fl_coordinator.flctl import EXIT_USAGE, Api, CliError, execute
from fl_coordinator.flctl import _parser as flctl_parser
from fl_coordinator.flctl_runs import ROBUST_FIELDS
from fl_shared.wire import Aggregation, PrivacyMode, RunRequest


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Harness, FakeControl]]:
    control = FakeControl()
    with api_harness(tmp_path, control) as harness:
        yield harness, control


def _forwarding_api(harness: Harness, seen: list[dict[str, Any]] | None = None) -> Api:
    """flctl's Api whose requests go to the coordinator app in ``harness``."""

    def forward(request: httpx.Request) -> httpx.Response:
        if seen is not None and request.content:
            seen.append(json.loads(request.content))
        answer = harness.client.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers={"content-type": request.headers.get("content-type", "")},
        )
        return httpx.Response(answer.status_code, content=answer.content)

    return Api("http://coordinator", transport=httpx.MockTransport(forward))


def _start(harness: Harness, *flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`flctl --json runs start FLAGS`: the run it printed and the body it sent."""
    seen: list[dict[str, Any]] = []
    out = io.StringIO()
    args = flctl_parser().parse_args(["--json", "runs", "start", *flags])
    assert execute(args, _forwarding_api(harness, seen), out) == 0
    (body,) = seen
    return json.loads(out.getvalue()), body


def test_a_robust_run_is_recorded_with_its_options_and_only_those_flags_are_sent(
    env: Any,
) -> None:
    harness, control = env
    run, body = _start(
        harness,
        "--min-devices",
        "5",
        "--aggregation",
        "krum",
        "--krum-malicious-devices",
        "1",
        "--screening-max-norm",
        "20",
        "--screening-mad-k",
        "off",
    )
    robust = {field: body[field] for field in ROBUST_FIELDS if field in body}
    assert robust == {
        "aggregation": "krum",
        "krum_malicious_devices": 1,
        "screening_max_norm": 20.0,
        "screening_mad_k": None,
    }
    request = harness.client.get(f"/api/v1/runs/{run['run_id']}").json()["request"]
    assert {k: request[k] for k in robust} == robust
    # What flctl left out took the coordinator's defaults.
    defaults = RunRequest()
    assert (request["privacy"], request["trimmed_avg_beta"]) == (
        defaults.privacy,
        defaults.trimmed_avg_beta,
    )
    (config,) = control.configs
    assert (config["aggregation"], config["krum-malicious-devices"]) == ("krum", 1)

    shown = io.StringIO()
    api = _forwarding_api(harness)
    execute(flctl_parser().parse_args(["runs", "show", str(run["run_id"])]), api, shown)
    assert "aggregation krum (tolerating 1 poisoned), privacy none" in shown.getvalue()


def test_dp_runs_are_recorded_with_their_privacy_options(env: Any) -> None:
    harness, control = env
    central, _ = _start(
        harness,
        "--privacy",
        "central",
        "--dp-noise-multiplier",
        "1.5",
        "--dp-clipping-norm",
        "0.5",
        "--dp-delta",
        "1e-6",
    )
    local, body = _start(
        harness,
        "--aggregation",
        "fedtrimmedavg",
        "--trimmed-avg-beta",
        "0.25",
        "--privacy",
        "local",
        "--dp-epsilon",
        "8",
        "--dp-sensitivity",
        "1.5",
    )
    assert "dp_noise_multiplier" not in body and "screening_mad_k" not in body
    got = harness.client.get(f"/api/v1/runs/{central['run_id']}").json()["request"]
    assert (got["aggregation"], got["privacy"]) == ("fedavg", "central")
    assert (got["dp_noise_multiplier"], got["dp_clipping_norm"], got["dp_delta"]) == (
        1.5,
        0.5,
        1e-6,
    )
    got = harness.client.get(f"/api/v1/runs/{local['run_id']}").json()["request"]
    assert (got["aggregation"], got["trimmed_avg_beta"], got["privacy"]) == (
        "fedtrimmedavg",
        0.25,
        "local",
    )
    assert (got["dp_epsilon"], got["dp_sensitivity"]) == (8.0, 1.5)
    assert [(c["privacy"], c["aggregation"]) for c in control.configs] == [
        ("central", "fedavg"),
        ("local", "fedtrimmedavg"),
    ]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (
            ["--privacy", "central", "--aggregation", "krum"],
            "privacy: central differential privacy works with aggregation 'fedavg' only",
        ),
        (["--aggregation", "fedtrimmedavg", "--trimmed-avg-beta", "0.5"], "trimmed_avg_beta:"),
        (["--dp-delta", "1"], "dp_delta: Input should be less than 1"),
    ],
)
def test_a_refused_combination_exits_non_zero_with_one_line_on_stderr(
    env: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    flags: list[str],
    says: str,
) -> None:
    harness, control = env
    monkeypatch.setenv("FLCTL_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setattr(flctl, "Api", lambda *_a, **_k: _forwarding_api(harness))
    code = flctl.main(["--url", "http://coordinator", "runs", "start", *flags])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("flctl: 422: ") and says in line, line
    assert control.configs == []  # nothing reached the SuperLink
    assert harness.client.get("/api/v1/runs").json() == []


def test_choices_come_from_the_wire_types(capsys: pytest.CaptureFixture[str]) -> None:
    start = _start_parser()
    choices = {a.dest: a.choices for a in start._actions if a.choices}
    assert tuple(choices["aggregation"]) == get_args(Aggregation)
    assert tuple(choices["privacy"]) == get_args(PrivacyMode)
    with pytest.raises(SystemExit) as info:
        flctl_parser().parse_args(["runs", "start", "--aggregation", "median"])
    assert info.value.code == EXIT_USAGE
    assert "invalid choice: 'median'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "big"])
def test_a_number_flag_refuses_what_is_not_a_finite_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        flctl_parser().parse_args(["runs", "start", "--dp-noise-multiplier", value])
    assert info.value.code == EXIT_USAGE
    assert f"argument --dp-noise-multiplier: {value!r} is not a" in capsys.readouterr().err


def test_robust_flags_are_refused_with_your_own_app() -> None:
    args = flctl_parser().parse_args(["runs", "start", "--app", ".", "--privacy", "local"])
    with pytest.raises(CliError) as info:
        execute(
            args, Api("http://coordinator", transport=httpx.MockTransport(_never)), io.StringIO()
        )
    assert info.value.code == EXIT_USAGE
    assert str(info.value).startswith("--privacy applies to the built-in training, not to --app")


def test_the_help_shows_a_robust_run_and_a_dp_run() -> None:
    text = _start_parser().format_help()
    assert "flctl runs start --aggregation krum --krum-malicious-devices 1" in text
    assert "flctl runs start --privacy central --dp-noise-multiplier" in text
    for field in ROBUST_FIELDS:
        assert "--" + field.replace("_", "-") in text


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


def _start_parser() -> argparse.ArgumentParser:
    parser = flctl_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    runs = groups.choices["runs"]
    actions = next(a for a in runs._actions if isinstance(a, argparse._SubParsersAction))
    start: argparse.ArgumentParser = actions.choices["start"]
    return start
