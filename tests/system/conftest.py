"""Fixtures of the system tests: the built .debs, a cached Debian root, a fresh copy per test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.system import debian_root
from tests.system.deb_under_test import PACKAGES, DebUnderTest

REPO = debian_root.REPO


def deb_dir() -> Path:
    """Where the built .debs are: ``$FL_SYSTEM_TEST_DEBS`` or ``<repo>/dist/deb``."""
    return Path(os.environ.get("FL_SYSTEM_TEST_DEBS") or REPO / "dist" / "deb")


def _debs(directory: Path) -> dict[str, Path]:
    """The newest amd64 .deb of each package in ``directory``."""
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*_amd64.deb"), key=lambda p: p.stat().st_mtime):
        if path.stat().st_size == 0:  # being written by a running `make deb`
            continue
        found[path.name.split("_", 1)[0]] = path
    return found


def upstream_version(deb: Path) -> str:
    """The repository's VERSION, else the deb file name's version without epoch and revision."""
    version_file = REPO / "VERSION"
    if version_file.exists() and not os.environ.get("FL_SYSTEM_TEST_DEBS"):
        return version_file.read_text(encoding="utf-8").strip()
    version = deb.name.split("_")[1]
    version = version.split(":", 1)[-1]
    return re.sub(r"-[^-]+$", "", version)


@pytest.fixture(scope="session")
def built_debs() -> dict[str, Path]:
    """The amd64 .debs, made with ``make deb`` when none are there yet."""
    directory = deb_dir()
    debs = _debs(directory)
    if not debs and not os.environ.get("FL_SYSTEM_TEST_DEBS"):
        started = time.monotonic()
        done = subprocess.run(
            ["make", "deb"], cwd=REPO, capture_output=True, text=True, check=False, timeout=1800
        )
        if done.returncode != 0:
            pytest.fail(
                f"no .debs in {directory} and `make deb` failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                pytrace=False,
            )
        print(f"\nmake deb: {time.monotonic() - started:.1f} s")
        debs = _debs(directory)
    return debs


@pytest.fixture
def deb(request: pytest.FixtureRequest, built_debs: dict[str, Path]) -> DebUnderTest:
    """The package named by the test's ``package`` parameter."""
    name = request.param
    if name not in built_debs:
        pytest.fail(
            f"{name}_*_amd64.deb is missing from {deb_dir()} (found: {sorted(built_debs)})",
            pytrace=False,
        )
    commands, conffile, user, runs = PACKAGES[name]
    path = built_debs[name]
    return DebUnderTest(name, path, upstream_version(path), commands, conffile, user, runs)


def _missing_tools() -> list[str]:
    tools = ("debootstrap", "systemd-nspawn", "nsenter", "chroot", "dpkg-deb")
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def cached_root() -> Path:
    """The cached Debian root tarball (debootstrapped on first use)."""
    if os.geteuid() != 0:
        pytest.skip("system tests need root (chroot, mounts, systemd-nspawn)")
    missing = _missing_tools()
    if missing:
        pytest.skip(f"system tests need {', '.join(missing)} (.ci/run installs them)")
    started = time.monotonic()
    tarball = debian_root.ensure_cached_root()
    print(f"\ncached root {tarball} ({tarball.stat().st_size / 2**20:.0f} MiB) in "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    return tarball


@pytest.fixture
def fresh_root(cached_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the cached root for one test, deleted afterwards (mounts first)."""
    started = time.monotonic()
    with debian_root.fresh_root(tmp_path) as root:
        print(f"\nrestored root in {time.monotonic() - started:.1f} s")
        yield root
