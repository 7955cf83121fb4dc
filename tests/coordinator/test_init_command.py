"""`fl-coordinator init`: state dir, TLS identity, registry, the first admin token; idempotent."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from fl_coordinator.credentials import CredentialStore
from fl_coordinator.errors import EXIT_CONFIG, EXIT_OK
from fl_coordinator.init_command import run_init
from fl_coordinator.pki import certificate_names
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings

TOKEN_LINE = re.compile(r"^\s*export FLCTL_TOKEN=(fla_\S+)$", re.MULTILINE)


def _settings(tmp_path: Path, database_url: str = "") -> CoordinatorSettings:
    return CoordinatorSettings(
        state_dir=tmp_path / "state", database_url=database_url, host="0.0.0.0", port=8443
    )


def _tokens(out: str) -> list[str]:
    return TOKEN_LINE.findall(out)


def _authenticate(settings: CoordinatorSettings, secret: str) -> str | None:
    registry = Registry(settings.resolved_database_url)
    try:
        principal = CredentialStore(registry).authenticate(secret)
    finally:
        registry.close()
    return None if principal is None else f"{principal.kind}:{principal.name}"


def test_init_creates_everything_and_prints_the_token_once(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, database_url)
    assert run_init(settings, ["coord.example.org"], new_admin_token=False) == EXIT_OK
    out = capsys.readouterr().out

    state = settings.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    pki = state / "pki"
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    assert {"coord.example.org", "127.0.0.1", "::1", "localhost"} <= set(
        certificate_names((pki / "server.crt").read_bytes())
    )

    (secret,) = _tokens(out)
    assert out.count(secret) == 2  # the token block and the export line, nothing else
    assert "shown this once" in out and "stores only its hash" in out
    assert _authenticate(settings, secret) == "admin:initial-admin"

    fingerprint = re.search(r"CA fingerprint:\s+([0-9a-f]{64})\b", out)
    assert fingerprint is not None
    assert str(pki / "ca.crt") in out
    assert (
        "fl-edge-agent enroll --coordinator https://coord.example.org:8443 "
        f"--token <from flctl devices enroll-token> --ca-fingerprint {fingerprint.group(1)}"
    ) in out
    assert "export FLCTL_URL=https://coord.example.org:8443" in out


def test_a_second_init_changes_nothing(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, database_url)
    assert run_init(settings, ["coord.example.org"], new_admin_token=False) == EXIT_OK
    first = capsys.readouterr().out
    ca = (settings.state_dir / "pki" / "ca.crt").read_bytes()

    assert run_init(settings, [], new_admin_token=False) == EXIT_OK
    second = capsys.readouterr().out
    assert "already initialised" in second
    assert _tokens(second) == [] and "fla_" not in second
    assert (settings.state_dir / "pki" / "ca.crt").read_bytes() == ca
    fingerprint = re.search(r"CA fingerprint:\s+([0-9a-f]{64})", first)
    assert fingerprint is not None and fingerprint.group(1) in second
    # Without --host it still names the host agents were told the first time.
    assert "--coordinator https://coord.example.org:8443 " in second

    registry = Registry(settings.resolved_database_url)
    try:
        assert [t.name for t in CredentialStore(registry).list("admin")] == ["initial-admin"]
    finally:
        registry.close()


def test_new_admin_token_adds_one_and_keeps_the_old(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, database_url)
    run_init(settings, [], new_admin_token=False)
    (old,) = _tokens(capsys.readouterr().out)
    assert run_init(settings, [], new_admin_token=True) == EXIT_OK
    (new,) = _tokens(capsys.readouterr().out)
    assert new != old
    assert _authenticate(settings, new) == "admin:initial-admin"
    assert _authenticate(settings, old) == "admin:initial-admin"


def test_init_with_a_new_host_reissues_the_server_cert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    run_init(settings, ["a.example.org"], new_admin_token=False)
    ca = (settings.state_dir / "pki" / "ca.crt").read_bytes()
    assert run_init(settings, ["10.1.2.3"], new_admin_token=False) == EXIT_OK
    assert "already initialised" in capsys.readouterr().out
    assert (settings.state_dir / "pki" / "ca.crt").read_bytes() == ca
    names = certificate_names((settings.state_dir / "pki" / "server.crt").read_bytes())
    assert {"a.example.org", "10.1.2.3"} <= set(names)
    # The default registry is a SQLite file in the state dir.
    assert (settings.state_dir / "registry.db").is_file()


def test_a_bad_host_is_one_line_and_exit_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_init(_settings(tmp_path), ["https://x:1"], new_admin_token=False) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fl-coordinator: host 'https://x:1' is neither")
    assert captured.err.count("\n") == 1


def test_an_unwritable_state_dir_is_exit_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    assert run_init(_settings(tmp_path), [], new_admin_token=False) == EXIT_CONFIG
    assert "cannot create the state dir" in capsys.readouterr().err


def test_admin_token_file_keeps_the_token_off_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path)
    token_file = tmp_path / "initial-admin-token"
    assert run_init(settings, [], new_admin_token=False, token_file=token_file) == EXIT_OK
    secret = token_file.read_text().strip()
    out = capsys.readouterr().out
    assert secret not in out
    assert str(token_file) in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert _authenticate(settings, secret) == "admin:initial-admin"
    # A second init issues no token and leaves the file alone.
    assert run_init(settings, [], new_admin_token=False, token_file=token_file) == EXIT_OK
    assert token_file.read_text().strip() == secret
