"""Run deploy/ansible's playbooks over real SSH against a fleet of booted containers.

The fleet is ``tests/system/fleet.py``'s: one network namespace per node on a bridge, addresses
10.200.0.x that exist only inside those namespaces. The host has no route into them, so Ansible
runs in a namespace of its own on the same bridge (the *controller*: an address, no container):
``ip netns exec <controller> ansible-playbook ...`` with the host's file system, the dev venv's
ansible-core and an inventory this module writes. Every node's container runs sshd with the
test's ed25519 key in root's authorized_keys (an image layer; host key checking off, no
known_hosts written).

SSH connections are multiplexed (ansible.cfg: ``ControlPersist=60s``). Their control sockets go
to a fresh, short directory per controller (``ANSIBLE_SSH_CONTROL_PATH_DIR``; a socket path must
fit in 108 bytes), and ``AnsibleController.close`` kills the masters by PID; removing the
controller's namespace kills whatever is left in it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.system import debian_root
from tests.system.deb_repack import repack
from tests.system.fleet import Endpoint

ANSIBLE_DIR = debian_root.REPO / "deploy" / "ansible"
# What a node needs beyond the packages' own Depends: sshd, python3-apt for Ansible's apt module
# (without it the module tries to install it, which fails offline) and python3-debian for its
# deb822_repository module (the apt package source).
NODE_PACKAGES = ("openssh-server", "python3-apt", "python3-debian")
# Host tools of the controller side, and the Debian package that provides each.
TOOLS = {
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "dpkg-deb": "dpkg",
    # The upgrade goes through a signed apt repository (AptRepository).
    "dpkg-scanpackages": "dpkg-dev",
    "gpg": "gnupg",
    "gpgconf": "gnupg",
}
# Where every node gets the host's torch directory (read-only); /usr/local/lib/<pkg>/python is
# a symlink to it, so a purge removes the symlink instead of failing on a read-only mount.
TORCH_MOUNT = "/srv/fl-torch"
AGENT_VERSION_FILE = "/opt/fl-edge-agent/lib/python3.11/site-packages/fl_edge_agent/VERSION"
AGENT_PROGRAM = "/opt/fl-edge-agent/bin/fl-edge-agent"
AGENT_CONFFILE = "/etc/fl-edge-agent/agent.toml"
# The broken build's program: the service exits 1 at every start (and restart-loops).
BROKEN_PROGRAM = b"#!/bin/sh\necho 'fl-edge-agent: a deliberately broken build' >&2\nexit 1\n"
_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+"
    r"rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.M,
)
_TASK = re.compile(r"^TASK \[(?P<name>.*)\] \**$")
_CHANGED = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")
_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]\s]+)")


def missing_tools() -> list[str]:
    """``tool (apt-get install package)`` for every host tool the controller needs but lacks."""
    missing = [f"{t} (apt-get install {p})" for t, p in TOOLS.items() if not shutil.which(t)]
    for name in ("ansible-playbook",):
        if not ansible_bin(name).is_file():
            missing.append(f"{ansible_bin(name)} (pip install -r requirements-dev.txt)")
    return missing


def ansible_bin(name: str) -> Path:
    """An Ansible program of the venv that runs the tests (requirements-dev.txt pins it)."""
    return Path(sys.executable).parent / name


def make_ssh_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair without passphrase in ``directory``: (private key, public line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fl-system-test", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return key, key.with_suffix(".pub").read_text().strip()


def node_layer(public_key: str) -> Callable[[Path], None]:
    """An image layer's setup for every node: root logs in over SSH with ``public_key``; torch
    is found through a symlink to ``TORCH_MOUNT``."""

    def setup(root: Path) -> None:
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ssh_dir.chmod(0o700)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(public_key + "\n")
        keys.chmod(0o600)
        # A container may not set the audit login uid; that must not refuse the session.
        pam = root / "etc" / "pam.d" / "sshd"
        loginuid = re.compile(r"(?m)^session\s+required\s+pam_loginuid\.so")
        pam.write_text(loginuid.sub("session optional pam_loginuid.so", pam.read_text()))
        # Offline devices: no Debian mirror to reach, only the fleet's own apt repository.
        (root / "etc" / "apt" / "sources.list.d" / "debian.sources").unlink(missing_ok=True)
        (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
        for package in ("fl-edge-agent", "fl-coordinator"):
            directory = root / "usr" / "local" / "lib" / package
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "python").symlink_to(TORCH_MOUNT)

    return setup


# --- Builds ------------------------------------------------------------------------------------


def package_version(deb: Path) -> str:
    """The Version field of ``deb`` (e.g. ``0.1.0-1``)."""
    done = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Builds:
    """The packages a scenario installs, in one directory named as ``make deb`` names them
    (``<package>_<upstream version>_<arch>.deb``; package version ``<upstream>-<revision>``)."""

    directory: Path
    base: str
    revision: str
    upgrade: str = ""
    broken: str = ""


def link_builds(debs: Mapping[str, Path], directory: Path) -> Builds:
    """``directory`` with a symlink to each of ``debs`` under its ``make deb`` name."""
    directory.mkdir(parents=True, exist_ok=True)
    versions = {package_version(deb) for deb in debs.values()}
    if len(versions) != 1:
        raise ValueError(f"the packages are of different versions: {sorted(versions)}")
    upstream, _, revision = versions.pop().rpartition("-")
    for name, deb in debs.items():
        arch = deb.stem.rsplit("_", 1)[-1]
        (directory / f"{name}_{upstream}_{arch}.deb").symlink_to(deb.resolve())
    return Builds(directory, upstream, revision)


def agent_build(
    deb: Path, builds: Builds, upstream: str, *, broken: bool = False, conffile: bool = False
) -> Path:
    """A build of the agent package ``deb`` as upstream version ``upstream``, in
    ``builds.directory``: its ``__version__`` says ``upstream`` too (the coordinator sees the new
    code register). ``conffile``: the packaged agent.toml changed as well; ``broken``: the
    program exits 1 at start."""
    files = {AGENT_VERSION_FILE: f"{upstream}\n".encode()}
    if broken:
        files[AGENT_PROGRAM] = BROKEN_PROGRAM
    made = repack(
        deb,
        builds.directory,
        version=f"{upstream}-{builds.revision}",
        conffile=AGENT_CONFFILE if conffile else None,
        files=files,
    )
    arch = deb.stem.rsplit("_", 1)[-1]
    return made.rename(builds.directory / f"fl-edge-agent_{upstream}_{arch}.deb")


# --- An apt repository -------------------------------------------------------------------------


class AptRepository:
    """A signed flat apt repository (``dpkg-scanpackages``, ``InRelease`` signed with a throwaway
    ed25519 key) served over HTTP from the controller namespace, as a fleet's own repository
    would be: devices add it with the key inline (``signed_by``) and install pinned versions.

    ``close`` stops the server (by PID) and the key's gpg-agent.
    """

    def __init__(self, directory: Path, netns: str, address: str, port: int = 8090) -> None:
        self.directory = directory
        self.netns = netns
        self.uri = f"http://{address}:{port}/"
        self._bind = (address, port)
        self._home = directory.parent / f"{directory.name}-gnupg"
        self._server: subprocess.Popen[bytes] | None = None
        self.public_key = ""

    def publish(self, debs: Sequence[Path]) -> None:
        """``debs`` in the repository, its indexes and signed InRelease (re)written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            target = self.directory / deb.name
            if not target.exists():
                target.symlink_to(deb.resolve())
        packages = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."],
            cwd=self.directory, capture_output=True, check=True, timeout=300,
        ).stdout  # fmt: skip
        (self.directory / "Packages").write_bytes(packages)
        (self.directory / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
        lines = [
            "Origin: fl-system-test",
            "Label: fl-system-test",
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}",
            "SHA256:",
        ]
        for name in ("Packages", "Packages.gz"):
            data = (self.directory / name).read_bytes()
            lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
        (self.directory / "Release").write_text("\n".join(lines) + "\n")
        self._sign()

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        self._home.mkdir(mode=0o700, exist_ok=True)
        return subprocess.run(
            ["gpg", "--homedir", str(self._home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", *args],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip

    def _sign(self) -> None:
        if not self.public_key:
            self._gpg(
                "--quick-gen-key", "fl system test <repo@fl.invalid>", "ed25519", "sign", "1d"
            )
            self.public_key = self._gpg("--armor", "--export").stdout.decode()
        (self.directory / "InRelease").unlink(missing_ok=True)
        self._gpg("--clearsign", "--output", str(self.directory / "InRelease"),
                  str(self.directory / "Release"))  # fmt: skip

    def serve(self) -> None:
        """An HTTP server for the repository in the controller namespace."""
        address, port = self._bind
        self._server = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-m", "http.server",
             "--bind", address, "--directory", str(self.directory), str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c",
             "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)",
             address, str(port)],
            capture_output=True, check=False, timeout=15,
        ).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline or self._server.poll() is not None:
                raise RuntimeError(f"the apt repository's server did not start on {self.uri}")
            time.sleep(0.2)

    def close(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        if self._home.exists():
            subprocess.run(["gpgconf", "--homedir", str(self._home), "--kill", "all"],
                           capture_output=True, check=False, timeout=30)  # fmt: skip
            shutil.rmtree(self._home, ignore_errors=True)

    def inventory_vars(self) -> dict[str, Any]:
        """The fl_edge_agent variables that install from this repository."""
        return {
            "fl_edge_agent_source": "apt",
            "fl_edge_agent_apt_repo_uri": self.uri,
            "fl_edge_agent_apt_repo_suite": "./",
            "fl_edge_agent_apt_repo_components": [],
            "fl_edge_agent_apt_repo_signed_by": self.public_key,
        }


# --- Inventory ---------------------------------------------------------------------------------


def inventory(
    coordinator: Endpoint,
    devices: Sequence[Endpoint],
    *,
    key: Path,
    builds: Builds,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    """A YAML (JSON) inventory of the fleet: groups fl_coordinator and fl_edge_agents, each
    device with its own shard; ``variables`` go to all hosts."""
    common = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        # Throwaway machines: no host key check, and nothing written to root's known_hosts.
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        " -o LogLevel=ERROR",
        "fl_coordinator_version": builds.base,
        "fl_edge_agent_version": builds.base,
        "fl_coordinator_deb_dir": str(builds.directory),
        "fl_edge_agent_deb_dir": str(builds.directory),
        "fl_coordinator_address": coordinator.name,
        "fl_edge_agent_num_partitions": len(devices),
        **variables,
    }
    hosts = {
        device.name: {"ansible_host": device.address, "fl_edge_agent_partition_id": index}
        for index, device in enumerate(devices)
    }
    return {
        "all": {
            "vars": common,
            "children": {
                "fl_coordinator": {
                    "hosts": {
                        coordinator.name: {
                            "ansible_host": coordinator.address,
                            "fl_coordinator_tls_hosts": [coordinator.address],
                        }
                    }
                },
                "fl_edge_agents": {"hosts": hosts},
            },
        }
    }


def write_vars(path: Path, variables: Mapping[str, Any]) -> Path:
    """``variables`` as a JSON file for ``ansible-playbook -e @path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(variables, indent=2) + "\n")
    return path


def write_inventory(path: Path, content: Mapping[str, Any]) -> Path:
    """``content`` as ``path`` (JSON, which Ansible's YAML inventory plugin reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


# --- Running playbooks -------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRecap:
    """One host's line of the PLAY RECAP."""

    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int
    rescued: int
    ignored: int


def parse_recap(output: str) -> dict[str, HostRecap]:
    """The PLAY RECAP of an ``ansible-playbook`` output, by host (hosts no task ran on: absent)."""
    return {
        m["host"]: HostRecap(*(int(m[k]) for k in ("ok", "changed", "unreachable", "failed",
                                                   "skipped", "rescued", "ignored")))
        for m in _RECAP.finditer(output)
    }  # fmt: skip


def changed_tasks(output: str) -> list[str]:
    """``host: task`` for every task result reported ``changed`` (delegated ones included)."""
    found, task = [], ""
    for line in output.splitlines():
        if header := _TASK.match(line):
            task = header["name"]
        elif result := _CHANGED.match(line):
            found.append(f"{result['host']}: {task}")
    return found


def failed_tasks(output: str) -> list[tuple[str, str]]:
    """(host, task) for every task that failed a host (``fatal: [host]``)."""
    found, task = [], ""
    for line in output.splitlines():
        if header := _TASK.match(line):
            task = header["name"]
        elif result := _FATAL.match(line):
            found.append((result["host"], task))
    return found


@dataclass
class PlaybookRun:
    """What one ``ansible-playbook`` run did."""

    playbook: str
    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    log: Path
    recap: dict[str, HostRecap] = field(default_factory=dict)

    def tail(self, chars: int = 8000) -> str:
        return f"--- {self.playbook} {' '.join(self.args)} ({self.log}) ---\n{self.output[-chars:]}"


class PlaybookFailed(AssertionError):
    """A playbook that had to pass did not; the message carries its output's tail."""


class AnsibleController:
    """``ansible-playbook`` in the controller namespace ``netns`` with ``inventory``.

    Logs of every run go to ``workdir``; ``close`` kills the SSH masters it left.
    """

    def __init__(self, netns: str, inventory_file: Path, workdir: Path) -> None:
        self.netns = netns
        self.inventory = inventory_file
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # /tmp/flcp-XXXXXXXX/<10 hex>: far below the 108 bytes of a socket path.
        self.control_dir = Path(tempfile.mkdtemp(prefix="flcp-", dir="/tmp"))
        self.runs: list[PlaybookRun] = []

    def env(self) -> dict[str, str]:
        bin_dir = str(ansible_bin("ansible-playbook").parent)
        return {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.workdir / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PYTHONUNBUFFERED": "1",
        }

    def playbook(self, playbook: str, *args: str, timeout: float = 900) -> PlaybookRun:
        """Run ``playbook`` (in deploy/ansible) with ``args``; its result, passed or not."""
        log = self.workdir / f"{len(self.runs) + 1:02d}-{Path(playbook).stem}.log"
        argv = ["ip", "netns", "exec", self.netns, str(ansible_bin("ansible-playbook")),
                "-i", str(self.inventory), playbook, *args]  # fmt: skip
        started = time.monotonic()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, cwd=ANSIBLE_DIR, env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                returncode = process.wait(timeout)
            except subprocess.TimeoutExpired:
                # ansible-playbook and its forks are one process group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                returncode = -signal.SIGKILL
        output = log.read_text(errors="replace")
        if returncode == -signal.SIGKILL:
            output += f"\n(killed after {timeout:.0f} s)\n"
        run = PlaybookRun(
            playbook, args, returncode, output, time.monotonic() - started, log, parse_recap(output)
        )
        self.runs.append(run)
        print(f"  ansible-playbook {playbook} {' '.join(args)}: rc {returncode}, "
              f"{run.seconds:.1f} s, log {log}")  # fmt: skip
        return run

    def passing(self, playbook: str, *args: str, timeout: float = 900) -> PlaybookRun:
        """``playbook`` run that must pass: rc 0, no host failed or unreachable."""
        run = self.playbook(playbook, *args, timeout=timeout)
        bad = {h: r for h, r in run.recap.items() if r.failed or r.unreachable}
        if run.returncode != 0 or bad or not run.recap:
            raise PlaybookFailed(f"{playbook} failed (rc {run.returncode}): {bad}\n{run.tail()}")
        return run

    def ssh_masters(self) -> list[int]:
        """PIDs of SSH processes using this controller's control sockets (masters included)."""
        marker = str(self.control_dir).encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            # A master renames itself "ssh: <control path> [mux]"; clients keep their argv.
            program = cmdline.split(b"\0", 1)[0].rsplit(b"/", 1)[-1]
            if program.startswith(b"ssh") and marker in cmdline:
                pids.append(int(proc.name))
        return pids

    def close(self) -> None:
        """Kill the SSH masters (by PID) and remove their control directory."""
        pids = self.ssh_masters()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (pids := [p for p in pids if _alive(p)]):
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.control_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for this purpose (its parent reaps it).
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True
