"""A device in its own network namespace reaches the Fleet API and nothing else of the SuperLink.

Two namespaces joined by a veth pair (10.200.77.0/24, only inside them; the host's network is
untouched): the coordinator serves in one, the "device" probes from the other, then enrolls and
runs a real authenticated SuperNode through the gateway. Everything is removed at the end, also
when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.secure_helpers import stop_group, supernode_key_pair

from fl_coordinator.local_fleet import program
from fl_shared.flower_env import flower_env

COORD_IP, DEVICE_IP = "10.200.77.1", "10.200.77.2"
API, SUPERLINK, FLEET = 8080, 8000, 9092
PROBE = Path(__file__).with_name("fleet_exposure_probe.py")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid() % 100000}"
    coord, device = f"flc{tag}", f"fld{tag}"
    try:
        _ip("netns", "add", coord)
        _ip("netns", "add", device)
        # The veth pair is made inside the namespaces: nothing appears on the host.
        _ip(
            "-n", coord, "link", "add", f"vc{tag}", "type", "veth",
            "peer", "name", f"vd{tag}", "netns", device,
        )  # fmt: skip
        for ns, dev, address in ((coord, f"vc{tag}", COORD_IP), (device, f"vd{tag}", DEVICE_IP)):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield coord, device
    finally:
        for ns in (coord, device):
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


ENROLL = """
import json, ssl, sys, httpx
api, admin, ca, public = sys.argv[1:5]
with httpx.Client(base_url=api, verify=ssl.create_default_context(cafile=ca), timeout=30) as c:
    token = c.post("/api/v1/enroll-tokens", json={}, headers={"Authorization": "Bearer " + admin})
    token.raise_for_status()
    body = {"enrollment_token": token.json()["token"], "public_key": public,
            "registration": {"name": "netns-device"}}
    granted = c.post("/api/v1/enroll", json=body)
    granted.raise_for_status()
    print(json.dumps(granted.json()))
"""


def test_a_device_reaches_the_fleet_api_and_nothing_else(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    coord, device = namespaces
    in_coord, in_device = ["ip", "netns", "exec", coord], ["ip", "netns", "exec", device]
    state = tmp_path / "state"
    ca = state / "pki" / "ca.crt"
    init = subprocess.run(
        [
            *in_coord,
            program("fl-coordinator"),
            "init",
            "--state-dir",
            str(state),
            "--host",
            COORD_IP,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    admin = re.search(r"fla_[A-Za-z0-9_-]+", init.stdout)
    assert admin is not None, init.stdout
    serve_log = (tmp_path / "serve.log").open("w")
    argv = [program("fl-coordinator"), "serve", "--state-dir", str(state), "--host", COORD_IP]
    argv += ["--port", str(API), "--superlink-port", str(SUPERLINK), "--fleet-port", str(FLEET)]
    serve = subprocess.Popen(
        [*in_coord, *argv], stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    node: subprocess.Popen[bytes] | None = None
    try:
        probe = [sys.executable, str(PROBE), COORD_IP, str(API), str(FLEET), str(SUPERLINK)]
        deadline = time.monotonic() + 120
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            out = subprocess.run(
                [*in_device, *probe, str(ca)], capture_output=True, text=True, timeout=60
            )
            seen = json.loads(out.stdout) if out.returncode == 0 else {}
            if seen.get("api_health") == 200 and seen.get("fleet_health") == 200:
                break
            assert time.monotonic() < deadline, f"{out.stdout} {out.stderr}"
            time.sleep(1)
        # From the device's network: the REST API and the Fleet API answer; the Control and
        # Runtime APIs are refused by the gateway; the SuperLink's own port is closed.
        assert seen["fleet_control"] == 404
        assert seen["fleet_register"] == 404
        assert seen["fleet_runtime"] == 404
        assert seen["superlink_port"] == "ConnectionRefusedError"

        key, public = supernode_key_pair(tmp_path)
        api = f"https://{COORD_IP}:{API}"
        enroll = [sys.executable, "-c", ENROLL, api, admin.group(0), str(ca), public]
        enrolled = subprocess.run(
            [*in_device, *enroll], capture_output=True, text=True, timeout=120, check=True
        )
        granted = json.loads(enrolled.stdout)
        assert granted["superlink_address"] == f"{COORD_IP}:{FLEET}"
        home = tmp_path / "flwr"
        home.mkdir()
        node_log = tmp_path / "supernode.log"
        node_argv = [program("flower-supernode"), "--superlink", granted["superlink_address"]]
        node_argv += ["--root-certificates", str(ca), "--auth-supernode-private-key", str(key)]
        with node_log.open("w") as log:
            node = subprocess.Popen(
                [*in_device, *node_argv],
                env=flower_env(home),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while f"SuperNode ID: {granted['node_id']}" not in node_log.read_text():
            assert node.poll() is None, node_log.read_text()
            assert time.monotonic() < deadline, node_log.read_text()
            time.sleep(0.5)
    finally:
        if node is not None:
            stop_group(node)
        stop_group(serve)
        serve_log.close()
