"""Tests for fl_shared.managed_process: output tail, SIGTERM then SIGKILL, process groups."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fl_shared.managed_process import ManagedProcess


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


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


PRINT_LINES = (
    "import sys\nfor i in range(5):\n    print(f'line {i}')\nprint('\\x1b[31mred\\x1b[0m')\n"
)


def test_before_start() -> None:
    process = ManagedProcess("idle", _python("pass"))
    assert process.pid is None
    assert process.poll() is None
    assert not process.is_running()
    assert process.tail() == []
    assert process.stop() is None


def test_tail_in_pipe_mode(tmp_path: Path) -> None:
    process = ManagedProcess("printer", _python(PRINT_LINES))
    try:
        process.start()
        assert process.pid is not None
        assert process.wait(5) == 0
        expected = [f"line {i}" for i in range(5)] + ["red"]
        assert _wait_until(lambda: process.tail() == expected, timeout=2), process.tail()
        assert process.poll() == 0
        assert not process.is_running()
    finally:
        process.stop(grace_s=0.5)


def test_tail_keeps_only_the_last_lines() -> None:
    code = "for i in range(50):\n    print(i)\n"
    process = ManagedProcess("printer", _python(code), tail_lines=10)
    try:
        process.start()
        process.wait(5)
        expected = [str(i) for i in range(40, 50)]
        assert _wait_until(lambda: process.tail() == expected, timeout=2), process.tail()
    finally:
        process.stop(grace_s=0.5)


def test_stderr_is_captured_too() -> None:
    code = "import sys; sys.stderr.write('oops on stderr\\n'); sys.exit(4)"
    process = ManagedProcess("err", _python(code))
    try:
        process.start()
        assert process.wait(5) == 4
        assert _wait_until(lambda: process.tail() == ["oops on stderr"], timeout=2)
    finally:
        assert process.stop(grace_s=0.5) == 4


def test_tail_in_log_file_mode(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "child.log"
    process = ManagedProcess("printer", _python(PRINT_LINES), log_file=log_file)
    try:
        process.start()
        assert process.wait(5) == 0
    finally:
        process.stop(grace_s=0.5)
    assert log_file.exists()
    tail = process.tail()
    assert tail[:5] == [f"line {i}" for i in range(5)]
    assert len(tail) == 6
    assert "line 4" in log_file.read_text()


def test_log_file_mode_appends(tmp_path: Path) -> None:
    log_file = tmp_path / "child.log"
    log_file.write_text("earlier run\n")
    process = ManagedProcess("printer", _python("print('later run')"), log_file=log_file)
    try:
        process.start()
        process.wait(5)
    finally:
        process.stop(grace_s=0.5)
    assert process.tail() == ["earlier run", "later run"]


def test_env_and_cwd_are_passed(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['MP_TEST_VALUE'])"
    env = {**os.environ, "MP_TEST_VALUE": "forty-two"}
    process = ManagedProcess("env", _python(code), env=env, cwd=tmp_path)
    try:
        process.start()
        process.wait(5)
        assert _wait_until(lambda: len(process.tail()) == 2, timeout=2)
    finally:
        process.stop(grace_s=0.5)
    cwd, value = process.tail()
    assert Path(cwd).resolve() == tmp_path.resolve()
    assert value == "forty-two"


def test_stop_terminates_a_cooperative_child() -> None:
    code = "import time; print('ready', flush=True); time.sleep(30)"
    process = ManagedProcess("sleeper", _python(code))
    try:
        process.start()
        assert _wait_until(lambda: process.tail() == ["ready"])
        started = time.monotonic()
        code = process.stop(grace_s=5)
        elapsed = time.monotonic() - started
    finally:
        process.stop(grace_s=0.5)
    assert code == -signal.SIGTERM
    assert elapsed < 2.0
    assert not process.is_running()


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    process = ManagedProcess("stubborn", _python(code))
    try:
        process.start()
        assert _wait_until(lambda: process.tail() == ["ready"]), process.tail()
        started = time.monotonic()
        returncode = process.stop(grace_s=0.5)
        elapsed = time.monotonic() - started
    finally:
        process.stop(grace_s=0.5)
    assert returncode is not None
    assert returncode < 0
    assert returncode == -signal.SIGKILL
    assert 0.4 <= elapsed < 3.0
    assert not process.is_running()


def test_stop_kills_grandchildren_in_the_group() -> None:
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    process = ManagedProcess("parent", _python(code))
    grandchild: int | None = None
    try:
        process.start()
        assert _wait_until(lambda: len(process.tail()) == 1), process.tail()
        grandchild = int(process.tail()[0])
        assert not _gone(grandchild)
        process.stop(grace_s=0.5)
        assert _wait_until(lambda: _gone(grandchild), timeout=2), f"{grandchild} survived"
    finally:
        process.stop(grace_s=0.5)
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_stop_after_exit_kills_leftover_grandchildren() -> None:
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(p.pid, flush=True)\n"
    )
    process = ManagedProcess("parent", _python(code))
    grandchild: int | None = None
    try:
        process.start()
        assert process.wait(5) == 0
        assert _wait_until(lambda: len(process.tail()) == 1), process.tail()
        grandchild = int(process.tail()[0])
        assert not _gone(grandchild)
        assert process.stop(grace_s=0.5) == 0
        assert _wait_until(lambda: _gone(grandchild), timeout=2), f"{grandchild} survived"
    finally:
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_child_runs_in_its_own_session() -> None:
    process = ManagedProcess("sid", _python("import os; print(os.getsid(0))"))
    try:
        process.start()
        process.wait(5)
        assert _wait_until(lambda: len(process.tail()) == 1)
    finally:
        process.stop(grace_s=0.5)
    assert int(process.tail()[0]) == process.pid
    assert int(process.tail()[0]) != os.getsid(0)


def test_wait_before_start_is_an_error() -> None:
    with pytest.raises(AssertionError):
        ManagedProcess("x", _python("pass")).wait(0.1)
