"""Boot a Debian root with real systemd in ``systemd-nspawn`` and drive it with ``nsenter``.

The host's systemd is not PID 1, so the container is started with ``--register=no --keep-unit``
(no machined, no scope unit) and handled by PID alone: no ``machinectl``. nspawn runs in its own
process group; the container's PID 1 is nspawn's child whose innermost PID is 1. Shutdown asks
systemd to power off (SIGRTMIN+4), then kills nspawn's group and the container's PID 1 by PID
after a timeout. nspawn mounts a fresh tmpfs on ``/tmp`` inside: put files for the container
under ``/root``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from tests.system.debian_root import run_checked


class ContainerBootFailed(Exception):
    """The container's systemd did not reach running/degraded in time; carries the console log."""


class Container:
    """A booted nspawn container: run commands in it, read unit state, power it off."""

    def __init__(self, root: Path, nspawn: subprocess.Popen[bytes], console: Path) -> None:
        self.root = root
        self.nspawn = nspawn
        self.console = console
        self.pid1 = 0

    def exec_in(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 600,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in all of the container's namespaces (as root, clean environment)."""
        return run_checked(
            ["nsenter", "-t", str(self.pid1), "-a", "--"], argv, "in the container",
            check=check, timeout=timeout, input=input,
        )  # fmt: skip

    def unit_properties(self, unit: str, *names: str) -> dict[str, str]:
        """``systemctl show`` of ``unit`` as a dict (only ``names`` when given)."""
        argv = ["systemctl", "show", unit]
        if names:
            argv.append("--property=" + ",".join(names))
        out = self.exec_in(argv).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for_unit(self, unit: str, timeout: float = 60, **expected: str) -> dict[str, str]:
        """Poll ``systemctl show`` until every ``Property=value`` in ``expected`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            props = self.unit_properties(unit)
            if all(props.get(k) == v for k, v in expected.items()):
                return props
            # Waiting is pointless once the unit restart-loops, or for "active" once it failed.
            looping = props.get("SubState") == "auto-restart"
            failed = props.get("ActiveState") == "failed" != expected.get("ActiveState")
            if time.monotonic() > deadline or looping or failed:
                shown = {k: props.get(k) for k in (*expected, "ActiveState", "SubState", "Result",
                                                     "ExecMainStatus", "NRestarts")}  # fmt: skip
                journal = self.exec_in(
                    ["journalctl", "-u", unit, "--no-pager", "-n", "40"], check=False
                ).stdout
                raise AssertionError(f"{unit} did not reach {expected}: {shown}\n{journal}")
            time.sleep(0.5)

    def _find_pid1(self, deadline: float) -> int:
        """nspawn's child whose PID in its own namespace is 1, once it has exec'd systemd."""
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise ContainerBootFailed(
                    f"systemd-nspawn exited {self.nspawn.returncode}:\n{self.console_tail()}"
                )
            pid = _container_init(self.nspawn.pid)
            if pid and _comm(pid) == "systemd":
                return pid
            time.sleep(0.05)
        raise ContainerBootFailed(f"no container PID 1 appeared:\n{self.console_tail()}")

    def wait_running(self, timeout: float) -> str:
        """Wait for ``systemctl is-system-running`` to say running or degraded; return which."""
        deadline = time.monotonic() + timeout
        self.pid1 = self._find_pid1(deadline)
        state = ""
        while time.monotonic() < deadline:
            # --wait blocks through "starting"; it fails fast while the manager's socket is not
            # up yet, hence the loop.
            try:
                done = self.exec_in(
                    ["systemctl", "is-system-running", "--wait"],
                    check=False,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                break
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise ContainerBootFailed(
            f"system state {state!r} after {timeout}s:\n{self.console_tail()}"
        )

    def failed_units(self) -> list[str]:
        """Names of failed units (why a boot is 'degraded')."""
        out = self.exec_in(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def console_tail(self, chars: int = 4000) -> str:
        """The end of the container's console output."""
        try:
            return self.console.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """Power off: SIGRTMIN+4 to systemd, then SIGKILL nspawn's group and PID 1 by PID."""
        if not self.pid1:
            # The boot failed early: whatever runs as the container's init still has to go.
            self.pid1 = _container_init(self.nspawn.pid)
        if self.nspawn.poll() is None and self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGRTMIN + 4)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nspawn.wait(timeout=timeout)
        if self.nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.nspawn.pid, signal.SIGKILL)
        if self.pid1:
            # PID 1 of a PID namespace set its own session; killing it takes the namespace down.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.nspawn.wait(timeout=10)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _container_init(nspawn_pid: int) -> int:
    """The child of nspawn that is PID 1 in its own PID namespace (0 when there is none yet)."""
    for pid in _children(nspawn_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspid = next((ln.split()[-1] for ln in status.splitlines() if ln.startswith("NSpid:")), "")
        if nspid == "1":
            return pid
    return 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def booted(
    root: Path,
    *,
    network_namespace_path: Path | None = None,
    boot_timeout: float = 120,
    console_log: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Container]:
    """Boot ``root`` with systemd-nspawn and yield it running; always power it off afterwards.

    ``extra_args`` go to systemd-nspawn as they are (e.g. ``--bind-ro=SRC:DST``).
    """
    machine = f"fltest-{uuid.uuid4().hex[:10]}"
    console = console_log or root.parent / f"{machine}.console.log"
    argv = [
        "systemd-nspawn", "--boot", f"--directory={root}", f"--machine={machine}",
        "--register=no", "--keep-unit", "--console=read-only", "--quiet",
    ]  # fmt: skip
    if network_namespace_path is not None:
        argv.append(f"--network-namespace-path={network_namespace_path}")
    argv += extra_args
    out: IO[bytes]
    with open(console, "wb") as out:
        nspawn = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    container = Container(root, nspawn, console)
    try:
        container.wait_running(boot_timeout)
        yield container
    finally:
        container.stop()
