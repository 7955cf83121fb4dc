"""`flctl devices ...`: requests it sends, its tables and JSON, and a run against the real API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fl_coordinator.api_app import create_app
from fl_coordinator.flctl import EXIT_USAGE, Api, CliError, _parser, execute
from fl_coordinator.registry import Registry
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings
from fl_shared.wire import DeviceRoundResult, RoundReport, RunRequest

Handler = Callable[[httpx.Request], httpx.Response]


def _flctl(argv: list[str], handler: Handler) -> tuple[int, str, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    out = io.StringIO()
    api = Api("http://coord:8080", transport=httpx.MockTransport(record))
    code = execute(_parser().parse_args(argv), api, out)
    return code, out.getvalue(), seen


DEVICE = {
    "device_id": "dev-1",
    "name": "orin-a",
    "hostname": "orin-a",
    "platform": "Linux-aarch64",
    "agent_version": "0.2.0",
    "labels": {"site": "lab"},
    "registered_at": "2026-01-01T00:00:00Z",
    "last_heartbeat_at": "2026-01-01T00:00:10Z",
    "online": True,
    "status": "drained",
    "status_reason": "disk swap",
    "supernode_state": "running",
    "last_status": {"activity": "idle", "cpu_percent": 12.5},
    "capabilities": {"identity": {"arch": "aarch64"}, "jetson": {"model": "Jetson Orin"}},
}


def test_list_sends_filters_and_prints_a_table_with_the_page() -> None:
    page = {"items": [DEVICE], "total": 7, "limit": 1, "offset": 2, "next_offset": 3}
    code, out, seen = _flctl(
        [
            *("devices", "list", "--status", "drained", "--arch", "aarch64", "--has-gpu"),
            *("--label", "site=lab", "--label", "tier=a=b", "--limit", "1", "--offset", "2"),
        ],
        lambda r: httpx.Response(200, json=page),
    )
    assert code == 0
    params = seen[0].url.params
    assert seen[0].url.path == "/api/v1/devices"
    assert params.get_list("label") == ["site=lab", "tier=a=b"]
    assert (params["status"], params["arch"], params["has_gpu"]) == ("drained", "aarch64", "true")
    assert (params["limit"], params["offset"], params["envelope"]) == ("1", "2", "true")
    header, _rule, row, footer = out.splitlines()
    assert header.split()[:7] == ["DEVICE", "NAME", "STATUS", "SUPERNODE", "ARCH", "GPU", "LABELS"]
    assert row.split()[:8] == [
        "dev-1",
        "orin-a",
        "drained",
        "running",
        "aarch64",
        "Jetson",
        "Orin",
        "site=lab",
    ]
    assert footer == "3-3 of 7 devices; next page: --offset 3"


def test_list_json_prints_the_devices_and_no_gpu_filter() -> None:
    page = {"items": [DEVICE], "total": 1, "limit": 100, "offset": 0, "next_offset": None}
    code, out, seen = _flctl(
        ["--json", "devices", "list", "--no-has-gpu"], lambda r: httpx.Response(200, json=page)
    )
    assert code == 0 and json.loads(out) == [DEVICE]
    assert seen[0].url.params["has_gpu"] == "false" and "status" not in seen[0].url.params


def test_list_from_an_older_coordinator_plain_list() -> None:
    old = {k: v for k, v in DEVICE.items() if k not in ("status", "status_reason")}
    code, out, _ = _flctl(["devices", "list"], lambda r: httpx.Response(200, json=[old]))
    assert code == 0
    assert out.splitlines()[2].split()[2] == "online"  # derived from `online`
    assert len(out.splitlines()) == 3  # headers, rule, the device: no page footer


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "list", "--label", "site"],
        ["devices", "list", "--label", "=lab"],
        ["devices", "label", "dev-1", "site"],
        ["devices", "label", "dev-1"],
        ["devices", "label", "--replace", "dev-1", "gone-"],
    ],
)
def test_bad_arguments_are_one_line_usage_errors(argv: list[str]) -> None:
    with pytest.raises(CliError) as info:
        _flctl(argv, lambda r: httpx.Response(500))
    assert info.value.code == EXIT_USAGE and "\n" not in str(info.value)


def test_label_sends_a_merge_patch_or_a_replacement() -> None:
    def answer(r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=DEVICE)

    code, out, seen = _flctl(["devices", "label", "dev-1", "site=lab", "rack=4", "old-"], answer)
    assert (seen[0].method, seen[0].url.path) == ("PATCH", "/api/v1/devices/dev-1/labels")
    assert json.loads(seen[0].content) == {"labels": {"site": "lab", "rack": "4", "old": None}}
    assert code == 0 and out == "dev-1: drained (disk swap), labels site=lab\n"
    _, _, seen = _flctl(["devices", "label", "dev-1", "site=lab", "--replace"], answer)
    assert seen[0].method == "PUT"
    assert json.loads(seen[0].content) == {"labels": {"site": "lab"}}
    _, _, seen = _flctl(["devices", "label", "dev-1", "--replace"], answer)
    assert json.loads(seen[0].content) == {"labels": {}}  # clears every label


@pytest.mark.parametrize("action", ["drain", "undrain", "revoke", "unrevoke"])
def test_admin_actions_post_to_the_device(action: str) -> None:
    argv = ["devices", action, "dev/odd id"]
    if action in ("drain", "revoke"):
        argv += ["--reason", "because"]
    code, _, seen = _flctl(argv, lambda r: httpx.Response(200, json=DEVICE))
    assert code == 0 and seen[0].method == "POST"
    assert seen[0].url.raw_path.decode() == f"/api/v1/devices/dev%2Fodd%20id/{action}"
    body = json.loads(seen[0].content) if seen[0].content else None
    assert body == ({"reason": "because"} if action in ("drain", "revoke") else None)


def test_every_devices_subcommand_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("list", "show", "label", "drain", "undrain", "revoke", "unrevoke"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["devices", action, "--help"])
        assert "flctl devices " + action in capsys.readouterr().out


# -- against the real REST API and registry -----------------------------------------------------


@pytest.fixture
def live(tmp_path: Path, fake_clock: Any) -> Iterator[tuple[Api, Registry]]:
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=True)
    registry = Registry(settings.resolved_database_url, clock=fake_clock)
    registry.migrate()
    app = create_app(registry, RunService(registry, None, settings), settings)  # type: ignore[arg-type]
    with TestClient(app) as client:

        def forward(request: httpx.Request) -> httpx.Response:
            answer = client.request(
                request.method,
                str(request.url.copy_with(scheme="http", host="testserver", port=None)),
                content=request.content,
                headers={"content-type": request.headers.get("content-type", "")},
            )
            return httpx.Response(answer.status_code, content=answer.content)

        yield Api("http://coord:8080", transport=httpx.MockTransport(forward)), registry
    registry.close()


def _run(api: Api, argv: list[str]) -> str:
    out = io.StringIO()
    assert execute(_parser().parse_args(argv), api, out) == 0
    return out.getvalue()


def test_flctl_against_the_real_api(live: tuple[Api, Registry]) -> None:
    api, registry = live
    from fl_shared.wire import DeviceRegistration, Heartbeat

    ids = [registry.register_device(DeviceRegistration(name=f"dev{i}")).device_id for i in range(3)]
    registry.record_heartbeat(Heartbeat(device_id=ids[0], cpu_percent=33.0, activity="training"))
    run_id, _ = registry.create_run(RunRequest())
    result = DeviceRoundResult(
        device_id=ids[0], node_id=1, num_examples=10, train_loss=0.5, train_seconds=1.0
    )
    registry.record_round(run_id, RoundReport(round=1, devices=[result]))

    assert "site=lab" in _run(api, ["devices", "label", ids[0], "site=lab"])
    assert "drained (swap)" in _run(api, ["devices", "drain", ids[1], "--reason", "swap"])
    assert "revoked" in _run(api, ["devices", "revoke", ids[2]])
    listed = json.loads(_run(api, ["--json", "devices", "list", "--label", "site=lab"]))
    assert [d["device_id"] for d in listed] == [ids[0]]
    table = _run(api, ["devices", "list", "--status", "drained"])
    assert ids[1] in table and ids[0] not in table
    page = _run(api, ["devices", "list", "--limit", "2"])
    assert page.splitlines()[-1].startswith("1-2 of 3 devices; next page: --offset 2")
    shown = _run(api, ["devices", "show", ids[0], "--history", "1h"])
    assert "heartbeat history" in shown and "training" in shown
    assert any(line.split()[:3] == [str(run_id), "1", "10"] for line in shown.splitlines())
    assert json.loads(_run(api, ["--json", "devices", "show", ids[0]]))["labels"] == {"site": "lab"}
    with pytest.raises(CliError) as info:
        _run(api, ["devices", "show", "dev-missing"])
    assert info.value.code == EXIT_USAGE and str(info.value).startswith("404: no device")
    with pytest.raises(CliError) as info:
        _run(api, ["devices", "label", ids[0], "bad key=x"])
    assert str(info.value).startswith("422: labels: label key 'bad key' is invalid")
    assert "online" in _run(api, ["devices", "unrevoke", ids[2]])
