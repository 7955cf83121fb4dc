"""Tests for fl_edge_agent.supernode_process: command line, node config, restart logic.

Flower is never started: the tests replace ``argv()`` with small Python children.
"""

from __future__ import annotations

import os
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.edge_agent.child_helpers import FakeClock, MaxRandom, python_child, wait_until

from fl_edge_agent.supernode_process import SuperNodeProcess
from fl_shared.backoff import Backoff

NODE_CONFIG: dict[str, Any] = {
    "device-id": "dev-0001",
    "data-dir": "/srv/data with spaces",
    "partition-id": 1,
    "num-partitions": 4,
    "torch-threads": 0,
}


def _process(
    tmp_path: Path,
    *,
    insecure: bool = True,
    clock: Callable[[], float] = time.monotonic,
    backoff: Backoff | None = None,
    node_config: dict[str, Any] | None = None,
) -> SuperNodeProcess:
    return SuperNodeProcess(
        superlink="10.1.2.3:9092",
        port=9199,
        state_dir=tmp_path,
        node_config=NODE_CONFIG if node_config is None else node_config,
        insecure=insecure,
        clock=clock,
        backoff=backoff,
    )


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (missing, or a zombie nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    state = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("State:")), "")
    return state == "Z"


def _wait_for_exit(process: SuperNodeProcess, clock: FakeClock) -> None:
    """Call check() (clock frozen) until the child's exit has been noticed."""

    def noticed() -> bool:
        process.check()
        return process.state in ("restarting", "crashed")

    assert wait_until(noticed), "the child never exited"


def test_argv_secure(tmp_path: Path) -> None:
    process = _process(tmp_path, insecure=False)
    argv = process.argv()
    assert argv[0] == "flower-supernode"
    assert argv[argv.index("--superlink") + 1] == "10.1.2.3:9092"
    assert argv[argv.index("--port") + 1] == "9199"
    assert argv[argv.index("--node-config") + 1] == str(tmp_path / "supernode" / "node-config.toml")
    assert "--insecure" not in argv


def test_argv_insecure(tmp_path: Path) -> None:
    argv = _process(tmp_path, insecure=True).argv()
    assert argv.count("--insecure") == 1
    assert "--superlink" in argv
    assert "--port" in argv
    assert "--node-config" in argv


def test_argv_of_an_enrolled_device_has_tls_and_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    process = SuperNodeProcess(
        superlink="fleet.example:9092",
        port=9199,
        state_dir=tmp_path,
        node_config=NODE_CONFIG,
        insecure=False,
        # Relative, as a relative --state-dir gives them: the SuperNode runs elsewhere.
        root_certificates=Path("identity/ca.crt"),
        auth_private_key=Path("identity/supernode.key"),
    )
    argv = process.argv()
    assert argv[argv.index("--superlink") + 1] == "fleet.example:9092"
    assert argv[argv.index("--root-certificates") + 1] == str(tmp_path / "identity" / "ca.crt")
    key = argv[argv.index("--auth-supernode-private-key") + 1]
    assert key == str(tmp_path / "identity" / "supernode.key")
    assert "--insecure" not in argv


def test_auth_key_without_tls_is_refused(tmp_path: Path) -> None:
    # Flower exits at start for this combination; refuse it before a restart loop does.
    with pytest.raises(ValueError, match="needs TLS"):
        SuperNodeProcess(
            superlink="fleet.example:9092",
            port=9199,
            state_dir=tmp_path,
            node_config=NODE_CONFIG,
            insecure=True,
            auth_private_key=tmp_path / "supernode.key",
        )


def test_initial_state(tmp_path: Path) -> None:
    process = _process(tmp_path)
    assert process.state == "stopped"
    assert process.restarts == 0
    assert process.pid is None
    process.check()  # nothing started: nothing to do
    assert process.state == "stopped"
    process.stop()
    assert process.state == "stopped"


def test_start_writes_node_config_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    process = _process(tmp_path)
    monkeypatch.setattr(process, "argv", lambda: python_child("import sys; sys.exit(0)"))
    try:
        process.start()
        assert process.state == "running"
        assert process.pid is not None
        with process.node_config_file.open("rb") as fh:
            assert tomllib.load(fh) == NODE_CONFIG
        assert process.node_config_file.parent == tmp_path / "supernode"
    finally:
        process.stop(grace_s=1.0)
    assert process.state == "stopped"


def test_child_runs_in_supernode_home_with_flower_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.txt"
    code = (
        "import os, sys; "
        f"open({str(out)!r}, 'w').write(os.getcwd() + '\\n' + os.environ['FLWR_HOME'])"
    )
    process = _process(tmp_path)
    monkeypatch.setattr(process, "argv", lambda: python_child(code))
    try:
        process.start()
        assert wait_until(lambda: out.exists() and "\n" in out.read_text())
    finally:
        process.stop(grace_s=1.0)
    cwd, home = out.read_text().split("\n")
    assert Path(cwd).resolve() == (tmp_path / "supernode").resolve()
    assert home == str(tmp_path / "supernode")


def test_exit_then_restart_after_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    process = _process(tmp_path, clock=clock, backoff=Backoff(base_s=0.0, cap_s=0.0))
    monkeypatch.setattr(process, "argv", lambda: python_child("import sys; sys.exit(3)"))
    try:
        process.start()
        first_pid = process.pid
        _wait_for_exit(process, clock)
        assert process.state == "crashed"  # exit status 3: a crash, not a clean stop
        assert process.restarts == 0

        clock.now += 0.001
        process.check()
        assert process.restarts == 1
        assert process.state == "running"
        assert process.pid is not None
        assert process.pid != first_pid
    finally:
        process.stop(grace_s=1.0)
    assert process.state == "stopped"


def test_restart_waits_for_the_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=2.0, cap_s=60.0, rng=MaxRandom())
    process = _process(tmp_path, clock=clock, backoff=backoff)
    monkeypatch.setattr(process, "argv", lambda: python_child("import sys; sys.exit(3)"))
    try:
        process.start()
        _wait_for_exit(process, clock)  # first wait: 2 s

        clock.now += 1.9
        process.check()
        assert process.state == "crashed"
        assert process.restarts == 0

        clock.now += 0.2
        process.check()
        assert process.restarts == 1
        assert process.state == "running"

        _wait_for_exit(process, clock)  # second wait doubles: 4 s
        clock.now += 3.9
        process.check()
        assert process.restarts == 1
        clock.now += 0.2
        process.check()
        assert process.restarts == 2
    finally:
        process.stop(grace_s=1.0)


def test_stop_cancels_a_pending_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: SuperNodeProcess.stop() used to clear _restart_at but keep
    # the exited self._proc, so a later check() sees "child exited", schedules a new restart
    # (state back to "restarting") and the next check() starts a fresh SuperNode although the
    # owner stopped it. Latent today (Agent.run stops calling check() before stop()), but any
    # supervisor loop racing stop() resurrects the child. Fix: set self._proc = None (or a
    # _stopped flag that check() honours) in stop().
    clock = FakeClock()
    process = _process(tmp_path, clock=clock, backoff=Backoff(base_s=0.0, cap_s=0.0))
    monkeypatch.setattr(process, "argv", lambda: python_child("import sys; sys.exit(3)"))
    try:
        process.start()
        _wait_for_exit(process, clock)
        process.stop(grace_s=1.0)
        assert process.state == "stopped"
        clock.now += 100
        process.check()
        process.check()
        assert process.state == "stopped"
        assert process.restarts == 0
    finally:
        process.stop(grace_s=1.0)


def test_long_healthy_run_resets_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    backoff = Backoff(base_s=0.0, cap_s=0.0)
    process = _process(tmp_path, clock=clock, backoff=backoff)
    generation = iter(range(100))

    def argv() -> list[str]:
        if next(generation) == 0:
            return python_child("import sys; sys.exit(3)")
        return python_child("import time; time.sleep(30)")

    monkeypatch.setattr(process, "argv", argv)
    try:
        process.start()
        _wait_for_exit(process, clock)
        assert backoff.attempt == 1
        clock.now += 0.001
        process.check()  # restarts a child that keeps running
        assert process.restarts == 1

        clock.now += 30
        process.check()
        assert backoff.attempt == 1, "30 s is not yet healthy"
        clock.now += 31
        process.check()
        assert backoff.attempt == 0
        assert process.state == "running"
    finally:
        process.stop(grace_s=1.0)


def test_stop_terminates_a_running_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    process = _process(tmp_path)
    monkeypatch.setattr(process, "argv", lambda: python_child("import time; time.sleep(30)"))
    try:
        process.start()
        pid = process.pid
        assert pid is not None
    finally:
        started = time.monotonic()
        process.stop(grace_s=2.0)
    assert time.monotonic() - started < 2.0
    assert wait_until(lambda: _gone(pid), timeout=2)
    assert process.state == "stopped"


def test_restart_cleans_up_the_exited_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: SuperNodeProcess.check() (supernode_process.py:85-104) restarts an exited
    # SuperNode by calling start(), which replaces self._proc without ever calling
    # ManagedProcess.stop() on the old one. Grandchildren left in the old process group
    # (superexec / clientapp of the crashed SuperNode) are never killed, and keep their
    # ports and memory while a new SuperNode starts beside them. Fix: in check(), when the
    # child has exited, call self._proc.stop(0) (SIGKILLs the group) before scheduling the
    # restart (or at the latest in start() before replacing self._proc).
    clock = FakeClock()
    pid_file = tmp_path / "grandchild.pid"
    process = _process(tmp_path, clock=clock, backoff=Backoff(base_s=0.0, cap_s=0.0))
    generation = iter(range(100))
    first_code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); "
        "sys.exit(3)"
    )

    def argv() -> list[str]:
        if next(generation) == 0:
            return python_child(first_code)
        return python_child("import time; time.sleep(30)")

    monkeypatch.setattr(process, "argv", argv)
    grandchild: int | None = None
    try:
        process.start()
        _wait_for_exit(process, clock)
        grandchild = int(pid_file.read_text())
        clock.now += 0.001
        process.check()
        assert process.restarts == 1
        assert wait_until(lambda: _gone(grandchild), timeout=1.0), (
            f"grandchild {grandchild} of the crashed SuperNode survived the restart"
        )
    finally:
        process.stop(grace_s=1.0)
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)
