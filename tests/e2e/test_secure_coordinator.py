"""The secure default, on real processes: init, TLS, tokens, enrollment, the Fleet-only gateway,
an authenticated SuperNode, and revocation that makes it exit."""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.secure_helpers import free_port, stop_group, supernode_key_pair

from fl_coordinator.local_fleet import program
from fl_shared.flower_env import flower_env


@dataclass
class Coordinator:
    state_dir: Path
    api: str
    fleet_port: int
    superlink_port: int
    admin: str
    verify: ssl.SSLContext

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api, verify=self.verify, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    state = tmp_path_factory.mktemp("secure") / "state"
    init = subprocess.run(
        [program("fl-coordinator"), "init", "--state-dir", str(state), "--host", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    admin = re.search(r"fla_[A-Za-z0-9_-]+", init.stdout)
    assert admin is not None, init.stdout
    assert (state / "pki" / "server.key").stat().st_mode & 0o777 == 0o600
    ports = {name: free_port() for name in ("api", "superlink", "fleet")}
    log = (state.parent / "serve.log").open("w")
    argv = [program("fl-coordinator"), "serve", "--state-dir", str(state)]
    argv += ["--port", str(ports["api"]), "--superlink-port", str(ports["superlink"])]
    argv += ["--fleet-port", str(ports["fleet"])]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    verify = ssl.create_default_context(cafile=str(state / "pki" / "ca.crt"))
    api = f"https://127.0.0.1:{ports['api']}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (state.parent / "serve.log").read_text()
            try:
                if httpx.get(f"{api}/healthz", verify=verify, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the coordinator did not serve within 120 s"
            time.sleep(0.5)
        yield Coordinator(state, api, ports["fleet"], ports["superlink"], admin.group(0), verify)
    finally:
        stop_group(proc)
        log.close()


def _enroll(coordinator: Coordinator, directory: Path, name: str) -> tuple[dict[str, Any], Path]:
    with coordinator.client(coordinator.admin) as admin:
        made = admin.post("/api/v1/enroll-tokens", json={"labels": {"site": "lab-2"}})
    assert made.status_code == 201, made.text
    private, public = supernode_key_pair(directory)
    body = {
        "enrollment_token": made.json()["token"],
        "public_key": public,
        "registration": {"name": name},
    }
    with coordinator.client() as anonymous:
        granted = anonymous.post("/api/v1/enroll", json=body)
        assert granted.status_code == 201, granted.text
        again = anonymous.post("/api/v1/enroll", json={**body, "public_key": public})
        assert again.status_code == 401 and "works once" in again.json()["detail"]
    return granted.json(), private


def test_tokens_scopes_and_device_credentials(coordinator: Coordinator, tmp_path: Path) -> None:
    with coordinator.client() as anonymous:
        refused = anonymous.get("/api/v1/devices")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/api/v1/ca.crt").text.startswith("-----BEGIN CERTIFICATE-----")
    with coordinator.client(coordinator.admin) as admin:
        assert admin.get("/api/v1/devices").status_code == 200
    granted, _key = _enroll(coordinator, tmp_path, "edge-a")
    other, _ = _enroll(coordinator, tmp_path / "..", "edge-b")
    device_id, credential = granted["device_id"], granted["device_credential"]
    assert granted["superlink_address"] == f"127.0.0.1:{coordinator.fleet_port}"
    with coordinator.client(credential) as device:
        own = device.post(f"/api/v1/devices/{device_id}/heartbeat", json={"device_id": device_id})
        assert own.status_code == 200, own.text
        theirs = device.post(
            f"/api/v1/devices/{other['device_id']}/heartbeat",
            json={"device_id": other["device_id"]},
        )
        assert theirs.status_code == 403 and device_id in theirs.json()["detail"]
        assert device.get("/api/v1/devices").status_code == 403  # a device reads no fleet
    with coordinator.client(coordinator.admin) as admin:
        shown = admin.get(f"/api/v1/devices/{device_id}").json()
        assert shown["labels"] == {"site": "lab-2"} and shown["last_status"] is not None


def test_gateway_serves_the_fleet_api_only(coordinator: Coordinator) -> None:
    gateway = f"https://127.0.0.1:{coordinator.fleet_port}"
    with httpx.Client(base_url=gateway, verify=coordinator.verify, timeout=10) as client:
        assert client.get("/health").status_code == 200
        for path in ("/v1/control/list-runs", "/v1/runtime/pull-app", "/v1/control/register-node"):
            refused = client.post(path, content=b"")
            assert refused.status_code == 404, path
            assert "Fleet API" in refused.json()["detail"]


def test_enrolled_supernode_joins_through_the_gateway_and_revoke_stops_it(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    granted, key = _enroll(coordinator, tmp_path, "edge-c")
    ca = coordinator.state_dir / "pki" / "ca.crt"
    home = tmp_path / "flwr"
    home.mkdir()
    argv = [program("flower-supernode"), "--superlink", granted["superlink_address"]]
    argv += ["--root-certificates", str(ca), "--auth-supernode-private-key", str(key)]
    argv += ["--port", str(free_port())]
    log = (tmp_path / "supernode.log").open("w")
    node = subprocess.Popen(
        argv, env=flower_env(home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while f"SuperNode ID: {granted['node_id']}" not in (tmp_path / "supernode.log").read_text():
            assert node.poll() is None, (tmp_path / "supernode.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "supernode.log").read_text()
            time.sleep(0.5)
        with coordinator.client(coordinator.admin) as admin:
            revoked = admin.post(f"/api/v1/devices/{granted['device_id']}/revoke", json={})
            assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        node.wait(timeout=60)  # unregistered in the SuperLink: it exits
        with coordinator.client(granted["device_credential"]) as device:
            beat = {"device_id": granted["device_id"]}
            dead = device.post(f"/api/v1/devices/{granted['device_id']}/heartbeat", json=beat)
            assert dead.status_code == 401
    finally:
        stop_group(node)
        log.close()


def test_flctl_with_token_and_ca_file(coordinator: Coordinator) -> None:
    base = [program("flctl"), "--url", coordinator.api]
    base += ["--ca-file", str(coordinator.state_dir / "pki" / "ca.crt")]

    def flctl(
        *args: str, token: str | None = coordinator.admin
    ) -> subprocess.CompletedProcess[str]:
        auth = ["--token", token] if token else []
        return subprocess.run(
            [*base, *auth, *args], capture_output=True, text=True, timeout=60, check=False
        )

    made = flctl("devices", "enroll-token", "--expires", "1h", "--label", "class=orin")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("fle_") and "shown only now" in made.stdout
    assert flctl("devices", "list").returncode == 0
    refused = flctl("devices", "list", token=None)
    assert refused.returncode != 0 and "credential" in refused.stderr
    untrusted = subprocess.run(
        [
            program("flctl"),
            "--url",
            coordinator.api,
            "--token",
            coordinator.admin,
            "devices",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert untrusted.returncode != 0  # the system trust store does not know our CA
