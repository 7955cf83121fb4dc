"""JetsonProbe (and the host/CUDA readers) on fixture trees copied from real Jetson boards."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_edge_agent.capability_probe import CapabilityProbe
from fl_edge_agent.cuda_stack_probe import CudaStackProbe
from fl_edge_agent.host_probe import HostProbe
from fl_edge_agent.jetson_probe import (
    JETPACK_BY_L4T,
    JetsonProbe,
    jetpack_for_l4t,
    module_part_number,
    parse_nv_tegra_release,
)
from fl_edge_agent.probe_error_log import ProbeErrorLog
from fl_edge_agent.system_root import SystemRoot
from fl_shared.capabilities import Capabilities, FrequencyRange

FIXTURES = Path(__file__).parent / "fixtures"

BOARDS = {
    "jetson-nano": {
        "model": "NVIDIA Jetson Nano Developer Kit",
        "soc": "tegra210",
        "part": "p3448-0002",
        "l4t": "32.7.1",
        "jetpack": "4.6.1",
        "mode": (0, "MAXN"),
        "gpu_freq": FrequencyRange(min=76_800_000, max=921_600_000, cur=76_800_000),
        "max_temp": 100.0,  # PMIC-Die really reads a constant 100 °C on these boards
        "cpu": ("ARMv8 Processor rev 1 (v8l)", 4, 1479.0),
        "os": ("Ubuntu", "18.04"),
        "cuda": ("10.2.300", "8.2.1", "8.2.1.8"),
        "mem_total": 4058488 * 1024,
    },
    "jetson-xavier-nx": {
        "model": "NVIDIA Jetson Xavier NX Developer Kit",
        "soc": "tegra194",
        "part": "p3668-0001",
        "l4t": "35.4.1",
        "jetpack": "5.1.2",
        "mode": (2, "MODE_15W_6CORE"),
        "gpu_freq": FrequencyRange(min=114_750_000, max=1_109_250_000, cur=306_000_000),
        "max_temp": 100.0,
        "cpu": ("NVIDIA Carmel", 6, 1907.2),
        "os": ("Ubuntu", "20.04"),
        "cuda": ("11.4.19", "8.6.0.166", "8.5.2.2"),
        "mem_total": 7765260 * 1024,
    },
    "jetson-orin": {
        "model": "NVIDIA Jetson AGX Orin Developer Kit",
        "soc": "tegra234",
        "part": "p3701-0005",
        "l4t": "36.3.0",  # no nv_tegra_release: from the nvidia-l4t-core package
        "jetpack": "6.0",
        "mode": (3, "MODE_50W"),
        "gpu_freq": FrequencyRange(min=306_000_000, max=816_000_000, cur=306_000_000),
        "max_temp": 45.312,
        "cpu": ("ARM Cortex-A78AE", 12, 2201.6),
        "os": ("Ubuntu", "22.04"),
        "cuda": ("12.2.140", "8.9.4.25", "8.6.2.3"),
        "mem_total": 64335836 * 1024,
    },
}


def _fixture_probe(tmp_path: Path, board: str) -> Capabilities:
    return CapabilityProbe(root=FIXTURES / board, state_dir=tmp_path, benchmark=False).probe()


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_jetson_facts(board: str) -> None:
    expected = BOARDS[board]
    errors = ProbeErrorLog()
    info = JetsonProbe(SystemRoot(FIXTURES / board), errors).probe()
    assert info is not None
    assert info.model == expected["model"]
    assert info.soc == expected["soc"]
    assert info.compatible[-1] == f"nvidia,{expected['soc']}"
    assert info.module_part_number == expected["part"]
    assert info.l4t_release == expected["l4t"]
    assert info.jetpack == expected["jetpack"]
    assert (info.power_mode_id, info.power_mode_name) == expected["mode"]
    assert info.gpu_freq_hz == expected["gpu_freq"]
    assert errors.errors == []


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_host_and_cuda_facts_of_board(board: str, tmp_path: Path) -> None:
    expected = BOARDS[board]
    caps = _fixture_probe(tmp_path, board)
    assert caps.max_temp_c() == pytest.approx(expected["max_temp"])
    assert (caps.cpu.model, caps.cpu.cores, caps.cpu.max_freq_mhz) == expected["cpu"]
    assert (caps.identity.os_name, caps.identity.os_version) == expected["os"]
    assert caps.memory.total_bytes == expected["mem_total"]
    assert caps.jetson is not None and caps.jetson.jetpack == expected["jetpack"]
    stack = CudaStackProbe(SystemRoot(FIXTURES / board), ProbeErrorLog()).probe(check_torch=False)
    assert (stack.cuda, stack.cudnn, stack.tensorrt) == expected["cuda"]
    whats = {e.what for e in caps.probe_errors}
    assert not any(w.startswith(("jetson", "thermal", "cpu", "memory", "cuda")) for w in whats)


def test_l4t_falls_back_to_dpkg_only_without_nv_tegra_release(tmp_path: Path) -> None:
    assert not (FIXTURES / "jetson-orin" / "etc/nv_tegra_release").exists()
    root = SystemRoot(tmp_path)
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: nvidia-l4t-core\nStatus: install ok installed\nVersion: 36.4.3-20250107174145\n"
    )
    assert JetsonProbe(root, ProbeErrorLog()).l4t_release() == "36.4.3"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R35 (release), REVISION: 6.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: x\n"
    )
    assert JetsonProbe(root, ProbeErrorLog()).l4t_release() == "35.6.0"


def test_no_release_information_is_a_probe_error_not_an_exception(tmp_path: Path) -> None:
    dt = tmp_path / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"NVIDIA Orin Nano Developer Kit\x00")
    (dt / "compatible").write_bytes(
        b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00"
    )
    errors = ProbeErrorLog()
    info = JetsonProbe(SystemRoot(tmp_path), errors).probe()
    assert info is not None
    assert (info.soc, info.module_part_number, info.l4t_release, info.jetpack) == (
        "tegra234",
        "p3767-0005",
        None,
        None,
    )
    assert {e.what for e in errors.errors} == {
        "jetson.l4t_release",
        "jetson.power_mode",
        "jetson.gpu_freq",
    }


@pytest.mark.parametrize(
    ("l4t", "jetpack"),
    [
        ("32.4.3", "4.4"),
        ("32.4.4", "4.4.1"),
        ("32.6.1", "4.6"),
        ("32.7.6", "4.6.6"),
        ("35.1.0", "5.0.2"),
        ("35.5.0", "5.1.3"),
        ("36.2.0", "6.0 DP"),
        ("36.4.0", "6.1"),
        ("36.4.3", "6.2"),
        ("36.4.4", "6.2.1"),
        ("99.0.0", None),
    ],
)
def test_jetpack_table(l4t: str, jetpack: str | None) -> None:
    assert jetpack_for_l4t(l4t) == jetpack


def test_jetpack_table_covers_jetpack_4_5_and_6() -> None:
    majors = {jp.split(".")[0] for jp in JETPACK_BY_L4T.values()}
    assert {"4", "5", "6"} <= majors


def test_release_line_and_part_number_parsing() -> None:
    line = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: x"
    assert parse_nv_tegra_release(line) == "32.7.1"
    assert parse_nv_tegra_release("garbage") is None
    assert module_part_number(["nvidia,jetson-nano", "nvidia,tegra210"]) is None


def test_boardids_give_the_part_number_when_compatible_does_not(tmp_path: Path) -> None:
    dt = tmp_path / "proc/device-tree"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"Jetson-AGX\x00")
    (dt / "compatible").write_bytes(b"nvidia,galen\x00nvidia,tegra194\x00")
    (dt / "nvidia,boardids").write_bytes(b"2888:0004:400\x00")
    info = JetsonProbe(SystemRoot(tmp_path), ProbeErrorLog()).probe()
    assert info is not None and info.module_part_number == "p2888-0004"


@pytest.mark.parametrize("board", ["x86-desktop", None])
def test_non_jetson_root_has_no_jetson_and_does_not_raise(
    board: str | None, tmp_path: Path
) -> None:
    root = FIXTURES / board if board else tmp_path / "empty"
    root.mkdir(exist_ok=True)
    assert JetsonProbe(SystemRoot(root), ProbeErrorLog()).probe() is None
    caps = CapabilityProbe(root=root, state_dir=tmp_path, benchmark=False).probe()
    assert caps.jetson is None
    assert not any(e.what.startswith("jetson") for e in caps.probe_errors)
    if board:
        assert caps.cpu.model == "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz"
        assert (caps.cpu.cores, caps.cpu.max_freq_mhz) == (16, 4800.0)
        assert caps.max_temp_c() == 46.0
    else:
        assert caps.memory.total_bytes == 0
        assert "memory" in {e.what for e in caps.probe_errors}


def test_host_probe_reads_nothing_outside_its_root(tmp_path: Path) -> None:
    errors = ProbeErrorLog()
    assert HostProbe(SystemRoot(tmp_path), errors).thermal_zones() == []
    assert errors.errors == []
