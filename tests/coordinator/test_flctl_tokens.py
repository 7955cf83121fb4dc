"""`flctl tokens ...`: requests it sends, its output, and a run against the real, secure API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.coordinator.test_devices_api_flctl import _flctl

from fl_coordinator.api_app import create_app
from fl_coordinator.credentials import CredentialStore
from fl_coordinator.flctl import EXIT_USAGE, Api, CliError, _parser, execute
from fl_coordinator.flctl_output import duration_seconds
from fl_coordinator.registry import Registry
from fl_coordinator.routes_tokens import LAST_ADMIN
from fl_coordinator.run_service import RunService
from fl_coordinator.settings import CoordinatorSettings

SECRET = "flr_" + "a" * 43
ISSUED = {
    "token_id": "tok-0123456789ab",
    "kind": "read",
    "name": "grafana",
    "token": SECRET,
    "expires_at": "2026-04-01T00:00:00Z",
}
VIEW = {
    "token_id": "tok-0123456789ab",
    "kind": "read",
    "name": "grafana",
    "status": "active",
    "device_id": None,
    "labels": {},
    "created_at": "2026-01-01T00:00:00Z",
    "expires_at": None,
    "used_at": None,
    "revoked_at": None,
}


def test_create_sends_kind_name_and_whole_seconds_and_prints_the_secret_once() -> None:
    code, out, seen = _flctl(
        ["tokens", "create", "--kind", "read", "--name", "grafana", "--expires", "90d"],
        lambda r: httpx.Response(201, json=ISSUED),
    )
    assert code == 0
    assert (seen[0].method, seen[0].url.path) == ("POST", "/api/v1/tokens")
    assert json.loads(seen[0].content) == {
        "kind": "read",
        "name": "grafana",
        "expires_in_s": 90 * 86_400,
    }
    secret, note = out.splitlines()
    assert secret == SECRET
    assert "tok-0123456789ab" in note and "until 2026-04-01" in note and "shown only now" in note


def test_create_without_expiry_sends_none_and_says_until_revoked() -> None:
    issued = {**ISSUED, "kind": "admin", "expires_at": None}
    code, out, seen = _flctl(
        ["tokens", "create", "--kind", "admin", "--name", "alice"],
        lambda r: httpx.Response(201, json=issued),
    )
    assert code == 0 and json.loads(seen[0].content) == {"kind": "admin", "name": "alice"}
    assert "until revoked" in out


def test_create_json_prints_the_answer() -> None:
    code, out, seen = _flctl(
        ["--json", "tokens", "create", "--kind", "read", "--name", "ci", "--expires", "1.5s"],
        lambda r: httpx.Response(201, json=ISSUED),
    )
    assert code == 0 and json.loads(out) == ISSUED
    assert json.loads(seen[0].content)["expires_in_s"] == 2  # a part of a second rounds up


@pytest.mark.parametrize("expires", ["24", "0h", "-1d", "1w", "h", "1.2.3d"])
def test_a_bad_expiry_is_a_usage_error_before_any_request(expires: str) -> None:
    with pytest.raises(CliError) as info:
        _flctl(
            ["tokens", "create", "--kind", "read", "--name", "x", f"--expires={expires}"],
            lambda r: httpx.Response(500),
        )
    assert info.value.code == EXIT_USAGE
    assert str(info.value).startswith(f"--expires {expires!r}") and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["enroll", "device", "root"])
def test_create_offers_only_admin_and_read(kind: str) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["tokens", "create", "--kind", kind, "--name", "x"])


def test_duration_seconds_is_shared_with_devices_enroll_token() -> None:
    assert duration_seconds("30m") == 1800 and duration_seconds("7d") == 7 * 86_400
    with pytest.raises(CliError, match="--ttl '5'"):
        duration_seconds("5", "--ttl")
    issued = {**ISSUED, "kind": "enroll", "token": "fle_" + "b" * 43}
    code, _, seen = _flctl(
        ["devices", "enroll-token", "--expires", "30m"], lambda r: httpx.Response(201, json=issued)
    )
    assert code == 0 and json.loads(seen[0].content)["expires_in_s"] == 1800


def test_list_prints_a_table_and_filters_by_kind() -> None:
    revoked = {
        **VIEW,
        "token_id": "tok-ffffffffffff",
        "kind": "device",
        "name": "device dev-1",
        "status": "revoked",
        "device_id": "dev-1",
        "expires_at": "2026-02-01T00:00:00.123Z",
    }
    code, out, seen = _flctl(
        ["tokens", "list", "--kind", "read"],
        lambda r: httpx.Response(200, json={"items": [VIEW, revoked]}),
    )
    assert code == 0
    assert seen[0].url.path == "/api/v1/tokens" and seen[0].url.params["kind"] == "read"
    header, _rule, first, second = out.splitlines()
    assert header.split() == ["TOKEN", "KIND", "NAME", "STATUS", "DEVICE", "CREATED", "EXPIRES"]
    assert first.split() == [
        "tok-0123456789ab",
        "read",
        "grafana",
        "active",
        "-",
        "2026-01-01T00:00:00",
        "-",
    ]
    assert second.split()[3:6] == ["dev-1", "revoked", "dev-1"]
    assert second.split()[-1] == "2026-02-01T00:00:00"


def test_list_json_prints_the_tokens() -> None:
    code, out, seen = _flctl(
        ["--json", "tokens", "list"], lambda r: httpx.Response(200, json={"items": [VIEW]})
    )
    assert code == 0 and json.loads(out) == [VIEW]
    assert "kind" not in seen[0].url.params


def test_revoke_posts_to_the_token_and_prints_its_state() -> None:
    revoked = {**VIEW, "status": "revoked", "revoked_at": "2026-01-02T00:00:00Z"}
    code, out, seen = _flctl(
        ["tokens", "revoke", "tok-0123/x"], lambda r: httpx.Response(200, json=revoked)
    )
    assert code == 0 and seen[0].method == "POST"
    assert seen[0].url.raw_path.decode() == "/api/v1/tokens/tok-0123%2Fx/revoke"
    assert out == "tok-0123456789ab: revoked (read, grafana)\n"


def test_a_refusal_is_one_line() -> None:
    with pytest.raises(CliError) as info:
        _flctl(
            ["tokens", "revoke", "tok-1"],
            lambda r: httpx.Response(409, json={"error": "conflict", "detail": LAST_ADMIN}),
        )
    assert info.value.code == EXIT_USAGE and str(info.value) == f"409: {LAST_ADMIN}"


def test_every_tokens_subcommand_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("create", "list", "revoke"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["tokens", action, "--help"])
        assert "flctl tokens " + action in capsys.readouterr().out


# -- against the real REST API and registry, with credentials -------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Callable[[str], Api], str]]:
    """An `Api` factory for a secret, on the secure app, and its first admin token."""
    settings = CoordinatorSettings(state_dir=tmp_path)
    registry = Registry(settings.resolved_database_url)
    registry.migrate()
    store = CredentialStore(registry)
    admin = store.create("admin", "first").secret
    service = RunService(registry, None, settings)  # type: ignore[arg-type]  # nothing runs
    app = create_app(registry, service, settings, credentials=store)
    with TestClient(app) as client:

        def forward(request: httpx.Request) -> httpx.Response:
            answer = client.request(
                request.method,
                str(request.url.copy_with(scheme="http", host="testserver", port=None)),
                content=request.content,
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k in ("content-type", "authorization")
                },
            )
            return httpx.Response(answer.status_code, content=answer.content)

        def api(secret: str) -> Api:
            return Api("http://coord:8080", httpx.MockTransport(forward), token=secret)

        yield api, admin
    registry.close()


def _run(api: Api, argv: list[str]) -> str:
    out = io.StringIO()
    assert execute(_parser().parse_args(argv), api, out) == 0
    return out.getvalue()


def _refused(api: Api, argv: list[str]) -> str:
    with pytest.raises(CliError) as info:
        _run(api, argv)
    assert info.value.code == EXIT_USAGE
    return str(info.value)


def test_flctl_tokens_against_the_real_api(live: tuple[Callable[[str], Api], str]) -> None:
    api, admin_secret = live
    admin = api(admin_secret)

    secret, note = _run(admin, ["tokens", "create", "--kind", "read", "--name", "dash"]).split(
        "\n"
    )[:2]
    assert secret.startswith("flr_") and "until revoked" in note
    issued = json.loads(
        _run(
            admin,
            ["--json", "tokens", "create", "--kind", "admin", "--name", "bob", "--expires", "7d"],
        )
    )
    assert issued["token"].startswith("fla_") and issued["expires_at"] is not None

    listed = json.loads(_run(admin, ["--json", "tokens", "list"]))
    assert sorted((t["kind"], t["name"], t["status"]) for t in listed) == [
        ("admin", "bob", "active"),
        ("admin", "first", "active"),
        ("read", "dash", "active"),
    ]
    table = _run(admin, ["tokens", "list", "--kind", "read"])
    assert "dash" in table and "first" not in table and secret not in table
    read_id = next(t["token_id"] for t in listed if t["name"] == "dash")

    reader = api(secret)
    assert _run(reader, ["--json", "devices", "list"]) == "[]\n"
    assert _refused(reader, ["tokens", "list"]).startswith("403: a read credential may not")
    assert _refused(reader, ["tokens", "revoke", read_id]).startswith("403:")

    assert _run(admin, ["tokens", "revoke", read_id]) == f"{read_id}: revoked (read, dash)\n"
    assert _refused(reader, ["devices", "list"]).startswith("401:")
    assert _refused(admin, ["tokens", "revoke", "tok-000000000000"]).startswith("404: no token")

    bob = api(issued["token"])
    first_id = next(t["token_id"] for t in listed if t["name"] == "first")
    assert "revoked" in _run(bob, ["tokens", "revoke", first_id])
    assert _refused(bob, ["tokens", "revoke", issued["token_id"]]) == f"409: {LAST_ADMIN}"
