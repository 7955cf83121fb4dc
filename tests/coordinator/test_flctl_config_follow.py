"""flctl: where it finds the coordinator and its token, and `runs start --follow`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fl_coordinator.flctl import _parser, execute
from fl_coordinator.flctl_api import Api, CliError
from fl_coordinator.flctl_config import resolve
from fl_coordinator.flctl_runs import follow_progress, progress_line


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("FLCTL_URL", "FLCTL_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLCTL_CONFIG", str(tmp_path / "config.toml"))


def test_flag_beats_env_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve(None, None).url == "http://127.0.0.1:8080"
    (tmp_path / "config.toml").write_text('url = "http://file:1"\ntoken = "from-file"\n')
    assert resolve(None, None) == type(resolve(None, None))("http://file:1", "from-file")
    monkeypatch.setenv("FLCTL_URL", "http://env:2")
    monkeypatch.setenv("FLCTL_TOKEN", "from-env")
    assert (resolve(None, None).url, resolve(None, None).token) == ("http://env:2", "from-env")
    assert resolve("http://flag:3", "from-flag").token == "from-flag"
    assert resolve("http://flag:3", None).url == "http://flag:3"


@pytest.mark.parametrize(
    ("text", "message"),
    [("url = ", "cannot read"), ('adress = "http://x"\n', "unknown keys adress")],
)
def test_a_bad_config_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(CliError, match=message):
        resolve(None, None)


def test_the_token_goes_out_as_a_bearer_token() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=[])

    transport = httpx.MockTransport(handler)
    Api("http://c", transport, token="s3cret").call("GET", "/api/v1/runs")
    Api("http://c", transport).call("GET", "/api/v1/runs")
    assert seen == ["Bearer s3cret", None]


def _run(status: str, rounds: int, total: int = 3) -> dict[str, Any]:
    return {
        "run_id": 7,
        "status": status,
        "detail": "final accuracy 0.8800" if status == "completed" else "",
        "app_source": "builtin",
        "request": {
            "num_rounds": total,
            "model": "cnn",
            "dataset": "digits",
            "partitioner": "iid",
            "min_devices": 2,
        },
        "checkpoint": None,
        "rounds": [
            {
                "round": r,
                "eval_accuracy": 0.1 + 0.25 * r,
                "eval_loss": None,
                "train_loss": None,
                "devices": [{}, {}],
                "seconds": 3.0,
            }
            for r in range(rounds + 1)
        ],
    }


def test_follow_prints_each_round_once_then_the_outcome() -> None:
    states = iter([_run("running", 1), _run("running", 1), _run("completed", 3)])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(states))

    out = io.StringIO()
    api = Api("http://c", httpx.MockTransport(handler))
    ended = follow_progress(api, _run("starting", 0), out, poll_s=0)
    assert ended["status"] == "completed"
    assert out.getvalue().splitlines() == [
        "[#######.............] 1/3  accuracy 0.3500  devices 2  3.0 s",
        "[#############.......] 2/3  accuracy 0.6000  devices 2  3.0 s",
        "[####################] 3/3  accuracy 0.8500  devices 2  3.0 s",
        "run 7 completed: final accuracy 0.8800",
    ]


def test_runs_start_follow_exits_nonzero_when_the_run_fails() -> None:
    failed = {**_run("failed", 0), "detail": "only 1 of the 2 devices ..."}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert json.loads(request.content)["num_rounds"] == 3
            return httpx.Response(201, json=_run("starting", 0))
        return httpx.Response(200, json=failed)

    out = io.StringIO()
    args = _parser().parse_args(["runs", "start", "--rounds", "3", "--follow"])
    code = execute(args, Api("http://c", httpx.MockTransport(handler)), out)
    assert code == 1
    assert "run 7 failed: only 1 of the 2 devices" in out.getvalue()


def test_a_progress_line_for_an_app_without_a_known_total() -> None:
    line = progress_line({"round": 4, "eval_accuracy": None, "devices": [], "seconds": 1.5}, None)
    assert line == "round 4  accuracy -  devices 0  1.5 s"
