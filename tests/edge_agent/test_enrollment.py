"""`fl-edge-agent enroll` against a fake coordinator over real TLS: trust, keys, files, refusals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from tests.edge_agent.fake_coordinator import FakeCoordinator, FleetPki, make_pki

from fl_coordinator.local_fleet import program
from fl_edge_agent import enrollment as enrollment_module
from fl_edge_agent.ca_fingerprint import CaFingerprint
from fl_edge_agent.cli import main
from fl_edge_agent.enrolled_identity import IdentityFiles
from fl_edge_agent.errors import (
    EXIT_ALREADY_ENROLLED,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_UNTRUSTED,
    AgentConfigError,
)
from fl_edge_agent.supernode_key import SuperNodeKey
from fl_shared.ports import free_port


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("FL_AGENT_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FleetPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def coordinator(pki: FleetPki) -> Iterator[FakeCoordinator]:
    with FakeCoordinator(pki) as fake:
        yield fake


def _enroll(state_dir: Path, *args: str, name: str = "jetson-7") -> int:
    return main(["enroll", "--state-dir", str(state_dir), "--name", name, *args])


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fl-edge-agent: ")
    return lines[0]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- fingerprints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        lambda fp: fp,
        lambda fp: fp.lower(),
        lambda fp: fp.replace(":", ""),
        lambda fp: "SHA256:" + fp.replace(":", "").lower(),
        lambda fp: "sha256:" + fp,
    ],
)
def test_fingerprint_accepts_the_usual_spellings(pki: FleetPki, shape: Any) -> None:
    assert str(CaFingerprint.parse(shape(pki.fingerprint))) == pki.fingerprint
    assert CaFingerprint.parse(shape(pki.fingerprint)) == CaFingerprint.of_pem(pki.ca_pem, "ca")


@pytest.mark.parametrize("bad", ["", "AB:CD", "zz" * 32, "SHA1:" + "ab" * 20])
def test_fingerprint_refuses_what_is_not_sha256(bad: str) -> None:
    with pytest.raises(AgentConfigError, match="64 hex digits"):
        CaFingerprint.parse(bad)


# --- the key --------------------------------------------------------------------------------


def test_supernode_key_is_p384_in_openssh_format() -> None:
    key = SuperNodeKey.generate(comment="edge 01")
    assert key.private_openssh.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    private = load_ssh_private_key(key.private_openssh, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    kind, _blob, comment = key.public_openssh.split(" ")
    assert kind == "ecdsa-sha2-nistp384" and comment == "edge_01"
    public = load_ssh_public_key(key.public_openssh.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert "private_openssh" not in repr(key)


# --- enrolling ------------------------------------------------------------------------------


def test_enroll_with_pinned_fingerprint_keeps_a_complete_identity(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    token = coordinator.new_token()
    fingerprint = "SHA256:" + pki.fingerprint.replace(":", "").lower()

    code = _enroll(
        state_dir,
        "--coordinator",
        coordinator.url,
        "--token",
        token,
        "--ca-fingerprint",
        fingerprint,
    )

    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    sent = coordinator.state.enrollments[-1]
    granted_id = f"dev-{len(coordinator.state.enrollments)}"
    assert out.out.startswith(f"enrolled device {granted_id} as node ")
    assert sent["enrollment_token"] == token
    assert sent["registration"]["name"] == "jetson-7"
    assert sent["registration"]["device_id"] is None
    assert sent["capabilities"] is None

    files = IdentityFiles(state_dir)
    assert _mode(files.dir) == 0o700
    assert _mode(files.private_key) == 0o600
    assert _mode(files.credential) == 0o600
    private = load_ssh_private_key(files.private_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    public_line = files.public_key.read_text().strip()
    assert public_line == sent["public_key"]
    public = load_ssh_public_key(public_line.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert files.ca.read_bytes() == pki.ca_pem
    credential = files.credential.read_text().strip()
    assert coordinator.state.credentials[credential] == granted_id
    record = json.loads(files.record.read_text())
    assert record["device_id"] == granted_id
    assert record["node_id"] == 1000 + len(coordinator.state.enrollments)
    assert record["coordinator_url"] == coordinator.url
    assert record["superlink_address"] == coordinator.state.superlink_address
    assert record["enrolled_at"]
    assert record["coordinator_ca_file"] == "ca.crt"
    assert not files.coordinator_ca.exists()
    # Only the six files: no temporary leftovers, no key anywhere else.
    assert sorted(p.name for p in files.dir.iterdir()) == [
        "ca.crt",
        "credential",
        "enrollment.json",
        "supernode.key",
        "supernode.key.pub",
    ]
    loaded = files.load()
    assert loaded is not None and loaded.device_id == granted_id
    assert credential not in repr(loaded)


def test_fingerprint_mismatch_is_refused_before_anything_is_sent(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(coordinator.state.enrollments)
    wrong = "AB:" * 31 + "AB"
    code = _enroll(
        tmp_path,
        "--coordinator",
        coordinator.url,
        "--token",
        coordinator.new_token(),
        "--ca-fingerprint",
        wrong,
    )
    assert code == EXIT_UNTRUSTED
    line = _one_line(capsys)
    assert f"expected {wrong}" in line and f"got {pki.fingerprint}" in line
    assert len(coordinator.state.enrollments) == before
    assert not IdentityFiles(tmp_path).record.exists()
    assert not IdentityFiles(tmp_path).private_key.exists()


def test_enroll_with_a_ca_file(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _enroll(
        tmp_path,
        "--coordinator",
        coordinator.url + "/",
        "--token",
        coordinator.new_token(),
        "--ca-file",
        str(pki.ca_file),
    )
    assert code == EXIT_OK, capsys.readouterr().err
    record = json.loads(IdentityFiles(tmp_path).record.read_text())
    assert record["coordinator_url"] == coordinator.url  # trailing slash dropped


def test_ca_file_that_is_not_the_coordinators_is_untrusted(
    tmp_path: Path, coordinator: FakeCoordinator, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_pki(tmp_path / "other", name="Someone Else's CA")
    code = _enroll(
        tmp_path / "state",
        "--coordinator",
        coordinator.url,
        "--token",
        coordinator.new_token(),
        "--ca-file",
        str(other.ca_file),
    )
    assert code == EXIT_UNTRUSTED
    assert "--ca-fingerprint" in _one_line(capsys)


def test_system_trust_store_does_not_know_a_private_ca(
    tmp_path: Path, coordinator: FakeCoordinator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _enroll(tmp_path, "--coordinator", coordinator.url, "--token", coordinator.new_token())
    assert code == EXIT_UNTRUSTED
    line = _one_line(capsys)
    assert "does not trust" in line and "--ca-fingerprint" in line and "--ca-file" in line
    assert not IdentityFiles(tmp_path).record.exists()


def test_bad_or_used_token_exits_rejected_naming_the_fix(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = ["--ca-fingerprint", pki.fingerprint]
    code = _enroll(tmp_path, "--coordinator", coordinator.url, "--token", "fle_nope", *trust)
    assert code == EXIT_REJECTED
    line = _one_line(capsys)
    assert "refused the enrollment token (401)" in line and "create a new one" in line

    token = coordinator.new_token()
    assert _enroll(tmp_path / "a", "--coordinator", coordinator.url, "--token", token, *trust) == 0
    capsys.readouterr()
    code = _enroll(tmp_path / "b", "--coordinator", coordinator.url, "--token", token, *trust)
    assert code == EXIT_REJECTED
    assert "used" in _one_line(capsys)
    assert not IdentityFiles(tmp_path / "b").record.exists()


def test_reenroll_needs_force_and_then_rekeys(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = ["--ca-fingerprint", pki.fingerprint]
    files = IdentityFiles(tmp_path)
    assert (
        _enroll(
            tmp_path, "--coordinator", coordinator.url, "--token", coordinator.new_token(), *trust
        )
        == 0
    )
    first_key, first_record = files.private_key.read_bytes(), files.record.read_bytes()
    first_credential = files.credential.read_text()
    capsys.readouterr()
    before = len(coordinator.state.enrollments)

    code = _enroll(
        tmp_path, "--coordinator", coordinator.url, "--token", coordinator.new_token(), *trust
    )
    assert code == EXIT_ALREADY_ENROLLED
    line = _one_line(capsys)
    assert "already enrolled as device" in line and "--force" in line
    assert len(coordinator.state.enrollments) == before  # the token was not spent
    assert files.private_key.read_bytes() == first_key

    # A failing --force (a bad token) leaves the working identity as it was.
    code = _enroll(
        tmp_path, "--coordinator", coordinator.url, "--token", "fle_bad", "--force", *trust
    )
    assert code == EXIT_REJECTED
    capsys.readouterr()
    assert files.private_key.read_bytes() == first_key
    assert files.record.read_bytes() == first_record

    code = _enroll(
        tmp_path,
        "--coordinator",
        coordinator.url,
        "--token",
        coordinator.new_token(),
        "--force",
        *trust,
    )
    assert code == EXIT_OK, capsys.readouterr().err
    assert files.private_key.read_bytes() != first_key
    assert files.credential.read_text() != first_credential
    assert coordinator.state.enrollments[-1]["public_key"] == files.public_key.read_text().strip()
    assert _mode(files.private_key) == 0o600


def test_unreachable_coordinator_exits_3(
    tmp_path: Path, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    code = _enroll(
        tmp_path, "--coordinator", url, "--token", "fle_x", "--ca-file", str(pki.ca_file)
    )
    assert code == EXIT_UNREACHABLE
    line = _one_line(capsys)
    assert "cannot reach the coordinator" in line and "--coordinator" in line
    code = _enroll(
        tmp_path, "--coordinator", url, "--token", "fle_x", "--ca-fingerprint", "00" * 32
    )
    assert code == EXIT_UNREACHABLE
    _one_line(capsys)


def test_coordinator_5xx_exits_unreachable(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    coordinator.state.fail_enroll_with = 503
    try:
        code = _enroll(
            tmp_path,
            "--coordinator",
            coordinator.url,
            "--token",
            coordinator.new_token(),
            "--ca-file",
            str(pki.ca_file),
        )
    finally:
        coordinator.state.fail_enroll_with = None
    assert code == EXIT_UNREACHABLE
    assert "try again later" in _one_line(capsys)


def test_plain_http_needs_insecure_dev(
    tmp_path: Path, pki: FleetPki, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeCoordinator(pki, tls=False) as plain:
        code = _enroll(tmp_path, "--coordinator", plain.url, "--token", plain.new_token())
        assert code == EXIT_CONFIG
        assert "--insecure-dev" in _one_line(capsys)
        assert not plain.state.enrollments

        code = _enroll(
            tmp_path, "--coordinator", plain.url, "--token", plain.new_token(), "--insecure-dev"
        )
    assert code == EXIT_OK
    assert "warning: --insecure-dev" in capsys.readouterr().err
    record = json.loads(IdentityFiles(tmp_path).record.read_text())
    assert record["coordinator_url"] == plain.url
    # The SuperNode still gets the coordinator's CA: its connection is TLS in any case.
    assert IdentityFiles(tmp_path).ca.read_bytes() == pki.ca_pem


def test_token_from_stdin_through_the_console_script(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FL_AGENT_")}
    result = subprocess.run(
        [
            program("fl-edge-agent"),
            "enroll",
            "--coordinator",
            coordinator.url,
            "--token",
            "-",
            "--ca-fingerprint",
            pki.fingerprint,
            "--state-dir",
            str(tmp_path),
        ],
        input=coordinator.new_token() + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "enrolled device" in result.stdout
    assert IdentityFiles(tmp_path).load() is not None


def test_enrolling_as_root_hands_the_identity_to_the_state_dirs_owner(
    tmp_path: Path,
    coordinator: FakeCoordinator,
    pki: FleetPki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `sudo fl-edge-agent enroll` into /var/lib/fl-edge-agent (owned by fl-agent): the daemon,
    # running as fl-agent, must be able to read the key and the credential.
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(state_dir, 65534, 65534)
    owner = state_dir.stat()
    chowned: dict[str, tuple[int, int]] = {}
    monkeypatch.setattr(enrollment_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        enrollment_module.os,
        "chown",
        lambda path, uid, gid, follow_symlinks=True: chowned.__setitem__(
            Path(path).name, (uid, gid)
        ),
    )
    code = _enroll(
        state_dir,
        "--coordinator",
        coordinator.url,
        "--token",
        coordinator.new_token(),
        "--ca-file",
        str(pki.ca_file),
    )
    assert code == EXIT_OK, capsys.readouterr().err
    assert chowned == {
        name: (owner.st_uid, owner.st_gid)
        for name in (
            "identity",
            "ca.crt",
            "credential",
            "enrollment.json",
            "supernode.key",
            "supernode.key.pub",
        )
    }
