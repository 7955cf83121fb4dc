"""The ClientApp → agent activity hand-over."""

from __future__ import annotations

import time
from pathlib import Path

from fl_shared.activity_file import STALE_AFTER_S, ActivityFile


def test_set_and_read(tmp_path: Path) -> None:
    activity = ActivityFile(tmp_path / "activity.json")
    assert activity.read() == "idle"  # nothing recorded yet
    activity.set("training run 3 round 2")
    assert activity.read() == "training run 3 round 2"
    activity.set("idle")
    assert activity.read() == "idle"


def test_stale_or_damaged_file_reads_idle(tmp_path: Path) -> None:
    activity = ActivityFile(tmp_path / "activity.json")
    activity.set("training run 1 round 1")
    assert activity.read(now=time.time() + STALE_AFTER_S + 1) == "idle"  # a killed ClientApp
    activity.path.write_text("{not json")
    assert activity.read() == "idle"
