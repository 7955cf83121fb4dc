"""A real fleet from the .debs: coordinator and two agents in booted containers, enrolled, training.

Three nspawn containers with real systemd, each in its own network namespace on 10.200.0.0/24
(``tests/system/fleet.py``): ``coordinator`` (10.200.0.1) and ``agent-1``, ``agent-2``.
The coordinator boots and gets fl-coordinator with ``apt-get install ./<deb>`` (its postinst makes
the TLS identity and starts the service). At the same time fl-edge-agent is installed with
``apt-get install ./<deb>`` into an image layer (a chroot: no systemd, nothing starts, as when a
device image is built), and both agents boot from that image: the agent's ~1 minute of
byte-compiling is paid once, not once per device, on a 2-core machine; each device's
``agent.toml`` (its data shard) is written before it boots. Then the secure path of
docs/install.md: the coordinator serves on its fleet address only (``host``, with
``fleet_address`` and ``init --host`` for the certificate), flctl is set up with the admin token
and the CA and issues one-time enrollment tokens, each agent's service waits for enrollment and
picks up ``fl-edge-agent enroll --ca-fingerprint`` without a restart, a 2-round run on the
digits dataset completes with both devices in both rounds, and ``flctl devices list`` shows
both online.

torch is not in the packages (docs/packaging.md). The docs install it into
``/usr/local/lib/<pkg>/python`` with ``uv pip install --target`` (``--no-index --find-links DIR``
offline); here ``pip install --target`` does that once on the host from the local CPU wheel
(cached under the system-test cache, byte-compiled), and the directory is bind-mounted
read-only at that path into all three containers: no container spends a minute unpacking and
compiling 900 MB.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.system import debian_root, fleet
from tests.system.fleet import Fleet, FleetNode, NodeSpec
from tests.system.phases import Phases
from tests.system.torch_target import torch_target, torch_wheel

pytestmark = pytest.mark.system

COORDINATOR = "coordinator"
AGENTS = ("agent-1", "agent-2")
API_URL = f"https://{COORDINATOR}:8080"
STATE = "/var/lib/fl-coordinator"
ADMIN_TOKEN_FILE = f"{STATE}/initial-admin-token"
CA_FILE = f"{STATE}/pki/ca.crt"
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 420


def _deb(built_debs: dict[str, Path], name: str) -> Path:
    if name not in built_debs:
        pytest.fail(f"{name}_*_amd64.deb was not built (found: {sorted(built_debs)})", False)
    return built_debs[name]


def _with_keys(text: str, values: dict[str, str | int], name: str) -> str:
    """``text`` of a TOML conffile with ``key = value`` set in place of the commented default."""
    for key, value in values.items():
        line = f"{key} = {json.dumps(value)}"
        text, count = re.subn(rf"(?m)^#\s*{re.escape(key)} = .*$", line, text, count=1)
        assert count == 1, f"{name} has no commented-out default for {key}"
    return text


def _flctl(node: FleetNode, *args: str, timeout: float = 60) -> Any:
    """``flctl --json ARGS`` in the coordinator container; its JSON answer."""
    done = node.exec(["flctl", "--json", *args], timeout=timeout)
    return json.loads(done.stdout)


def _install(node: FleetNode, deb: str) -> float:
    started = time.monotonic()
    node.exec(["apt-get", "install", "-y", "-q", deb], timeout=INSTALL_TIMEOUT_S)
    return time.monotonic() - started


def _wait_online(coordinator: FleetNode, names: set[str], timeout: float) -> list[dict[str, Any]]:
    """``flctl devices list`` until every device named in ``names`` is online."""
    deadline = time.monotonic() + timeout
    while True:
        devices: list[dict[str, Any]] = _flctl(coordinator, "devices", "list")
        online = {d["name"] for d in devices if d["status"] == "online"}
        if names <= online or time.monotonic() > deadline:
            return devices
        time.sleep(1)


def _agent_image_install(deb: Path) -> Callable[[Path], None]:
    """``apt-get install ./deb`` in a chroot of an image layer (no systemd: nothing starts)."""

    def install(root: Path) -> None:
        staged = root / "root" / deb.name
        shutil.copyfile(deb, staged)
        started = time.monotonic()
        debian_root.run_in(
            root, ["apt-get", "install", "-y", "-q", f"/root/{deb.name}"], timeout=INSTALL_TIMEOUT_S
        )
        print(f"  apt-get install {deb.name} (agent image, chroot): "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        staged.unlink()

    return install


def _boot_and_install(
    nodes: Fleet, image: Path, debs: dict[str, Path], torch_dir: Path, phases: Phases
) -> None:
    """The coordinator: booted, then apt-get install (its postinst starts the service). The
    agents: their package goes into an image layer (chroot install, at the same time), and
    both boot from it, as devices flashed with one image."""
    coordinator_deb = debs["fl-coordinator"]
    coordinator = NodeSpec(
        COORDINATOR,
        (
            (torch_dir, "/usr/local/lib/fl-coordinator/python"),
            (coordinator_deb, f"/root/{coordinator_deb.name}"),
        ),
    )
    with phases("boot coordinator"):
        nodes.boot([coordinator], [image])
    with phases("install (coordinator | agent image)"), ThreadPoolExecutor(2) as pool:
        installed = pool.submit(_install, nodes[COORDINATOR], f"/root/{coordinator_deb.name}")
        layer = pool.submit(
            nodes.layer, "fl-edge-agent", [image], _agent_image_install(debs["fl-edge-agent"])
        )
        print(f"  apt-get install {coordinator_deb.name} (booted): {installed.result():.1f} s")
        agent_layer = layer.result()
    shipped = (agent_layer / "etc/fl-edge-agent/agent.toml").read_text()
    agents = [
        NodeSpec(
            name,
            binds_ro=((torch_dir, "/usr/local/lib/fl-edge-agent/python"),),
            # Each device's own shard; one torch thread each, as two "devices" share two cores.
            files=(
                (
                    "/etc/fl-edge-agent/agent.toml",
                    _with_keys(
                        shipped,
                        {"partition_id": index, "num_partitions": len(AGENTS), "torch_threads": 1},
                        "agent.toml",
                    ),
                ),
            ),
        )
        for index, name in enumerate(AGENTS)
    ]
    with phases("boot agents"):
        nodes.boot(agents, [agent_layer, image])


def _configure_coordinator(node: FleetNode, phases: Phases) -> str:
    """docs/install.md, "Make it reachable": serve on the fleet address, the certificate naming
    it, flctl set up; returns the CA fingerprint."""
    with phases("coordinator configure"):
        # The API and the gateway on this node's fleet address only; devices are told the name
        # in the certificate (the postinst ran init --host $(hostname)) for the gateway.
        conffile = node.root / "etc/fl-coordinator/coordinator.toml"
        values: dict[str, str | int] = {
            "host": node.address,
            "fleet_address": f"{COORDINATOR}:9092",
        }
        conffile.write_text(_with_keys(conffile.read_text(), values, str(conffile)))
        # init --host re-issues the server certificate with the address added and prints the CA
        # fingerprint. The address must be in it: the run's ServerApp reports each round to
        # https://<host>:8080 (without it every report fails TLS verification, unnoticed, and
        # runs end "completed" with 0 rounds recorded).
        report = node.exec(
            ["runuser", "-u", "fl-coordinator", "--", "fl-coordinator", "init",
             "--config", "/etc/fl-coordinator/coordinator.toml", "--state-dir", STATE,
             "--host", node.address],
        ).stdout  # fmt: skip
        names = re.search(r"Server names:\s+(.*)", report)
        assert names and node.address in names.group(1).split(", "), report
        fingerprint = re.search(r"CA fingerprint:\s+(\S+)", report)
        assert fingerprint, f"no CA fingerprint in the output of init:\n{report}"
        # Type=notify: restart returns once the API accepts connections again.
        started = time.monotonic()
        node.exec(["systemctl", "restart", "fl-coordinator"], timeout=120)
        print(f"  systemctl restart fl-coordinator: {time.monotonic() - started:.1f} s")
        node.container.wait_for_unit(
            "fl-coordinator.service", timeout=30, ActiveState="active", SubState="running"
        )
        token = node.exec(["cat", ADMIN_TOKEN_FILE]).stdout.strip()
        assert token.startswith("fla_"), "the postinst wrote no admin token"
        # flctl's own config file (install.md, "Set up flctl"): url, token, CA.
        fleet.install_file(
            node.root,
            "/root/.config/flctl/config.toml",
            f'url = "{API_URL}"\ntoken = "{token}"\nca_file = "{CA_FILE}"\n',
            mode=0o600,
        )
        return fingerprint.group(1)


def _enroll(node: FleetNode, coordinator: FleetNode, fingerprint: str) -> None:
    """A one-time token from flctl, then ``fl-edge-agent enroll`` on the device (install.md:
    as root, token on stdin); the waiting service picks the identity up without a restart."""
    issued = _flctl(coordinator, "devices", "enroll-token", "--expires", "1h")
    done = node.exec(
        ["fl-edge-agent", "enroll", "--coordinator", API_URL, "--token", "-",
         "--ca-fingerprint", fingerprint],
        input=issued["token"] + "\n",
        timeout=60,
    )  # fmt: skip
    assert "enrolled device" in done.stdout, done.stdout + done.stderr


def _wait_supernodes(coordinator: FleetNode, timeout: float) -> list[dict[str, Any]]:
    """``flctl devices list`` until both agents are online with their SuperNode running.

    Enrolling alone counts as a heartbeat; a running SuperNode is what the agent reports once
    it has picked up its identity.
    """
    deadline = time.monotonic() + timeout
    while True:
        devices: list[dict[str, Any]] = _flctl(coordinator, "devices", "list")
        ready = {
            d["name"]
            for d in devices
            if d["status"] == "online" and d.get("supernode_state") == "running"
        }
        if ready >= set(AGENTS) or time.monotonic() > deadline:
            return devices
        time.sleep(1)


def _scenario(nodes: Fleet, phases: Phases) -> None:
    coordinator = nodes[COORDINATOR]
    for name in AGENTS:
        # Not enrolled yet: the service runs and says what to do (install.md, "Enroll").
        props = nodes[name].container.wait_for_unit(
            "fl-edge-agent.service", timeout=60, ActiveState="active", SubState="running"
        )
        assert "enroll" in props["StatusText"], props["StatusText"]
    coordinator.container.wait_for_unit(
        "fl-coordinator.service", timeout=60, ActiveState="active", SubState="running"
    )
    fingerprint = _configure_coordinator(coordinator, phases)

    with phases("enroll + agents up"), ThreadPoolExecutor(max_workers=len(AGENTS)) as pool:
        for job in [pool.submit(_enroll, nodes[n], coordinator, fingerprint) for n in AGENTS]:
            job.result()
        devices = _wait_supernodes(coordinator, timeout=90)
    by_name = {d["name"]: d for d in devices}
    assert set(by_name) == set(AGENTS), f"devices: {devices}"
    states = {n: (by_name[n]["status"], by_name[n].get("supernode_state")) for n in AGENTS}
    assert states == dict.fromkeys(AGENTS, ("online", "running")), states
    for name in AGENTS:
        nodes[name].container.wait_for_unit(
            "fl-edge-agent.service", timeout=10, ActiveState="active", SubState="running"
        )

    with phases("2-round run (digits)"):
        run = _flctl(
            coordinator,
            "runs", "start", "--model", "cnn", "--dataset", "digits", "--rounds", "2",
            "--min-devices", "2", "--seed", "7", "--wait",
            timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
    print(f"  run {run['run_id']}: {run['status']}, final accuracy {run.get('final_accuracy')}, "
          f"rounds {[(r['round'], r.get('seconds')) for r in run['rounds']]}")  # fmt: skip
    assert run["status"] == "completed", f"run {run['run_id']} {run['status']}: {run['detail']}"
    rounds = {r["round"]: r for r in run["rounds"]}
    device_ids = {by_name[n]["device_id"] for n in AGENTS}
    for number in (1, 2):
        assert number in rounds, f"round {number} missing: {sorted(rounds)}"
        trained = {d["device_id"] for d in rounds[number]["devices"]}
        assert trained == device_ids, f"round {number} trained on {trained}, not {device_ids}"
    assert max(rounds) == 2, sorted(rounds)
    # The ServerApp's reports arrived (they are lost when it cannot reach the API) and the
    # model learned something.
    assert run["final_accuracy"] is not None, run
    assert run["final_accuracy"] > rounds[0]["eval_accuracy"], rounds

    devices = _wait_online(coordinator, set(AGENTS), timeout=30)
    table = coordinator.exec(["flctl", "devices", "list"]).stdout
    print(table)
    statuses = {d["name"]: d["status"] for d in devices}
    assert statuses == dict.fromkeys(AGENTS, "online"), statuses
    for name in AGENTS:
        assert re.search(rf"(?m)^.*\b{name}\b.*\bonline\b", table), table


def _diagnostics(nodes: Fleet) -> str:
    units = {COORDINATOR: "fl-coordinator"} | dict.fromkeys(AGENTS, "fl-edge-agent")
    parts = [nodes.journals(units)]
    if COORDINATOR in nodes.nodes:
        coordinator = nodes[COORDINATOR]
        with contextlib.suppress(Exception):
            runs = coordinator.exec(["flctl", "runs", "list"], check=False, timeout=30)
            parts.append(f"--- flctl runs list ---\n{runs.stdout}{runs.stderr}")
            logs = coordinator.exec(["flctl", "runs", "logs", "1"], check=False, timeout=30)
            parts.append(f"--- flctl runs logs 1 (tail) ---\n{logs.stdout[-6000:]}{logs.stderr}")
    return "\n".join(parts)


@pytest.mark.timeout(1500)  # a first run debootstraps the image and unpacks torch
def test_coordinator_and_two_agents_enroll_and_train(
    built_debs: dict[str, Path], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the fleet test needs root (namespaces, mounts, systemd-nspawn)", False)
    if missing := fleet.missing_tools():
        pytest.fail(f"the fleet test needs: {', '.join(missing)}", False)
    debs = {name: _deb(built_debs, name) for name in ("fl-coordinator", "fl-edge-agent")}
    phases = Phases()
    try:
        with phases("image (cached root)"):
            image = fleet.extracted_image(fleet.image_include(debs.values()))
        with phases("torch target (cached)"):
            torch_dir = torch_target(torch_wheel())
        stack = contextlib.ExitStack()
        try:
            with phases("network"):
                nodes = stack.enter_context(fleet.open_fleet([COORDINATOR, *AGENTS], tmp_path))
            try:
                _boot_and_install(nodes, image, debs, torch_dir, phases)
                _scenario(nodes, phases)
            except Exception as exc:
                raise AssertionError(f"{exc}\n{_diagnostics(nodes)}") from exc
        finally:
            with phases("teardown"):
                stack.close()
    finally:
        print(phases.summary())
