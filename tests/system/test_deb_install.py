"""The built .debs on a real Debian bookworm: install, run under systemd, upgrade, remove, purge.

Each test gets a fresh copy of a cached ``debootstrap --variant=minbase`` root; apt pulls the
packages' dependencies (Python included) from the host's Debian mirror. The chroot test checks
what a package puts on disk without an init system; the nspawn test boots real systemd and walks
the service through its whole life.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.system import debian_root
from tests.system.deb_repack import repack
from tests.system.deb_under_test import PACKAGES, DebUnderTest
from tests.system.debian_root import chroot_root, run_in
from tests.system.nspawn import Container, booted

pytestmark = pytest.mark.system

packages = pytest.mark.parametrize("deb", sorted(PACKAGES), indirect=True)
# The agent's postinst starts a Type=notify service: a start that never finishes hangs apt.
INSTALL_TIMEOUT_S = 300
LOCAL_EDIT = "\n# local edit kept across upgrades (system test)\n"


def _elapsed(label: str, started: float) -> None:
    print(f"{label}: {time.monotonic() - started:.1f} s")


def _assert_purged(root: Path, deb: DebUnderTest) -> None:
    """Nothing of the package's own trees is left; names a few leftovers when there are."""
    for gone in (f"/opt/{deb.name}", f"/etc/{deb.name}", f"/var/lib/{deb.name}"):
        tree = root / gone.lstrip("/")
        if tree.exists():
            left = [str(p.relative_to(root)) for p in sorted(tree.rglob("*"))[:8]]
            raise AssertionError(f"{gone} survived the purge, e.g. {left}")


def _stage(root: Path, deb: Path) -> str:
    """Put ``deb`` into the root's /root (nspawn hides /tmp); return its path in there."""
    target = root / "root" / deb.name
    try:
        os.link(deb, target)
    except OSError:  # another file system
        shutil.copy(deb, target)
    return f"/root/{deb.name}"


@packages
def test_install_in_a_chroot_then_purge(deb: DebUnderTest, fresh_root: Path) -> None:
    root = fresh_root
    with chroot_root(root):
        started = time.monotonic()
        run_in(
            root, ["apt-get", "install", "-y", _stage(root, deb.path)], timeout=INSTALL_TIMEOUT_S
        )
        _elapsed(f"apt-get install {deb.path.name} (chroot)", started)

        for command in deb.commands:
            assert (root / "opt" / deb.name / "bin" / command).is_file(), command
            run_in(root, ["test", "-x", f"/usr/bin/{command}"])
        assert (root / "lib/systemd/system" / deb.unit).is_file()
        assert (root / deb.conffile.lstrip("/")).is_file()
        conffiles = run_in(root, ["dpkg-query", "-W", "-f=${Conffiles}", deb.name]).stdout
        assert deb.conffile in conffiles, f"{deb.conffile} is not a conffile: {conffiles!r}"

        version = run_in(root, [f"/usr/bin/{deb.name}", "--version"]).stdout.strip()
        assert version == deb.version

        run_in(root, ["getent", "passwd", deb.user])
        # No init system in a chroot: the maintainer scripts must not have started anything.
        assert debian_root._processes_rooted_in(root) == []

        started = time.monotonic()
        run_in(root, ["apt-get", "purge", "-y", deb.name])
        _elapsed("apt-get purge (chroot)", started)
        _assert_purged(root, deb)
        assert run_in(root, ["dpkg-query", "-W", deb.name], check=False).returncode != 0
        # Debian policy: the system user stays (its id may still own files elsewhere).
        run_in(root, ["getent", "passwd", deb.user])


def _running(container: Container, unit: str) -> dict[str, str]:
    return container.wait_for_unit(unit, timeout=90, ActiveState="active", SubState="running")


def _started(container: Container, deb: DebUnderTest) -> dict[str, str]:
    """A fresh start reaches running with READY=1: the unit's status is the one READY sent."""
    props = _running(container, deb.unit)
    status = container.unit_properties(deb.unit, "StatusText")["StatusText"]
    assert status.startswith(deb.status_after_install), (status, props)
    return props


def _start_count(props: dict[str, str]) -> int:
    return int(props["ExecMainStartTimestampMonotonic"])


def _install(container: Container, path: str, *options: str) -> None:
    started = time.monotonic()
    container.exec_in(["apt-get", "install", "-y", *options, path], timeout=INSTALL_TIMEOUT_S)
    _elapsed(f"apt-get install {Path(path).name} (booted)", started)


@pytest.fixture
def newer_builds(deb: DebUnderTest, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two newer builds of ``deb``: same conffile (+test1), changed packaged conffile (+test2)."""
    directory = tmp_path / "newer"
    directory.mkdir()
    started = time.monotonic()
    try:
        builds = (
            repack(deb.path, directory, "+test1"),
            repack(deb.path, directory, "+test2", conffile=deb.conffile),
        )
        _elapsed("repack two newer builds", started)
        yield builds
    finally:
        # Each can be as big as the venv; pytest would keep them for three runs.
        shutil.rmtree(directory)


@packages
@pytest.mark.timeout(1200)  # three installs of a venv of several hundred MB
def test_service_lifecycle_under_systemd(
    deb: DebUnderTest, fresh_root: Path, newer_builds: tuple[Path, Path]
) -> None:
    root = fresh_root
    newer, newer_conffile = newer_builds
    conffile = root / deb.conffile.lstrip("/")

    started = time.monotonic()
    with booted(root) as container:
        _elapsed("nspawn boot to running", started)
        print("failed units at boot:", container.failed_units())

        # Install: enabled and started.
        _install(container, _stage(root, deb.path))
        first = _started(container, deb)
        assert container.unit_properties(deb.unit, "UnitFileState")["UnitFileState"] == "enabled"

        # Restart: a new main process.
        started = time.monotonic()
        done = container.exec_in(["systemctl", "restart", deb.unit], timeout=120, check=False)
        assert done.returncode == 0, done
        restarted = _started(container, deb)
        _elapsed("systemctl restart", started)
        assert _start_count(restarted) > _start_count(first)

        # Upgrade with a locally edited conffile whose packaged default did not change: the
        # edit is kept, no .dpkg-dist, and the upgrade restarted the service.
        conffile.write_text(conffile.read_text() + LOCAL_EDIT)
        _install(container, _stage(root, newer), "-o", "Dpkg::Options::=--force-confold")
        assert conffile.read_text().endswith(LOCAL_EDIT)
        assert not conffile.with_name(conffile.name + ".dpkg-dist").exists()
        upgraded = _started(container, deb)
        assert _start_count(upgraded) > _start_count(restarted), "the upgrade did not restart it"

        # Upgrade whose packaged default changed: the edit is still kept, the new default is
        # left next to it as .dpkg-dist.
        _install(container, _stage(root, newer_conffile), "-o", "Dpkg::Options::=--force-confold")
        assert conffile.read_text().endswith(LOCAL_EDIT)
        dist = conffile.with_name(conffile.name + ".dpkg-dist")
        assert dist.exists() and "packaged default changed" in dist.read_text()
        _started(container, deb)

        # Stop: a clean exit, not a kill.
        started = time.monotonic()
        container.exec_in(["systemctl", "stop", deb.unit], timeout=120)
        stopped = container.wait_for_unit(deb.unit, timeout=30, ActiveState="inactive")
        _elapsed("systemctl stop", started)
        assert stopped["Result"] == "success", stopped
        assert (stopped["ExecMainCode"], stopped["ExecMainStatus"]) == ("1", "0"), stopped
        container.exec_in(["systemctl", "start", deb.unit], timeout=120)
        _started(container, deb)

        # Remove stops the service and keeps configuration and state; purge drops them.
        container.exec_in(["apt-get", "remove", "-y", deb.name], timeout=INSTALL_TIMEOUT_S)
        removed = container.unit_properties(deb.unit, "ActiveState", "MainPID")
        assert removed["ActiveState"] in ("inactive", "failed"), removed
        assert removed["MainPID"] == "0", removed
        assert not (root / "opt" / deb.name).exists()
        assert conffile.exists()
        container.exec_in(["apt-get", "purge", "-y", deb.name], timeout=INSTALL_TIMEOUT_S)
        _assert_purged(root, deb)
        container.exec_in(["getent", "passwd", deb.user])
