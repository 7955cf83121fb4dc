"""Heartbeat load readings, from fixture procfs and sysfs trees (and once from this machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_edge_agent.system_load import LoadSample, SystemLoad

# user nice system idle iowait irq softirq steal guest guest_nice
STAT_BEFORE = "cpu  1000 0 500 8000 500 0 0 0 300 0\ncpu0 1000 0 500 8000 500 0 0 0 300 0\n"
# +300 user, +100 system, +500 idle, +100 iowait (+200 guest, already inside user)
STAT_AFTER = "cpu  1300 0 600 8500 600 0 0 0 500 0\ncpu0 1300 0 600 8500 600 0 0 0 500 0\n"
MEMINFO = "MemTotal:        8000000 kB\nMemFree:          500000 kB\nMemAvailable:    6000000 kB\n"


def _zone(root: Path, index: int, millideg: str) -> None:
    zone = root / "sys" / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(millideg + "\n")


def _proc(root: Path, stat: str = STAT_BEFORE, meminfo: str = MEMINFO) -> None:
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(stat)
    (proc / "meminfo").write_text(meminfo)


def test_sample_reads_load_memory_disk_and_hottest_zone(tmp_path: Path) -> None:
    _proc(tmp_path)
    _zone(tmp_path, 0, "41500")
    _zone(tmp_path, 1, "56000")
    _zone(tmp_path, 2, "-256000")  # a disabled sensor's sentinel
    _zone(tmp_path, 3, "garbage")
    load = SystemLoad(tmp_path, root=tmp_path)
    _proc(tmp_path, stat=STAT_AFTER)

    sample = load.sample()

    # busy = (300 + 100) of total (300 + 100 + 500 + 100): guest time is not counted twice
    assert sample.cpu_percent == 40.0
    assert sample.memory_percent == 25.0  # (MemTotal - MemAvailable) / MemTotal
    assert sample.max_temp_c == 56.0
    assert sample.disk_free_bytes is not None and sample.disk_free_bytes > 0


def test_cpu_percent_measures_since_the_previous_reading(tmp_path: Path) -> None:
    _proc(tmp_path)
    load = SystemLoad(tmp_path, root=tmp_path)
    _proc(tmp_path, stat=STAT_AFTER)
    assert load.cpu_percent() == 40.0
    assert load.cpu_percent() == 0.0  # nothing elapsed since


def test_memory_falls_back_to_memfree_on_old_kernels(tmp_path: Path) -> None:
    _proc(tmp_path, meminfo="MemTotal:        8000000 kB\nMemFree:         2000000 kB\n")
    assert SystemLoad(tmp_path, root=tmp_path).memory_percent() == 75.0


@pytest.mark.parametrize(
    ("stat", "meminfo"),
    [("", ""), ("intr 1 2 3\n", "MemTotal: lots\n"), ("cpu  1 2 x 4 5\n", "MemFree: 1 kB\n")],
)
def test_unreadable_proc_gives_none(tmp_path: Path, stat: str, meminfo: str) -> None:
    _proc(tmp_path, stat=stat, meminfo=meminfo)
    load = SystemLoad(tmp_path, root=tmp_path)
    assert load.cpu_percent() is None
    assert load.memory_percent() is None


def test_no_proc_no_thermal_zones_and_missing_state_dir(tmp_path: Path) -> None:
    sample = SystemLoad(tmp_path / "absent", root=tmp_path).sample()
    assert sample == LoadSample(None, None, None, None)


def test_this_machine(tmp_path: Path) -> None:
    sample = SystemLoad(tmp_path).sample()
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert sample.memory_percent is not None and 0.0 < sample.memory_percent < 100.0
