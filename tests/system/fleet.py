"""A fleet of booted nspawn containers, each in its own network namespace on one private subnet.

Layout, for nodes ``coordinator``, ``agent-1``, ``agent-2`` (names are the containers' host names):

    netns flfleet-<pid>-<tag>-switch   bridge br0 with one veth end per node (p0, p1, ...)
    netns flfleet-<pid>-<tag>-<node>   the other end as eth0, 10.200.0.<i+1>/24, and lo;
                                       the node's container runs in it (--network-namespace-path)

Every interface is created inside those namespaces (``ip -n``): the host's own network is never
touched, and the nodes reach each other only, not the host or the internet (apt inside the nodes
cannot download: whatever a package depends on must be in the image, see ``image_include``).
Each node's root is an overlay over read-only layers: the cached debootstrapped image
(``extracted_image``) and, optionally, layers built from it in a chroot (``Fleet.layer``, e.g.
a package installed once for many nodes). Overlays and layers live in a tmpfs work directory.
Every node's ``/etc/hosts`` names all nodes (resolve them by name, e.g. for TLS).

    with open_fleet(["coordinator", "device-1", "device-2"], tmp_path) as fleet:
        layer = fleet.layer("sshd", [image], lambda root: run_in(root, ["apt-get", ...]))
        fleet.boot([NodeSpec("coordinator"), ...], [layer, image])
        fleet["device-1"].exec(["systemctl", "is-active", "ssh"])

Everything is removed on the way out, also on failure: containers (by PID), overlay mounts,
namespaces, work directories. Names carry the creating process's PID, so ``remove_stale_fleets``
(run before each new fleet) removes what a crashed earlier run left behind without touching a
fleet of a live process.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.system import debian_root
from tests.system.nspawn import Container, booted

PREFIX = "flfleet-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")
DEFAULT_SUBNET = "10.200.0.0/24"
# Upper bound of the in-memory work directory; installing one of our packages writes ~1 GB.
DEFAULT_TMPFS_SIZE = "8G"
NETNS_DIR = Path("/run/netns")
# Host tools the fleet needs, and the Debian package that provides each.
TOOLS = {
    "ip": "iproute2",
    "systemd-nspawn": "systemd-container",
    "nsenter": "util-linux",
    "debootstrap": "debootstrap",
    "tar": "tar",
    "mount": "mount",
}


class FleetSetupFailed(Exception):
    """A namespace, link, mount or container of the fleet could not be set up."""


def missing_tools() -> list[str]:
    """``tool (apt-get install package)`` for every host tool the fleet needs but lacks."""
    return [
        f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS.items() if not shutil.which(tool)
    ]


def _run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise FleetSetupFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> bool:
    """A fleet name whose creating process is gone."""
    match = _OWNED.match(name)
    return match is not None and not _alive(int(match.group(1)))


# --- Network namespaces ----------------------------------------------------------------------


def list_netns() -> list[str]:
    """Names of the network namespaces under /run/netns."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_netns(name: str) -> None:
    """Kill every process in namespace ``name`` (by PID), then delete it."""
    pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if p.isdigit() and _alive(int(p))]
        time.sleep(0.05)
    _run(["ip", "netns", "delete", name], check=False)


@dataclass(frozen=True)
class Endpoint:
    """One node's place in the fleet network: its namespace and address."""

    name: str
    netns: str
    address: str

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns


@contextlib.contextmanager
def fleet_network(
    names: Sequence[str], subnet: str = DEFAULT_SUBNET, tag: str | None = None
) -> Iterator[dict[str, Endpoint]]:
    """One namespace per name on a bridge in a switch namespace; all removed on the way out.

    The i-th name gets the subnet's (i+1)-th address (10.200.0.1, 10.200.0.2, ...).
    """
    network = ipaddress.IPv4Network(subnet)
    hosts = list(network.hosts())
    if len(names) > len(hosts):
        raise ValueError(f"{subnet} has room for {len(hosts)} nodes, not {len(names)}")
    base = f"{PREFIX}{os.getpid()}-{tag or uuid.uuid4().hex[:6]}"
    switch = f"{base}-switch"
    created: list[str] = []
    try:
        _run(["ip", "netns", "add", switch])
        created.append(switch)
        _run(["ip", "-n", switch, "link", "set", "lo", "up"])
        _run(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", switch, "link", "set", "br0", "up"])
        endpoints: dict[str, Endpoint] = {}
        for index, name in enumerate(names):
            netns = f"{base}-{name}"
            _run(["ip", "netns", "add", netns])
            created.append(netns)
            port = f"p{index}"
            # Both ends are born in the switch namespace; eth0 moves straight into the node's.
            _run(["ip", "-n", switch, "link", "add", port, "type", "veth",
                  "peer", "name", "eth0", "netns", netns])  # fmt: skip
            _run(["ip", "-n", switch, "link", "set", port, "master", "br0"])
            _run(["ip", "-n", switch, "link", "set", port, "up"])
            address = str(hosts[index])
            _run(
                ["ip", "-n", netns, "addr", "add", f"{address}/{network.prefixlen}", "dev", "eth0"]
            )
            _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
            endpoints[name] = Endpoint(name, netns, address)
        yield endpoints
    finally:
        for netns in reversed(created):
            remove_netns(netns)


# --- Root file systems -----------------------------------------------------------------------


def _check_overlay_path(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ":,\\"):
        raise ValueError(f"overlayfs cannot take a layer path with ':', ',' or '\\': {text}")
    return text


@contextlib.contextmanager
def overlay_root(layers: Sequence[Path], top: Path) -> Iterator[Path]:
    """An overlay mount at ``top/root`` over read-only ``layers`` (topmost first); unmounted after.

    What the node writes lands in ``top/upper``; the layers never change.
    """
    upper, work, merged = top / "upper", top / "work", top / "root"
    for directory in (upper, work, merged):
        directory.mkdir(parents=True)
    lower = ":".join(_check_overlay_path(layer) for layer in layers)
    options = (
        f"lowerdir={lower},upperdir={_check_overlay_path(upper)},"
        f"workdir={_check_overlay_path(work)}"
    )
    _run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)])
    try:
        yield merged
    finally:
        debian_root.unmount_all(merged)


def deb_depends(debs: Iterable[Path]) -> list[str]:
    """Package names in the ``Depends`` of ``debs`` (versions dropped; first of alternatives)."""
    names: set[str] = set()
    for deb in debs:
        field_ = _run(["dpkg-deb", "--field", str(deb), "Depends"]).stdout
        for clause in field_.split(","):
            first = clause.split("|")[0].strip()
            if first:
                names.add(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return sorted(names)


def image_include(debs: Iterable[Path], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """What a fleet image debootstraps: the booting base, what ``debs`` depend on, ``extra``.

    The nodes cannot reach a mirror, so a package installed in them finds its dependencies
    already there.
    """
    return tuple(sorted({*debian_root.INCLUDE, *deb_depends(debs), *extra}))


def _mounted_anywhere(path: Path) -> bool:
    """Whether any mount (an overlay's layers included) names ``path``."""
    return str(path) in Path("/proc/self/mountinfo").read_text()


def extracted_image(include: Sequence[str]) -> Path:
    """The cached root for ``include``, extracted once next to its tarball; use it read-only.

    Nodes mount it as an overlay's lower layer, which is never written, so every fleet shares
    one extraction (saves ~10 s a run). A rebuilt tarball gets a new directory; older ones are
    deleted once no mount uses them.
    """
    tarball = debian_root.ensure_cached_root(include)
    image = tarball.with_name(f"{tarball.stem}-{int(tarball.stat().st_mtime)}.image")
    with open(tarball.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.is_dir():
            partial = Path(tempfile.mkdtemp(prefix="extract-", dir=image.parent))
            try:
                _run(["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C",
                      str(partial)], timeout=600)  # fmt: skip
                partial.chmod(0o755)  # mkdtemp's 0700 would lock every user but root out of /
                partial.rename(image)
            finally:
                if partial.exists():
                    shutil.rmtree(partial)
        for old in image.parent.glob(f"{tarball.stem}-*.image"):
            if old != image and not _mounted_anywhere(old):
                shutil.rmtree(old)
    return image


def _hosts_file(endpoints: Iterable[Endpoint]) -> str:
    """Every node, the one reading it included, under its fleet address."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{e.address}\t{e.name}" for e in endpoints]
    return "\n".join(lines) + "\n"


def install_file(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` inside ``root`` (created with its parents)."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(text)
    target.chmod(mode)


# --- The fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    """A node to boot: its host name, read-only bind mounts (host path, path inside) and files
    (path inside, text) written into its root before it boots."""

    name: str
    binds_ro: tuple[tuple[Path, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()


@dataclass
class FleetNode:
    """A booted node: name, address, namespace, its root on the host and its container."""

    name: str
    address: str
    netns: str
    root: Path
    container: Container

    def exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 600,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the node (all of its namespaces, as root)."""
        return self.container.exec_in(argv, check=check, timeout=timeout, input=input)

    def journal(self, unit: str, lines: int = 80) -> str:
        """The last ``lines`` of ``unit``'s journal, or why it could not be read."""
        try:
            done = self.exec(
                ["journalctl", "-u", unit, "-n", str(lines), "--no-pager"], check=False, timeout=30
            )
        except (subprocess.TimeoutExpired, OSError) as exc:
            return f"(journal of {unit} on {self.name} unreadable: {exc})"
        return done.stdout + done.stderr


class Fleet:
    """A fleet network with its work directory; boots nodes into it and builds image layers.

    Made by ``open_fleet``; whatever it boots, mounts or builds is removed when that ends.
    """

    def __init__(
        self, endpoints: dict[str, Endpoint], top: Path, stack: contextlib.ExitStack
    ) -> None:
        self.endpoints = endpoints
        self.top = top
        self.nodes: dict[str, FleetNode] = {}
        self._stack = stack
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> FleetNode:
        return self.nodes[name]

    def layer(self, name: str, layers: Sequence[Path], setup: Callable[[Path], None]) -> Path:
        """A new read-only layer: ``setup(root)`` on a chroot-ready overlay of ``layers``.

        What ``setup`` changes (e.g. ``apt-get install`` of a .deb, without a running systemd,
        as in an image build) becomes a directory to stack on top of ``layers`` for ``boot``.
        """
        top = self.top / f"layer-{name}"
        with overlay_root(layers, top) as root, debian_root.chroot_root(root):
            setup(root)
        # chroot_root left the host's resolv.conf; the nodes have no DNS server.
        (top / "upper" / "etc" / "resolv.conf").unlink(missing_ok=True)
        shutil.rmtree(top / "work")
        return top / "upper"

    def boot(
        self, specs: Sequence[NodeSpec], layers: Sequence[Path], boot_timeout: float = 120
    ) -> list[FleetNode]:
        """Boot one container per spec (in parallel) on its own overlay of ``layers``."""
        roots = {}
        for spec in specs:
            if spec.name not in self.endpoints or spec.name in self.nodes:
                raise ValueError(f"{spec.name!r} is not a free node name of this fleet")
            root = self._stack.enter_context(overlay_root(layers, self.top / spec.name))
            install_file(root, "/etc/hostname", f"{spec.name}\n")
            install_file(root, "/etc/hosts", _hosts_file(self.endpoints.values()))
            for path, text in spec.files:
                install_file(root, path, text)
            roots[spec.name] = root
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            futures = [
                pool.submit(self._boot_node, spec, roots[spec.name], boot_timeout) for spec in specs
            ]
            booted_nodes = [future.result() for future in futures]
        for node in booted_nodes:
            self.nodes[node.name] = node
        return booted_nodes

    def _boot_node(self, spec: NodeSpec, root: Path, boot_timeout: float) -> FleetNode:
        endpoint = self.endpoints[spec.name]
        context = booted(
            root,
            network_namespace_path=endpoint.netns_path,
            boot_timeout=boot_timeout,
            extra_args=[f"--bind-ro={host}:{inside}" for host, inside in spec.binds_ro],
        )
        # booted() powers the container off itself when the boot fails.
        container = context.__enter__()
        with self._lock:
            self._stack.push(context.__exit__)
        return FleetNode(spec.name, endpoint.address, endpoint.netns, root, container)

    def journals(self, units: dict[str, str], lines: int = 80) -> str:
        """Journal tails of ``units`` (node name → unit) for a failure message."""
        parts = []
        for name, unit in units.items():
            if name in self.nodes:
                journal = self.nodes[name].journal(unit, lines)
                parts.append(f"--- {name}: journalctl -u {unit} -n {lines} ---\n{journal}")
        return "\n".join(parts)


def _stale_fleet_dirs() -> set[Path]:
    """Fleet work directories (``.../flfleet-<pid>-<tag>``) with a mount left by a dead run."""
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
        for depth, part in enumerate(point.parts):
            if _stale(part):
                found.add(Path(*point.parts[: depth + 1]))
                break
    return found


def remove_stale_fleets() -> list[str]:
    """Remove what crashed runs left: namespaces (and their processes), then mounts and dirs.

    Only names whose creating process is gone are touched. Returns what was removed.
    """
    removed = []
    for netns in list_netns():
        if _stale(netns):
            remove_netns(netns)
            removed.append(f"netns {netns}")
    for top in sorted(_stale_fleet_dirs()):
        debian_root.remove_root(top)
        removed.append(str(top))
    return removed


@contextlib.contextmanager
def open_fleet(
    names: Sequence[str],
    workdir: Path,
    *,
    subnet: str = DEFAULT_SUBNET,
    tmpfs_size: str | None = DEFAULT_TMPFS_SIZE,
) -> Iterator[Fleet]:
    """The network for ``names`` and a work directory; boot nodes with ``Fleet.boot``.

    ``workdir`` gets ``flfleet-<pid>-<tag>/``, which holds the nodes' overlays, layers and
    console logs: a tmpfs of at most ``tmpfs_size`` (None: on ``workdir``'s disk). In memory,
    dpkg's fsyncs cost nothing and removing a node's ~1 GB of installed files is one umount
    instead of seconds of unlinking. On the way out, also on failure: containers are powered
    off (killed after a timeout), then mounts, namespaces and the work directory are removed.
    """
    for stale in remove_stale_fleets():
        print(f"removed the leftover of a crashed fleet: {stale}")
    tag = uuid.uuid4().hex[:6]
    top = workdir / f"{PREFIX}{os.getpid()}-{tag}"
    top.mkdir(parents=True)
    try:
        if tmpfs_size is not None:
            _run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size},mode=0755", "flfleet",
                  str(top)])  # fmt: skip
        with contextlib.ExitStack() as stack:
            endpoints = stack.enter_context(fleet_network(names, subnet, tag))
            yield Fleet(endpoints, top, stack)
            started = time.monotonic()
        print(
            f"fleet: containers, mounts and namespaces gone in {time.monotonic() - started:.1f} s"
        )
    finally:
        started = time.monotonic()
        debian_root.remove_root(top)
        print(f"fleet: work directory removed in {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def booted_fleet(
    specs: Sequence[NodeSpec],
    layers: Sequence[Path],
    workdir: Path,
    *,
    subnet: str = DEFAULT_SUBNET,
    boot_timeout: float = 120,
) -> Iterator[Fleet]:
    """``open_fleet`` with every node of ``specs`` booted on ``layers``."""
    with open_fleet([s.name for s in specs], workdir, subnet=subnet) as fleet:
        fleet.boot(specs, layers, boot_timeout)
        yield fleet
