"""Heartbeat load readings, with thermal zones from a fixture sysfs tree."""

from __future__ import annotations

from pathlib import Path

from fl_edge_agent.system_load import SystemLoad


def _zone(root: Path, index: int, millideg: str) -> None:
    zone = root / "sys" / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(millideg + "\n")


def test_sample_reads_load_memory_disk_and_hottest_zone(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "41500")
    _zone(tmp_path, 1, "56000")
    _zone(tmp_path, 2, "-256000")  # a disabled sensor's sentinel
    _zone(tmp_path, 3, "garbage")
    sample = SystemLoad(tmp_path, root=tmp_path).sample()
    assert sample.max_temp_c == 56.0
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert sample.memory_percent is not None and 0.0 < sample.memory_percent < 100.0
    assert sample.disk_free_bytes is not None and sample.disk_free_bytes > 0


def test_no_thermal_zones_and_missing_state_dir(tmp_path: Path) -> None:
    sample = SystemLoad(tmp_path / "absent", root=tmp_path).sample()
    assert sample.max_temp_c is None and sample.disk_free_bytes is None
