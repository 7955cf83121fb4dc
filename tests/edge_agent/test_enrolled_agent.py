"""The daemon as an enrolled device: its credential, TLS for the SuperNode, and a 401's exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.edge_agent.fake_coordinator import FakeCoordinator, FleetPki, make_pki
from tests.edge_agent.fake_supernode import FakeSuperNode, run_in_thread

from fl_coordinator.local_fleet import program
from fl_edge_agent import agent as agent_module
from fl_edge_agent.agent import Agent
from fl_edge_agent.agent_status import read_status
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.enrolled_identity import EnrolledIdentity, EnrollmentRecord, IdentityFiles
from fl_edge_agent.errors import EXIT_REJECTED, CredentialRejected
from fl_edge_agent.settings import AgentSettings
from fl_shared.atomic_write import atomic_write_bytes
from fl_shared.backoff import Backoff
from fl_shared.ports import free_port

Handler = Callable[[httpx.Request], httpx.Response]
CREDENTIAL = "fld_test-credential"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("FL_AGENT_"):
            monkeypatch.delenv(key)


@pytest.fixture
def zero_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "Backoff", lambda **_kw: Backoff(base_s=0.0, cap_s=0.0))


def _write_identity(state_dir: Path, device_id: str = "dev-enrolled") -> EnrolledIdentity:
    files = IdentityFiles(state_dir)
    record = EnrollmentRecord(
        device_id=device_id,
        node_id=4242,
        coordinator_url="https://fleet.example:8443",
        superlink_address="fleet.example:9092",
        enrolled_at=datetime.now(UTC),
    )
    atomic_write_bytes(files.private_key, b"key", mode=0o600)
    atomic_write_bytes(files.ca, b"ca", mode=0o644)
    atomic_write_bytes(files.credential, f"{CREDENTIAL}\n".encode(), mode=0o600)
    atomic_write_bytes(files.record, record.model_dump_json().encode(), mode=0o644)
    enrolled = files.load()
    assert enrolled is not None
    return enrolled


def _settings(state_dir: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "name": "edge-01",
        "state_dir": state_dir,
        "probe_interval_s": 0,
        **overrides,
    }
    return AgentSettings(**values)


def _client(handler: Handler) -> CoordinatorClient:
    return CoordinatorClient(
        "https://fleet.example:8443", transport=httpx.MockTransport(handler), credential=CREDENTIAL
    )


def _ack(request: httpx.Request) -> httpx.Response:
    device_id = request.url.path.split("/")[-2]
    return httpx.Response(
        200, json={"device_id": device_id, "server_time": datetime.now(UTC).isoformat()}
    )


def test_enrolled_values_apply_unless_set_explicitly(tmp_path: Path) -> None:
    enrolled = _write_identity(tmp_path)
    applied = enrolled.apply(_settings(tmp_path))
    assert applied.coordinator_url == "https://fleet.example:8443"
    assert applied.superlink == "fleet.example:9092"
    mine = enrolled.apply(_settings(tmp_path, superlink="10.0.0.9:9092"))
    assert mine.superlink == "10.0.0.9:9092"
    assert mine.coordinator_url == "https://fleet.example:8443"


def test_enrolled_agent_runs_its_supernode_with_tls_and_its_key(
    tmp_path: Path, zero_backoff: None, fake_supernode: type[FakeSuperNode]
) -> None:
    enrolled = _write_identity(tmp_path)
    seen: list[tuple[str, str | None, dict[str, Any]]] = []
    beat = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (request.url.path, request.headers.get("Authorization"), json.loads(request.content))
        )
        if request.url.path == "/api/v1/devices":
            return httpx.Response(
                201, json={"device_id": "dev-enrolled", "heartbeat_interval_s": 60}
            )
        beat.set()
        return _ack(request)

    stop = threading.Event()
    client = _client(handler)
    # `insecure` only admits an unenrolled device; an enrolled one uses TLS regardless.
    settings = enrolled.apply(_settings(tmp_path, insecure=True, heartbeat_interval_s=0.01))
    agent = Agent(settings, client, stop, enrolled=enrolled)
    try:
        thread, errors = run_in_thread(agent)
        assert beat.wait(5)
        stop.set()
        thread.join(5)
    finally:
        stop.set()
        client.close()

    assert errors == []
    supernode = fake_supernode.instances[0]
    assert supernode.kwargs["superlink"] == "fleet.example:9092"
    assert supernode.kwargs["insecure"] is False
    assert supernode.kwargs["root_certificates"] == enrolled.files.ca
    assert supernode.kwargs["auth_private_key"] == enrolled.files.private_key
    assert supernode.kwargs["node_config"]["device-id"] == "dev-enrolled"
    path, _authorization, body = seen[0]
    assert path == "/api/v1/devices" and body["device_id"] == "dev-enrolled"
    assert {auth for _path, auth, _body in seen} == {f"Bearer {CREDENTIAL}"}
    status = read_status(tmp_path)
    assert status is not None and status.state == "stopped"


def test_401_on_a_heartbeat_stops_everything_and_marks_revoked(
    tmp_path: Path, zero_backoff: None, fake_supernode: type[FakeSuperNode]
) -> None:
    enrolled = _write_identity(tmp_path)
    calls: list[str] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            calls.append(request.url.path)
        if request.url.path == "/api/v1/devices":
            return httpx.Response(
                201, json={"device_id": "dev-enrolled", "heartbeat_interval_s": 60}
            )
        return httpx.Response(401, json={"error": "unauthorized", "detail": "credential revoked"})

    stop = threading.Event()
    client = _client(handler)
    agent = Agent(
        enrolled.apply(_settings(tmp_path, heartbeat_interval_s=0.01)),
        client,
        stop,
        enrolled=enrolled,
    )
    try:
        thread, errors = run_in_thread(agent)
        thread.join(10)
        assert not thread.is_alive(), "a 401 must end run() by itself"
    finally:
        stop.set()
        client.close()

    assert len(errors) == 1 and isinstance(errors[0], CredentialRejected)
    assert "credential revoked" in str(errors[0]) and "--force" in str(errors[0])
    assert errors[0].exit_code == EXIT_REJECTED
    assert fake_supernode.instances[0].calls[-1] == "stop"
    assert calls.count("/api/v1/devices") == 1  # no re-registration, no retry loop
    status = read_status(tmp_path)
    assert status is not None
    assert status.state == "revoked" and status.registered is False
    assert status.last_error is not None and "enroll again" in status.last_error


def test_401_at_start_exits_before_the_supernode(
    tmp_path: Path, zero_backoff: None, fake_supernode: type[FakeSuperNode]
) -> None:
    enrolled = _write_identity(tmp_path)
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": "unauthorized", "detail": "unknown credential"})

    client = _client(handler)
    try:
        with pytest.raises(CredentialRejected, match="unknown credential"):
            Agent(
                enrolled.apply(_settings(tmp_path)), client, threading.Event(), enrolled=enrolled
            ).run()
    finally:
        client.close()
    assert calls == 1
    assert fake_supernode.instances == []
    status = read_status(tmp_path)
    assert status is not None and status.state == "revoked"


# --- the real daemon process against the fake TLS coordinator ---------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> FleetPki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def coordinator(pki: FleetPki) -> Iterator[FakeCoordinator]:
    with FakeCoordinator(pki) as fake:
        fake.state.superlink_address = f"127.0.0.1:{free_port()}"  # no SuperLink: it retries
        yield fake


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_uses_the_identity_then_exits_5_when_revoked(
    tmp_path: Path, coordinator: FakeCoordinator, pki: FleetPki
) -> None:
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FL_AGENT_")}
    enroll = subprocess.run(
        [
            program("fl-edge-agent"),
            "enroll",
            "--coordinator",
            coordinator.url,
            "--token",
            coordinator.new_token(),
            "--ca-file",
            str(pki.ca_file),
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert enroll.returncode == 0, enroll.stderr
    files = IdentityFiles(state_dir)
    credential = files.credential.read_text().strip()

    env |= {
        "FL_AGENT_HEARTBEAT_INTERVAL_S": "0.3",
        "FL_AGENT_PROBE_INTERVAL_S": "0",
        "FL_AGENT_CLIENTAPP_RUNTIME": "isolated",
        "FL_AGENT_SUPERNODE_PORT": str(free_port()),
    }
    # No --insecure, no --coordinator-url: the identity says where and how.
    agent = subprocess.Popen(
        [program("fl-edge-agent"), "run", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _wait(lambda: len(coordinator.state.heartbeats) >= 2, 30, "two heartbeats")
        assert set(coordinator.state.authorizations) == {f"Bearer {credential}"}
        status = read_status(state_dir)
        assert status is not None and status.supernode_pid is not None
        argv = Path(f"/proc/{status.supernode_pid}/cmdline").read_bytes().split(b"\0")
        argv_text = [a.decode() for a in argv if a]
        assert argv_text[argv_text.index("--root-certificates") + 1] == str(files.ca)
        key = argv_text[argv_text.index("--auth-supernode-private-key") + 1]
        assert key == str(files.private_key)
        superlink = argv_text[argv_text.index("--superlink") + 1]
        assert superlink == coordinator.state.superlink_address
        assert "--insecure" not in argv_text
        supernode_pid = status.supernode_pid

        coordinator.state.revoke_all()
        out, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    assert agent.returncode == EXIT_REJECTED, err
    assert err.strip().splitlines()[-1].startswith("fl-edge-agent: the coordinator no longer")
    assert "device_credential_rejected" in out
    status = read_status(state_dir)
    assert status is not None and status.state == "revoked"
    assert not Path(f"/proc/{supernode_pid}").exists() or _zombie(supernode_pid)


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(line.startswith("State:") and "Z" in line for line in text.splitlines())
