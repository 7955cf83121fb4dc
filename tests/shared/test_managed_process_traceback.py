"""A child's Python traceback reaches the log as one event, with the lines around it intact."""

from __future__ import annotations

import sys

from structlog.testing import capture_logs

from fl_shared.managed_process import ManagedProcess

CHILD = """
print("before", flush=True)
def train():
    raise ValueError("bad batch size")
try:
    train()
except ValueError:
    import traceback
    traceback.print_exc()
print("after", flush=True)
"""


def test_traceback_is_one_event() -> None:
    proc = ManagedProcess("clientapp", [sys.executable, "-c", CHILD])
    with capture_logs() as logs:
        proc.start()
        proc.wait(timeout=30)
        proc.stop(grace_s=1)  # joins the output reader
    events = [(e["event"], e.get("line") or e.get("error")) for e in logs if "pid" in e]
    kinds = [kind for kind, _ in events if kind != "process_started" and kind != "process_stopped"]
    assert kinds == ["process_output", "process_traceback", "process_output"]
    traceback = next(e for e in logs if e["event"] == "process_traceback")
    assert traceback["error"] == "ValueError: bad batch size"
    assert traceback["log_level"] == "error"
    assert "in train" in traceback["traceback"] and traceback["traceback"].count("\n") == 3
    assert [line for kind, line in events if kind == "process_output"] == ["before", "after"]
