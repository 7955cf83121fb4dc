"""An arm64 Debian root whose programs run under qemu-aarch64-static, with no binfmt_misc."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from tests.system import debian_root
from tests.system.debian_root import RootCommandFailed

SUITE = debian_root.SUITE
ARCH = "arm64"
# Bump when build_root changes what ends up in the tarball: the name then changes with it.
RECIPE = "foreign-unpacked-1"
QEMU = "qemu-aarch64-static"
QEMU_APT_PACKAGE = "qemu-user-static"
# Where the emulator goes inside the root (where debootstrap's own second stage puts it).
QEMU_IN_ROOT = "/usr/bin/qemu-aarch64-static"
# ELF e_machine of aarch64.
EM_AARCH64 = 183
# Must be real directories: a mount onto a symlink follows it out of the root and lands on the
# host's own tree (debootstrap --foreign in a container makes /proc a symlink to /proc).
MOUNT_POINTS = ("proc", "sys", "dev")
# What a Jetson Orin's kernel lists; qemu's default "max" CPU implements all of it.
CPU_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp uscat ilrcpc flagm paca pacg"
)


class MissingTool(Exception):
    """A host program the arm64 root needs is not installed; the message names the apt package."""


def qemu_path() -> Path:
    """The host's static aarch64 user-mode emulator."""
    found = shutil.which(QEMU)
    if found is None:
        raise MissingTool(f"{QEMU} not found: apt-get install {QEMU_APT_PACKAGE}")
    return Path(found)


def elf_machine(path: Path) -> int | None:
    """The ELF ``e_machine`` of ``path``, or None when it is not an ELF file."""
    with open(path, "rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def deb_depends(deb: Path) -> tuple[str, ...]:
    """Names in ``deb``'s Depends: first alternatives, without versions or arch qualifiers."""
    field = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        if first:
            names.add(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return tuple(sorted(names))


def deb_architecture(deb: Path) -> str:
    """The Architecture field of ``deb``."""
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def extract_deb(root: Path, deb: Path) -> None:
    """Unpack ``deb``'s files into ``root`` as debootstrap does, keeping merged-/usr symlinks.

    Plain tar would replace the ``/lib -> usr/lib`` symlink with a directory when a package
    ships files under ``/lib``; ``--keep-directory-symlink`` writes through it instead.
    """
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"',
         "extract_deb", str(deb), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RootCommandFailed(f"unpacking {deb} into {root} failed:\n{done.stderr[-4000:]}")


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` as the root itself sees it: symlinks followed, absolute targets kept inside."""
    todo = list(PurePosixPath(path).parts[1:])
    current = PurePosixPath("/")
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            current = current.parent
            continue
        host = root / str(current / name).lstrip("/")
        if not host.is_symlink():
            current = current / name
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, "too many symlinks", path)
        target = PurePosixPath(os.readlink(host))
        if target.is_absolute():
            current = PurePosixPath("/")
            todo = list(target.parts[1:]) + todo
        else:
            todo = list(target.parts) + todo
    return root / str(current).lstrip("/")


def cached_tarball(include: Sequence[str], suite: str = SUITE) -> Path:
    """The tarball path for this include list, suite, mirror and recipe (next to the amd64 one)."""
    key = "\n".join(
        [suite, ARCH, RECIPE, ",".join(sorted(include)), debian_root.host_mirror(suite)]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return debian_root.cache_dir() / f"{suite}-{ARCH}-{digest}.tar"


def build_root(root: Path, include: Sequence[str], suite: str = SUITE) -> None:
    """An arm64 ``suite`` root with ``include`` unpacked, built without running any arm64 code.

    ``debootstrap --foreign`` downloads the whole set but unpacks only the Priority: required
    packages; the second stage would install the rest with the root's own dpkg, which needs
    every program to run emulated (binfmt_misc, global to the host). Unpacking the rest here is
    enough to run programs: no maintainer script runs, so nothing is configured (no users from
    adduser, no dpkg database, no byte-compiled stdlib); the dynamic loader finds the libraries
    without an ld.so.cache.
    """
    debootstrap = [
        "debootstrap", "--foreign", f"--arch={ARCH}", "--variant=minbase",
        f"--include={','.join(include)}", suite, str(root), debian_root.host_mirror(suite),
    ]  # fmt: skip
    done = subprocess.run(debootstrap, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RootCommandFailed(f"debootstrap failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    state = root / "debootstrap"
    debs = dict(line.split(" ", 1) for line in (state / "debpaths").read_text().splitlines())
    for name in (state / "base").read_text().split():
        extract_deb(root, root / debs[name].lstrip("/"))
    # In a container debootstrap makes /proc a symlink to the host's (see MOUNT_POINTS); the
    # second stage would have replaced it with a directory.
    for point in MOUNT_POINTS:
        path = root / point
        if path.is_symlink():
            path.unlink()
            path.mkdir(mode=0o555 if point == "proc" else 0o755)
    # base-passwd's postinst would have written these; Python's pwd and grp read them.
    for table in ("passwd", "group"):
        if not (root / "etc" / table).exists():
            shutil.copyfile(root / f"usr/share/base-passwd/{table}.master", root / "etc" / table)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    shutil.rmtree(state)


def ensure_cached_root(include: Sequence[str], suite: str = SUITE) -> Path:
    """The cached tarball of the arm64 root, built first when missing or stale (one builder)."""
    return debian_root.cached_build(
        cached_tarball(include, suite), lambda root: build_root(root, include, suite)
    )


def restore_root(dest: Path, include: Sequence[str], suite: str = SUITE) -> Path:
    """A fresh copy of the cached arm64 root in ``dest`` (created; must not exist or be empty)."""
    tarball = ensure_cached_root(include, suite)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(dest)],
        check=True,
        capture_output=True,
    )
    return dest


@contextlib.contextmanager
def fresh_root(parent: Path, include: Sequence[str], size: str = "4g") -> Iterator[Path]:
    """A restored arm64 root on a tmpfs of its own at ``parent/root``, unmounted afterwards.

    Root plus agent are ~1.1 GB in ~30k files: in memory, restoring, unpacking and deleting
    them take seconds, where on a busy disk deleting alone took most of a minute.
    """
    ensure_cached_root(include)  # before mounting anything: a first build takes a while
    root = parent / "root"
    root.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"mode=0755,size={size}", "arm64root", str(root)],
            check=True,
            capture_output=True,
        )
        yield restore_root(root, include)
    finally:
        debian_root.remove_root(root)


def install_files(root: Path, deb: Path) -> None:
    """Put ``deb``'s files, unmodified, into ``root`` (maintainer scripts cannot run there)."""
    arch = deb_architecture(deb)
    if arch != ARCH:
        raise ValueError(f"{deb} is Architecture: {arch}, not {ARCH}")
    extract_deb(root, deb)
    if not (root / "lib").is_symlink():
        raise RootCommandFailed(f"unpacking {deb} replaced the merged-/usr /lib symlink in {root}")


def _cpu_numbers(ranges: str) -> list[int]:
    """CPU numbers from a sysfs list such as ``0-3,6``."""
    numbers: list[int] = []
    for part in ranges.strip().split(","):
        first, _, last = part.partition("-")
        numbers.extend(range(int(first), int(last or first) + 1))
    return numbers


def aarch64_cpuinfo(cpus: Sequence[int]) -> str:
    """A /proc/cpuinfo as an arm64 kernel writes it: one Cortex-A78AE (Jetson Orin) per CPU."""
    return "\n".join(
        f"processor\t: {n}\nBogoMIPS\t: 62.50\nFeatures\t: {CPU_FEATURES}\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd42\nCPU revision\t: 1\n"
        for n in cpus
    )


@contextlib.contextmanager
def emulated(root: Path) -> Iterator[Path]:
    """``root`` ready for ``run_emulated``: the emulator copied in, proc, sys and dev mounted.

    The emulator is started explicitly for each command, so nothing is registered with the
    host's binfmt_misc. qemu 7.2 passes the host's x86 /proc/cpuinfo through, which no arm64
    device has and on which the cpuinfo library inside onnxruntime crashes at import
    (SIGSEGV): the root's /proc/cpuinfo is an arm64 one, bind-mounted over it, with as many
    CPUs as the host's sysfs (which the guest also reads) lists. Everything mounted is
    unmounted on the way out, also on failure.
    """
    qemu = qemu_path()
    for point in MOUNT_POINTS:
        if (root / point).is_symlink() or not (root / point).is_dir():
            raise RootCommandFailed(f"{root / point} is not a directory: refusing to mount there")
    target = root / QEMU_IN_ROOT.lstrip("/")
    shutil.copy2(qemu, target)
    cpuinfo = root / "run" / "aarch64-cpuinfo"
    possible = Path("/sys/devices/system/cpu/possible").read_text(encoding="ascii")
    cpuinfo.write_text(aarch64_cpuinfo(_cpu_numbers(possible)), encoding="ascii")
    try:
        with debian_root.chroot_root(root):
            proc_cpuinfo = str(root / "proc" / "cpuinfo")
            subprocess.run(["mount", "--bind", str(cpuinfo), proc_cpuinfo], check=True,
                           capture_output=True)  # fmt: skip
            subprocess.run(["mount", "-o", "remount,bind,ro", proc_cpuinfo], check=True,
                           capture_output=True)  # fmt: skip
            yield root
    finally:
        target.unlink(missing_ok=True)
        cpuinfo.unlink(missing_ok=True)


def run_emulated(
    root: Path,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the aarch64 program ``argv`` chrooted into ``root`` (inside ``emulated``) under qemu."""
    return debian_root.run_checked(
        ["chroot", str(root), QEMU_IN_ROOT], argv, f"under {QEMU} in {root}",
        check=check, timeout=timeout, input=input,
    )  # fmt: skip
