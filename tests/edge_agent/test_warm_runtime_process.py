"""Tests for the warm ClientApp runtime's supervision (WarmRuntimeProcess, SuperNodeProcess).

Flower is never started: the tests replace ``argv()`` with small Python children.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from tests.edge_agent.child_helpers import FakeClock, MaxRandom, python_child, wait_until

from fl_edge_agent.supernode_process import SuperNodeProcess
from fl_edge_agent.warm_runtime import WarmRuntime
from fl_edge_agent.warm_runtime_process import WarmRuntimeProcess
from fl_shared.backoff import Backoff


def _supernode(tmp_path: Path, runtime: str) -> SuperNodeProcess:
    return SuperNodeProcess(
        superlink="10.1.2.3:9092",
        port=9199,
        state_dir=tmp_path,
        node_config={"device-id": "dev-1"},
        insecure=True,
        runtime=runtime,  # type: ignore[arg-type]
    )


def test_warm_supernode_uses_process_isolation_and_adaptive_polls(tmp_path: Path) -> None:
    process = _supernode(tmp_path, "warm")
    argv = process.argv()
    assert argv[:3] == [sys.executable, "-m", "fl_edge_agent.fast_supernode"]
    assert argv[argv.index("--isolation") + 1] == "process"
    assert process.warm_runtime is not None
    runtime_argv = process.warm_runtime.argv()
    assert runtime_argv[:3] == [sys.executable, "-m", "fl_edge_agent.warm_runtime"]
    assert runtime_argv[runtime_argv.index("--runtime-api-address") + 1] == "127.0.0.1:9199"


def test_isolated_supernode_is_plain_flower(tmp_path: Path) -> None:
    process = _supernode(tmp_path, "isolated")
    argv = process.argv()
    assert argv[0] == "flower-supernode"
    assert "--isolation" not in argv
    assert process.warm_runtime is None


def test_supernode_starts_and_stops_its_warm_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = _supernode(tmp_path, "warm")
    warm = process.warm_runtime
    assert warm is not None
    home = tmp_path / "home.txt"
    monkeypatch.setattr(process, "argv", lambda: python_child("import time; time.sleep(30)"))
    monkeypatch.setattr(
        warm,
        "argv",
        lambda: python_child(
            "import os, time; "
            f"open({str(home)!r}, 'w').write(os.environ['FLWR_HOME']); "
            "time.sleep(30)"
        ),
    )
    try:
        process.start()
        assert warm.state == "starting" and warm.pid is not None
        assert wait_until(lambda: home.exists() and home.read_text() != "")
        assert home.read_text() == str(tmp_path / "supernode")  # the SuperNode's FLWR_HOME
        runtime_pid = warm.pid
    finally:
        process.stop(grace_s=2.0)
    assert warm.state == "stopped" and warm.pid is None
    assert wait_until(
        lambda: (
            not Path(f"/proc/{runtime_pid}").exists()
            or "Z" in Path(f"/proc/{runtime_pid}/stat").read_text().split()[2]
        )
    )


def test_crashed_runtime_is_restarted_after_its_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    warm = WarmRuntimeProcess(
        runtime_api_port=9199,
        home=tmp_path,
        clock=clock,
        backoff=Backoff(base_s=2.0, cap_s=2.0, rng=MaxRandom()),
    )
    generation = iter(range(100))
    monkeypatch.setattr(
        warm,
        "argv",
        lambda: python_child(
            "import sys; sys.exit(3)" if next(generation) == 0 else "import time; time.sleep(30)"
        ),
    )
    try:
        warm.start()
        first = warm.pid

        def noticed() -> bool:
            warm.check()
            return warm.state == "crashed"

        assert wait_until(noticed)
        clock.now += 1.9
        warm.check()
        assert warm.restarts == 0 and warm.state == "crashed"
        clock.now += 0.2
        warm.check()
        assert warm.restarts == 1 and warm.state == "starting"
        assert warm.pid not in (None, first)
        warm.stop(grace_s=1.0)
        clock.now += 100
        warm.check()  # a stopped runtime stays stopped
        assert warm.state == "stopped" and warm.restarts == 1
    finally:
        warm.stop(grace_s=1.0)


def test_runtime_polls_fast_only_while_a_run_is_going_on(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    runtime = WarmRuntime("127.0.0.1:9")
    assert runtime.poll_interval() == 1.0  # idle: one local request a second
    runtime.last_task_at = now[0]
    now[0] += 30
    assert runtime.poll_interval() == 0.05
    now[0] += 31
    assert runtime.poll_interval() == 1.0


def test_runtime_forgets_modules_of_an_older_app(tmp_path: Path) -> None:
    app_dir = tmp_path / "apps" / "old"
    (app_dir / "oldpkg").mkdir(parents=True)
    (app_dir / "oldpkg" / "__init__.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(app_dir))
    try:
        import oldpkg  # type: ignore[import-not-found]

        assert oldpkg.VALUE == 1
        WarmRuntime._forget_app_modules(app_dir)
        assert "oldpkg" not in sys.modules
        assert str(app_dir) not in sys.path
    finally:
        sys.modules.pop("oldpkg", None)
        if str(app_dir) in sys.path:
            sys.path.remove(str(app_dir))


def test_runtime_is_running_once_it_wrote_its_ready_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm = WarmRuntimeProcess(runtime_api_port=9199, home=tmp_path)
    warm.ready_file.write_text("1")  # left over by an earlier runtime: removed at start
    monkeypatch.setattr(warm, "argv", lambda: python_child("import time; time.sleep(30)"))
    try:
        warm.start()
        assert not warm.ready_file.exists()
        warm.ready_file.write_text("1")  # someone else's PID: not this runtime's word
        warm.check()
        assert warm.state == "starting"
        warm.ready_file.write_text(str(warm.pid))
        warm.check()
        assert warm.state == "running"
    finally:
        warm.stop(grace_s=1.0)


def test_a_task_that_crashes_frees_its_worker_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = WarmRuntime("127.0.0.1:9")

    def boom(token: str) -> None:
        raise RuntimeError(f"cannot reach the SuperNode for {token}")

    monkeypatch.setattr(runtime, "_run_task", boom)
    runtime._running = 1  # what serve() counts before it hands the task to a worker
    runtime.run_task("t-1")
    assert runtime.running == 0 and runtime.tasks_run == 1
    assert runtime.wait_for_tasks(grace_s=0.1) == 0
