"""A throwaway Debian root for system tests: debootstrap once, cache a tarball, restore per test.

The cached root is ``debootstrap --variant=minbase`` plus what booting it needs (systemd,
systemd-sysv, dbus); everything a package under test needs must come from its own Depends, pulled
by apt from the same Debian mirror the host uses. The tarball lives in ``$FL_SYSTEM_TEST_CACHE``
(default ``<repo>/.cache/debroot``, git-ignored) and is named after a hash of what went into it, so
changing the include list builds a new one. A restore is one ``tar -x`` (a few seconds).

Nothing here mounts onto the host's own trees: ``/dev`` in a chroot is a private tmpfs with the
handful of device nodes apt and Python need, and every mount is undone on the way out (lazily when
busy). ``remove_root`` refuses to delete a tree that still has something mounted under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
ARCH = "amd64"
# What a booted container needs; python3.11 and adduser are deliberately absent (the packages'
# Depends must pull them).
INCLUDE = ("systemd", "systemd-sysv", "dbus")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# A cached root older than this is rebuilt: its package lists would name files the mirror dropped.
MAX_AGE_S = 7 * 24 * 3600
ROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


class RootCommandFailed(Exception):
    """A command run inside a Debian root exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class AptSource:
    """One deb822 stanza of the root's apt sources: a URI and the suites it serves."""

    uri: str
    suites: tuple[str, ...]


def cache_dir() -> Path:
    """Where cached root tarballs live: ``$FL_SYSTEM_TEST_CACHE`` or ``<repo>/.cache/debroot``."""
    return Path(os.environ.get("FL_SYSTEM_TEST_CACHE") or REPO / ".cache" / "debroot")


def _host_source_entries() -> list[tuple[str, str]]:
    """(URI, suite) pairs of the host's enabled ``deb`` sources, one-line and deb822 alike."""
    entries: list[tuple[str, str]] = []
    apt = Path("/etc/apt")
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    entries += [(uri, suite) for suite in fields.get("suites", "").split()]
        else:
            for line in text.splitlines():
                # deb [options] URI suite component...
                match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if match:
                    entries.append((match.group(1), match.group(2)))
    return entries


def host_debian_sources(suite: str = SUITE) -> list[AptSource]:
    """The host's Debian sources for ``suite`` and its -updates/-security pockets, by URI.

    Third-party repositories on the host (anything not serving ``suite`` itself) are left out.
    Falls back to deb.debian.org when the host names no source for ``suite``.
    """
    by_uri: dict[str, list[str]] = {}
    for uri, entry_suite in _host_source_entries():
        if entry_suite == suite or entry_suite.startswith(f"{suite}-"):
            by_uri.setdefault(uri.rstrip("/"), []).append(entry_suite)
    if not any(suite in suites for suites in by_uri.values()):
        return [AptSource(DEFAULT_MIRROR, (suite,))]
    return [AptSource(uri, tuple(dict.fromkeys(suites))) for uri, suites in by_uri.items()]


def host_mirror(suite: str = SUITE) -> str:
    """The URI the host installs ``suite`` itself from (the one debootstrap uses)."""
    for source in host_debian_sources(suite):
        if suite in source.suites:
            return source.uri
    return DEFAULT_MIRROR


def _sources_text(sources: Sequence[AptSource]) -> str:
    stanzas = [
        f"Types: deb\nURIs: {s.uri}\nSuites: {' '.join(s.suites)}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        for s in sources
    ]
    return "\n".join(stanzas)


def cached_tarball(include: Sequence[str] = INCLUDE, suite: str = SUITE) -> Path:
    """The tarball path for this include list, suite and the host's sources."""
    sources = host_debian_sources(suite)
    key = "\n".join([suite, ARCH, ",".join(sorted(include)), _sources_text(sources)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / f"{suite}-{ARCH}-{digest}.tar"


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    base = os.path.realpath(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and the like octal-escaped.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == base or point.startswith(base + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _processes_rooted_in(path: Path) -> list[int]:
    """PIDs whose root directory is ``path`` or below it (daemons a maintainer script left)."""
    base = os.path.realpath(path)
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            root = os.readlink(proc / "root")
        except OSError:
            continue
        if root == base or root.startswith(base + "/"):
            pids.append(int(proc.name))
    return pids


def unmount_all(path: Path) -> None:
    """Kill processes chrooted into ``path``, then unmount everything below it, lazily if busy."""
    for pid in _processes_rooted_in(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for point in _mounts_under(path):
        done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)


def _make_dev(dev: Path) -> None:
    """A private /dev: tmpfs with the usual nodes and a fresh devpts instance."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "devtmp", str(dev)],
        check=True,
        capture_output=True,
    )
    for name, major, minor in (
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ):
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)  # noqa: S103 - device nodes, as on any system
    (dev / "pts").mkdir()
    (dev / "shm").mkdir(mode=0o1777)
    os.chmod(dev / "shm", 0o1777)  # noqa: S103 - sticky, as on any system
    subprocess.run(
        ["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts",
         str(dev / "pts")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    os.symlink("pts/ptmx", dev / "ptmx")
    os.symlink("/proc/self/fd", dev / "fd")
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{number}", dev / name)


@contextlib.contextmanager
def chroot_root(root: Path) -> Iterator[Path]:
    """Make ``root`` usable with chroot: proc, sysfs, a private /dev + devpts, resolv.conf.

    Everything mounted is unmounted on the way out, also when the body raises.
    """
    root = Path(os.path.realpath(root))
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["mount", "-t", "sysfs", "-o", "ro", "sysfs", str(root / "sys")],
                       check=True, capture_output=True)  # fmt: skip
        _make_dev(root / "dev")
        resolv = root / "etc" / "resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)
        yield root
    finally:
        unmount_all(root)


def run_in(
    root: Path,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` chrooted into ``root`` (inside ``chroot_root``), with a clean environment."""
    return run_checked(
        ["chroot", str(root)], argv, f"in {root}", check=check, timeout=timeout, input=input
    )


def run_checked(
    prefix: Sequence[str],
    argv: Sequence[str],
    where: str,
    *,
    check: bool,
    timeout: float,
    input: str | None,
) -> subprocess.CompletedProcess[str]:
    """Run ``prefix + argv`` with ROOT_ENV; with ``check``, a failure raises RootCommandFailed
    naming ``argv``, ``where`` it ran and the tails of its output."""
    done = subprocess.run(
        [*prefix, *argv],
        env=ROOT_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and done.returncode != 0:
        raise RootCommandFailed(
            f"{' '.join(argv)} exited {done.returncode} {where}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
        )
    return done


def _configure_apt(root: Path, sources: Sequence[AptSource]) -> None:
    """The host's Debian mirror (with its -updates/-security pockets) as the root's only source."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(_sources_text(sources))
    # Tests install and purge a handful of packages: no translations, no downloaded .debs kept.
    (root / "etc/apt/apt.conf.d/90system-tests").write_text(
        'Acquire::Languages "none";\nAPT::Keep-Downloaded-Packages "false";\n'
    )


def build_root(root: Path, include: Sequence[str] = INCLUDE, suite: str = SUITE) -> None:
    """Debootstrap ``suite`` into ``root`` and bring it up to date from the host's mirror."""
    sources = host_debian_sources(suite)
    debootstrap = [
        "debootstrap", "--variant=minbase", f"--include={','.join(include)}", f"--arch={ARCH}",
        suite, str(root), host_mirror(suite),
    ]  # fmt: skip
    done = subprocess.run(debootstrap, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RootCommandFailed(f"debootstrap failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    _configure_apt(root, sources)
    with chroot_root(root):
        run_in(root, ["apt-get", "update", "-qq"])
        run_in(root, ["apt-get", "dist-upgrade", "-y", "-qq"])
        run_in(root, ["apt-get", "clean"])
    # The host's resolv.conf was only for the build.
    (root / "etc/resolv.conf").unlink(missing_ok=True)


def cached_build(tarball: Path, build: Callable[[Path], None]) -> Path:
    """``tarball``, made first by ``build(root_dir)`` + tar when missing or stale (one builder)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with open(tarball.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists() and time.time() - tarball.stat().st_mtime < MAX_AGE_S:
            return tarball
        staging = Path(tempfile.mkdtemp(prefix="build-", dir=tarball.parent))
        try:
            build(staging / "root")
            partial = staging / "root.tar"
            subprocess.run(
                ["tar", "--numeric-owner", "--xattrs", "-cf", str(partial), "-C",
                 str(staging / "root"), "."],
                check=True,
                capture_output=True,
            )  # fmt: skip
            partial.replace(tarball)
        finally:
            remove_root(staging)
    return tarball


def ensure_cached_root(include: Sequence[str] = INCLUDE, suite: str = SUITE) -> Path:
    """The cached tarball of the root, built first when missing or stale (one builder at a time)."""
    return cached_build(
        cached_tarball(include, suite), lambda root: build_root(root, include, suite)
    )


def restore_root(dest: Path, include: Sequence[str] = INCLUDE, suite: str = SUITE) -> Path:
    """A fresh copy of the cached root in ``dest`` (created; must not exist or be empty)."""
    tarball = ensure_cached_root(include, suite)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(dest)],
        check=True,
        capture_output=True,
    )
    return dest


def remove_root(root: Path) -> None:
    """Delete a root tree, after unmounting whatever is left; never through a live mount."""
    if not root.exists():
        return
    unmount_all(root)
    left = _mounts_under(root)
    if left:
        raise RuntimeError(f"not deleting {root}: still mounted below it: {left}")
    shutil.rmtree(root)


@contextlib.contextmanager
def fresh_root(parent: Path, name: str = "root") -> Iterator[Path]:
    """A restored root under ``parent``, removed (mounts first) when the block ends."""
    root = parent / name
    try:
        yield restore_root(root)
    finally:
        remove_root(root)
