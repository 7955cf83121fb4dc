"""deploy/ansible over real SSH: a coordinator and three devices, from bare machines to revoked.

Four nspawn containers with real systemd and sshd, each in its own network namespace on
10.200.0.0/24 (``tests/system/fleet.py``): ``coordinator`` and ``agent-1`` .. ``agent-3``, all
booted from one image that has sshd, python3-apt and the packages' dependencies, but neither
package. Ansible runs from a fifth namespace on the same bridge (``tests/system/ansible_fleet.py``)
with an inventory this test writes, exactly the playbooks of deploy/ansible:

1. ``site.yml`` from scratch: the coordinator is installed and configured, the devices are
   installed, configured and enrolled in canary batches; ``flctl devices list --json`` shows
   every device online, and a 2-round run over the three devices completes.
2. ``site.yml`` again: ``changed=0`` on every host.
3. ``upgrade.yml`` to a newer build (its packaged agent.toml changed too) from a signed flat
   apt repository served in the controller's namespace (``fl_edge_agent_source: apt``): every
   device runs it, and the coordinator sees the new agent version; each device's edited
   agent.toml is kept byte for byte (dpkg writes ``.dpkg-dist``).
4. ``upgrade.yml`` to a broken build (its program exits 1): the canary fails its health check,
   the play stops, the other devices are not touched (same package, same agent process);
   ``rollback.yml`` to the good build brings the canary back.
5. ``decommission.yml -l agent-3``: revoked in the coordinator, package purged.

The newer and the broken build are the built agent .deb repacked (``deb_repack``), with their
version in the package and in the agent's ``__version__``. torch is bind-mounted read-only from
the host into every node (as in test_fleet.py). Every container, mount, namespace and SSH master
is removed on the way out, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.system import ansible_fleet, fleet
from tests.system.ansible_fleet import AnsibleController, AptRepository, Builds
from tests.system.fleet import Fleet, FleetNode, NodeSpec
from tests.system.phases import Phases
from tests.system.torch_target import torch_target, torch_wheel

pytestmark = pytest.mark.system

COORDINATOR = "coordinator"
DEVICES = ("agent-1", "agent-2", "agent-3")
# A namespace on the fleet's bridge without a container: where ansible-playbook runs.
CONTROLLER = "ansible"
# Inventory order decides the batches: the first device is the canary (serial: 1).
CANARY = DEVICES[0]
DECOMMISSIONED = DEVICES[-1]
AGENT_UNIT = "fl-edge-agent.service"
RUN_TIMEOUT_S = 420
# The test fleet's inventory variables (besides hosts, versions and the .deb directory).
FLEET_VARS: dict[str, Any] = {
    # Heartbeats every 5 s instead of 15 s: each health check waits for a fresh one. A device
    # counts as stale after 30 s, so two cores busy training do not make it look gone.
    "fl_coordinator_extra_settings": {"heartbeat_interval_s": 5, "device_stale_after_s": 30},
    "fl_edge_agent_health_delay_s": 1,
    "fl_edge_agent_health_retries": 40,
    # Three devices share two cores.
    "fl_edge_agent_torch_threads": 1,
    "fl_edge_agent_labels": {"fleet": "system-test"},
}
# Where the broken build's canary may fail: its service never becomes active (running).
CANARY_FAILS_AT = ("Check that the service runs", "Enable and start the service")
LOCAL_EDIT = "\n# edited on this device after the rollout (system test)\n"


def _flctl(coordinator: FleetNode, *args: str, timeout: float = 60) -> Any:
    """``flctl --json ARGS`` on the coordinator (the config the fl_coordinator role wrote)."""
    return json.loads(coordinator.exec(["flctl", "--json", *args], timeout=timeout).stdout)


def _wait_devices(
    coordinator: FleetNode,
    names: set[str],
    timeout: float,
    *,
    version: str,
    supernode: bool = False,
) -> dict[str, dict[str, Any]]:
    """``flctl devices list`` until every device in ``names`` is online with agent ``version``
    (and its SuperNode running); the devices by name, as last listed."""
    deadline = time.monotonic() + timeout
    while True:
        devices = {d["name"]: d for d in _flctl(coordinator, "devices", "list")}
        ready = {
            name
            for name, d in devices.items()
            if d["status"] == "online"
            and d["agent_version"] == version
            and (not supernode or d.get("supernode_state") == "running")
        }
        if names <= ready or time.monotonic() > deadline:
            return devices
        time.sleep(1)


def _installed(node: FleetNode) -> str:
    """The fl-edge-agent package version installed on ``node`` ("" when none)."""
    done = node.exec(
        ["dpkg-query", "--showformat=${db:Status-Status} ${Version}", "--show", "fl-edge-agent"],
        check=False,
    )
    status, _, version = done.stdout.strip().partition(" ")
    return version if done.returncode == 0 and status == "installed" else ""


def _agent_process(node: FleetNode) -> tuple[str, str, str]:
    """(MainPID, start time, state) of the agent's service: unchanged means untouched."""
    props = node.container.unit_properties(
        AGENT_UNIT, "MainPID", "ExecMainStartTimestampMonotonic", "ActiveState", "SubState"
    )
    state = f"{props['ActiveState']}/{props['SubState']}"
    return props["MainPID"], props["ExecMainStartTimestampMonotonic"], state


def _deploy_dir(node: FleetNode) -> list[str]:
    found = node.root / "var/cache/fl-edge-agent-deploy"
    return sorted(p.name for p in found.iterdir()) if found.is_dir() else []


def _boot(nodes: Fleet, image: Path, torch_dir: Path, public_key: str, phases: Phases) -> None:
    """Every node booted from the image plus a layer with root's SSH key; sshd up on each."""
    with phases("boot (sshd layer, 4 nodes)"):
        layer = nodes.layer("sshd", [image], ansible_fleet.node_layer(public_key))
        specs = [
            NodeSpec(name, binds_ro=((torch_dir, ansible_fleet.TORCH_MOUNT),))
            for name in (COORDINATOR, *DEVICES)
        ]
        nodes.boot(specs, [layer, image])
        for name in (COORDINATOR, *DEVICES):
            nodes[name].container.wait_for_unit(
                "ssh.service", timeout=30, ActiveState="active", SubState="running"
            )


def _site_from_scratch(
    ctl: AnsibleController, nodes: Fleet, builds: Builds, phases: Phases
) -> None:
    coordinator = nodes[COORDINATOR]
    with phases("site.yml from scratch"):
        run = ctl.passing("site.yml", timeout=1500)
    assert set(run.recap) == {COORDINATOR, *DEVICES}, run.recap
    wanted = f"{builds.base}-{builds.revision}"
    assert {n: _installed(nodes[n]) for n in DEVICES} == dict.fromkeys(DEVICES, wanted)
    with phases("devices online, SuperNodes up"):
        devices = _wait_devices(
            coordinator, set(DEVICES), timeout=90, version=builds.base, supernode=True
        )
    listed = {n: (devices[n]["status"], devices[n]["agent_version"]) for n in DEVICES}
    assert listed == dict.fromkeys(DEVICES, ("online", builds.base)), devices
    for name in DEVICES:
        assert devices[name]["labels"].get("fleet") == "system-test", devices[name]
    print(coordinator.exec(["flctl", "devices", "list"]).stdout)


def _train(nodes: Fleet, phases: Phases) -> None:
    coordinator = nodes[COORDINATOR]
    devices = {d["name"]: d["device_id"] for d in _flctl(coordinator, "devices", "list")}
    with phases("2-round run (digits, 3 devices)"):
        run = _flctl(
            coordinator,
            "runs", "start", "--model", "cnn", "--dataset", "digits", "--rounds", "2",
            "--min-devices", str(len(DEVICES)), "--seed", "7", "--wait",
            timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
    print(f"  run {run['run_id']}: {run['status']}, final accuracy {run.get('final_accuracy')}, "
          f"rounds {[(r['round'], r.get('seconds')) for r in run['rounds']]}")  # fmt: skip
    assert run["status"] == "completed", f"run {run['run_id']} {run['status']}: {run['detail']}"
    rounds = {r["round"]: r for r in run["rounds"]}
    wanted = {devices[n] for n in DEVICES}
    for number in (1, 2):
        assert number in rounds, f"round {number} missing: {sorted(rounds)}"
        trained = {d["device_id"] for d in rounds[number]["devices"]}
        assert trained == wanted, f"round {number} trained on {trained}, not {wanted}"
    assert run["final_accuracy"] is not None, run


def _site_again(ctl: AnsibleController, phases: Phases) -> None:
    with phases("site.yml again (changed=0)"):
        run = ctl.passing("site.yml", timeout=900)
    changed = {host: recap.changed for host, recap in run.recap.items()}
    assert changed == dict.fromkeys((COORDINATOR, *DEVICES), 0), (
        f"a second site.yml changed something: {ansible_fleet.changed_tasks(run.output)}"
    )


def _upgrade(
    ctl: AnsibleController, nodes: Fleet, builds: Builds, repo: AptRepository, phases: Phases
) -> None:
    """upgrade.yml to the newer build from the fleet's signed apt repository; each device's
    edited agent.toml survives it."""
    edited = {}
    for name in DEVICES:
        conffile = nodes[name].root / ansible_fleet.AGENT_CONFFILE.lstrip("/")
        conffile.write_text(conffile.read_text() + LOCAL_EDIT)
        edited[name] = conffile.read_text()
    deployed = {n: _deploy_dir(nodes[n]) for n in DEVICES}
    with phases("apt repository (publish, serve)"):
        agent_debs = sorted(builds.directory.glob("fl-edge-agent_*_amd64.deb"))
        repo.publish([d for d in agent_debs if builds.broken not in d.name])
        repo.serve()
        source = ansible_fleet.write_vars(ctl.workdir / "apt-source.json", repo.inventory_vars())
    with phases("upgrade.yml (newer build, apt repository)"):
        run = ctl.passing(
            "upgrade.yml", "-e", f"fl_edge_agent_version={builds.upgrade}", "-e", f"@{source}"
        )
    assert all(run.recap[n].changed > 0 for n in DEVICES), run.recap
    wanted = f"{builds.upgrade}-{builds.revision}"
    assert {n: _installed(nodes[n]) for n in DEVICES} == dict.fromkeys(DEVICES, wanted)
    for name in DEVICES:
        # From the repository, not a copied file: the deploy directory is as it was.
        assert _deploy_dir(nodes[name]) == deployed[name], name
        sources = nodes[name].root / "etc/apt/sources.list.d/fl-fleet.sources"
        assert repo.uri in sources.read_text(), name
    for name in DEVICES:
        conffile = nodes[name].root / ansible_fleet.AGENT_CONFFILE.lstrip("/")
        assert conffile.read_text() == edited[name], f"{name}: agent.toml was not kept"
        # The packaged default changed: dpkg put it next to the kept file.
        assert conffile.with_name("agent.toml.dpkg-dist").is_file(), name
    devices = _wait_devices(nodes[COORDINATOR], set(DEVICES), timeout=60, version=builds.upgrade)
    listed = {n: (devices[n]["status"], devices[n]["agent_version"]) for n in DEVICES}
    assert listed == dict.fromkeys(DEVICES, ("online", builds.upgrade)), devices


def _broken_then_rollback(
    ctl: AnsibleController, nodes: Fleet, builds: Builds, phases: Phases
) -> None:
    """upgrade.yml to the broken build stops at the canary; rollback.yml brings it back."""
    others = [n for n in DEVICES if n != CANARY]
    before = {n: (_installed(nodes[n]), _agent_process(nodes[n]), _deploy_dir(nodes[n]))
              for n in others}  # fmt: skip
    with phases("upgrade.yml (broken build, canary fails)"):
        run = ctl.playbook("upgrade.yml", "-e", f"fl_edge_agent_version={builds.broken}")
    assert run.returncode != 0, run.tail()
    assert run.recap.get(CANARY) and run.recap[CANARY].failed > 0, run.recap
    # It is the health check (or the start) that stops it, not some other task.
    failed = ansible_fleet.failed_tasks(run.output)
    assert failed and all(
        host == CANARY and any(step in task for step in CANARY_FAILS_AT) for host, task in failed
    ), f"{failed}\n{run.tail()}"
    # At its first crash, with the reason from its journal (not after every retry).
    assert "a deliberately broken build" in run.output, run.tail()
    # No task ran on the later batches: no recap line, nothing changed on the devices.
    assert not set(others) & set(run.recap), f"later batches were touched: {run.recap}"
    after = {n: (_installed(nodes[n]), _agent_process(nodes[n]), _deploy_dir(nodes[n]))
             for n in others}  # fmt: skip
    assert after == before, f"devices after the canary changed:\n{before}\n{after}"
    canary = nodes[CANARY]
    assert _installed(canary) == f"{builds.broken}-{builds.revision}"
    assert _agent_process(canary)[2] != "active/running", _agent_process(canary)

    with phases("rollback.yml (to the newer build)"):
        run = ctl.passing("rollback.yml", "-e", f"fl_rollback_to={builds.upgrade}")
    assert run.recap[CANARY].changed > 0, run.recap
    wanted = f"{builds.upgrade}-{builds.revision}"
    assert {n: _installed(nodes[n]) for n in DEVICES} == dict.fromkeys(DEVICES, wanted)
    assert LOCAL_EDIT in (canary.root / ansible_fleet.AGENT_CONFFILE.lstrip("/")).read_text()
    devices = _wait_devices(nodes[COORDINATOR], set(DEVICES), timeout=60, version=builds.upgrade)
    listed = {n: (devices[n]["status"], devices[n]["agent_version"]) for n in DEVICES}
    assert listed == dict.fromkeys(DEVICES, ("online", builds.upgrade)), devices


def _decommission(ctl: AnsibleController, nodes: Fleet, phases: Phases) -> None:
    coordinator, node = nodes[COORDINATOR], nodes[DECOMMISSIONED]
    identity = json.loads(
        (node.root / "var/lib/fl-edge-agent/identity/enrollment.json").read_text()
    )
    apt_source = node.root / "etc/apt/sources.list.d/fl-fleet.sources"
    assert apt_source.is_file()  # the apt upgrade added it
    with phases(f"decommission.yml -l {DECOMMISSIONED}"):
        # With the apt source's variables, as an inventory that installs from apt has them.
        source = f"@{ctl.workdir / 'apt-source.json'}"
        run = ctl.passing("decommission.yml", "-l", DECOMMISSIONED, "-e", source)
    assert set(run.recap) == {DECOMMISSIONED}, run.recap
    record = _flctl(coordinator, "devices", "show", identity["device_id"])
    assert record["status"] == "revoked", record
    assert _installed(node) == ""
    for gone in ("etc/fl-edge-agent", "var/lib/fl-edge-agent", "opt/fl-edge-agent",
                 "usr/local/lib/fl-edge-agent", "var/cache/fl-edge-agent-deploy"):  # fmt: skip
        assert not (node.root / gone).exists(), f"/{gone} survived the purge"
    assert not apt_source.exists(), "the fleet's apt repository is still configured"
    assert not list((node.root / "etc/apt/keyrings").glob("fl-fleet.*")), "its key is still there"
    status = node.exec(["dpkg-query", "--show", "fl-edge-agent"], check=False)
    assert status.returncode != 0, status.stdout
    # The others carry on.
    kept = set(DEVICES) - {DECOMMISSIONED}
    devices = _wait_devices(coordinator, kept, timeout=60, version=record["agent_version"])
    assert {n: devices[n]["status"] for n in kept} == dict.fromkeys(kept, "online"), devices


def _builds(
    pool: ThreadPoolExecutor, debs: dict[str, Path], directory: Path
) -> tuple[Builds, Future[Builds]]:
    """The built packages now; the newer and the broken agent build made in the background."""
    builds = ansible_fleet.link_builds(debs, directory)
    agent = debs["fl-edge-agent"]

    def make() -> Builds:
        started = time.monotonic()
        upgrade, broken = f"{builds.base}+build2", f"{builds.base}+build3"
        ansible_fleet.agent_build(agent, builds, upgrade, conffile=True)
        ansible_fleet.agent_build(agent, builds, broken, broken=True)
        print(f"  repacked the newer and the broken build: {time.monotonic() - started:.1f} s")
        return Builds(builds.directory, builds.base, builds.revision, upgrade, broken)

    return builds, pool.submit(make)


def _diagnostics(nodes: Fleet, ctl: AnsibleController | None) -> str:
    units = {COORDINATOR: "fl-coordinator"} | dict.fromkeys(DEVICES, "fl-edge-agent")
    parts = [nodes.journals(units, lines=40)]
    if ctl is not None and ctl.runs:
        parts.append(ctl.runs[-1].tail(12000))
    return "\n".join(parts)


@pytest.mark.timeout(2700)  # a first run debootstraps the image
def test_site_upgrade_canary_rollback_decommission_over_ssh(
    built_debs: dict[str, Path], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the Ansible fleet test needs root (namespaces, mounts, nspawn)", False)
    if missing := fleet.missing_tools() + ansible_fleet.missing_tools():
        pytest.fail(f"the Ansible fleet test needs: {', '.join(missing)}", False)
    names = ("fl-coordinator", "fl-edge-agent")
    if absent := [n for n in names if n not in built_debs]:
        pytest.fail(f"not built: {absent} (found: {sorted(built_debs)})", False)
    debs = {name: built_debs[name] for name in names}
    phases = Phases()
    ctl: AnsibleController | None = None
    stack = contextlib.ExitStack()
    try:
        # Each repacked build is as big as the venv: not left to pytest's kept tmp dirs. (Removed
        # after the pool's shutdown below has waited for the builds.)
        stack.callback(shutil.rmtree, tmp_path / "debs", True)
        pool = stack.enter_context(ThreadPoolExecutor(1))
        builds, newer_builds = _builds(pool, debs, tmp_path / "debs")
        with phases("image (cached root + sshd)"):
            include = fleet.image_include(debs.values(), ansible_fleet.NODE_PACKAGES)
            image = fleet.extracted_image(include)
        with phases("torch target (cached)"):
            torch_dir = torch_target(torch_wheel())
        key, public_key = ansible_fleet.make_ssh_key(tmp_path / "ssh")
        with phases("network"):
            nodes = stack.enter_context(
                fleet.open_fleet([COORDINATOR, *DEVICES, CONTROLLER], tmp_path, tmpfs_size="12G")
            )
        try:
            _boot(nodes, image, torch_dir, public_key, phases)
            content = ansible_fleet.inventory(
                nodes.endpoints[COORDINATOR],
                [nodes.endpoints[n] for n in DEVICES],
                key=key,
                builds=builds,
                variables=FLEET_VARS,
            )
            ctl = AnsibleController(
                nodes.endpoints[CONTROLLER].netns,
                ansible_fleet.write_inventory(tmp_path / "inventory" / "hosts.yml", content),
                tmp_path / "ansible",
            )
            # First out on the way out: the SSH masters, before their namespace goes.
            stack.callback(ctl.close)
            _site_from_scratch(ctl, nodes, builds, phases)
            _train(nodes, phases)
            _site_again(ctl, phases)
            with phases("repacks (wait for the background)"):
                builds = newer_builds.result()
            repo = AptRepository(
                tmp_path / "apt-repo",
                nodes.endpoints[CONTROLLER].netns,
                nodes.endpoints[CONTROLLER].address,
            )
            stack.callback(repo.close)
            _upgrade(ctl, nodes, builds, repo, phases)
            _broken_then_rollback(ctl, nodes, builds, phases)
            _decommission(ctl, nodes, phases)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{_diagnostics(nodes, ctl)}") from exc
    finally:
        with phases("teardown"):
            stack.close()
        print(phases.summary())
    if ctl is not None:
        assert not ctl.ssh_masters(), "SSH masters outlived the test"
