"""The coordinator's SuperLink supervisor against a real flower-superlink."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fl_coordinator.errors import SuperLinkError
from fl_coordinator.local_fleet import free_port
from fl_coordinator.superlink_process import SuperLinkProcess


def test_superlink_is_restarted_after_a_crash(tmp_path: Path) -> None:
    superlink = SuperLinkProcess(host="127.0.0.1", port=free_port(), state_dir=tmp_path, tls=None)
    try:
        superlink.start(timeout_s=60)
        assert superlink.is_healthy()
        assert (tmp_path / "superlink" / "superlink.db").exists()  # state survives restarts
        first = superlink.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if superlink.restarts == 1 and superlink.pid != first and superlink.is_healthy():
                break
            time.sleep(0.3)
        assert superlink.restarts == 1 and superlink.is_healthy()
    finally:
        superlink.stop()
    assert not superlink.is_healthy()


def test_superlink_that_cannot_start_reports_its_output(tmp_path: Path) -> None:
    # A directory where the SuperLink's database file must be: flower-superlink exits.
    (tmp_path / "superlink" / "superlink.db").mkdir(parents=True)
    superlink = SuperLinkProcess(host="127.0.0.1", port=free_port(), state_dir=tmp_path, tls=None)
    try:
        with pytest.raises(SuperLinkError, match="flower-superlink exited with"):
            superlink.start(timeout_s=60)
    finally:
        superlink.stop()
