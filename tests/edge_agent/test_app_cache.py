"""Flower's app cache stays bounded on a device that trains for months."""

from __future__ import annotations

import os
from pathlib import Path

from fl_edge_agent.app_cache import prune_app_cache


def test_keeps_the_newest_apps(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    for age in range(8):
        app = apps / f"flfleet.fl-fleet.0.1.0.{age:08x}"
        app.mkdir(parents=True)
        (app / "pyproject.toml").write_text("x")
        os.utime(app, (1_000_000 - age, 1_000_000 - age))  # age 0 is the newest
    removed = prune_app_cache(tmp_path, keep=3)
    assert len(removed) == 5
    assert sorted(p.name[-2:] for p in apps.iterdir()) == ["00", "01", "02"]


def test_missing_cache_is_fine(tmp_path: Path) -> None:
    assert prune_app_cache(tmp_path / "nothing") == []
