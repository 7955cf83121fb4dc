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
    """The amd64 .debs: built from this tree with ``make deb``, or ``$FL_SYSTEM_TEST_DEBS``.

    The session always builds (about 3 minutes) unless given a directory of debs, so it never
    tests packages left over from an older tree.
    """
    directory = deb_dir()
    if not os.environ.get("FL_SYSTEM_TEST_DEBS"):
        started = time.monotonic()
        done = subprocess.run(
            ["make", "deb"], cwd=REPO, capture_output=True, text=True, check=False, timeout=1800
        )
        if done.returncode != 0:
            pytest.fail(
                f"`make deb` failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                pytrace=False,
            )
        print(f"\nmake deb: {time.monotonic() - started:.1f} s")
    return _debs(directory)


class LintianRun:
    """lintian over every built .deb, started in the background as soon as they exist.

    lintian takes minutes of CPU and the install tests mostly wait on dpkg and disks: the run
    overlaps them, and test_lintian.py (last in the session) collects its verdict.
    """

    def __init__(self, debs: list[Path], log: Path) -> None:
        self.debs = debs
        self.log = log
        self.started = time.monotonic()
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["lintian", "--fail-on", "error", "--tag-display-limit", "0", *map(str, debs)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def result(self, timeout: float) -> tuple[int, str, float]:
        """(exit status, output, seconds since the start) once lintian has finished."""
        status = self.process.wait(timeout)
        return status, self.log.read_text(errors="replace"), time.monotonic() - self.started

    def stop(self) -> None:
        """Kill lintian if the session ends before test_lintian.py collected it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def lintian_run(
    built_debs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LintianRun]:
    """The background lintian run over all packages (see LintianRun)."""
    if shutil.which("lintian") is None:
        pytest.fail("lintian is missing: apt-get install lintian (.ci/run installs it)", False)
    debs = sorted(p for p in deb_dir().glob("*.deb") if p.stat().st_size > 0)
    run = LintianRun(debs, tmp_path_factory.mktemp("lintian") / "lintian.log")
    try:
        yield run
    finally:
        run.stop()


@pytest.fixture(scope="session", autouse=True)
def _lintian_early(request: pytest.FixtureRequest) -> None:
    """Start lintian at the start of a session that will check the packages with it."""
    if any(item.path.name == "test_lintian.py" for item in request.session.items):
        request.getfixturevalue("lintian_run")


def newest_deb(directory: Path, package: str, arch: str) -> Path | None:
    """The newest complete ``<package>_*_<arch>.deb`` in ``directory``, or None."""
    found = [p for p in directory.glob(f"{package}_*_{arch}.deb") if p.stat().st_size > 0]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


@pytest.fixture(scope="session")
def built_arm64_deb(built_debs: dict[str, Path]) -> Path:
    """The arm64 fl-edge-agent .deb (``make deb`` builds it along with the amd64 ones)."""
    deb = newest_deb(deb_dir(), "fl-edge-agent", "arm64")
    if deb is None:
        pytest.fail(f"fl-edge-agent_*_arm64.deb is missing from {deb_dir()}", pytrace=False)
    return deb


@pytest.fixture
def deb(request: pytest.FixtureRequest, built_debs: dict[str, Path]) -> DebUnderTest:
    """The package named by the test's ``package`` parameter."""
    name = request.param
    if name not in built_debs:
        pytest.fail(
            f"{name}_*_amd64.deb is missing from {deb_dir()} (found: {sorted(built_debs)})",
            pytrace=False,
        )
    commands, conffile, user, status = PACKAGES[name]
    path = built_debs[name]
    return DebUnderTest(name, path, upstream_version(path), commands, conffile, user, status)


def _missing_tools() -> list[str]:
    tools = ("debootstrap", "systemd-nspawn", "nsenter", "chroot", "dpkg-deb")
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def cached_root() -> Path:
    """The cached Debian root tarball (debootstrapped on first use)."""
    if os.geteuid() != 0:
        pytest.fail("system tests need root (chroot, mounts, systemd-nspawn)", pytrace=False)
    missing = _missing_tools()
    if missing:
        pytest.fail(
            f"system tests need {', '.join(missing)} (.ci/run installs them)", pytrace=False
        )
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
