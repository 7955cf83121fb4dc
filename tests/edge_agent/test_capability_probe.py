"""CapabilityProbe on this machine, with fake nvidia-smi runners and a broken ORT provider."""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import onnxruntime
import pytest

from fl_edge_agent.capability_probe import CapabilityProbe
from fl_edge_agent.nvidia_smi_probe import NVIDIA_SMI_ARGV, parse_nvidia_smi
from fl_edge_agent.onnx_check import check_providers
from fl_shared.capabilities import Capabilities, JetsonInfo, NvidiaGpu

BUDGET_S = 2.0
H100_CSV = "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15\n"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _no_nvidia_smi(argv: Sequence[str], timeout_s: float) -> str:
    raise FileNotFoundError(2, "No such file or directory", argv[0])


@pytest.fixture(scope="module")
def real_probe(tmp_path_factory: pytest.TempPathFactory) -> Capabilities:
    """One full probe of this machine, benchmarks included, shared by the tests below."""
    return CapabilityProbe(
        state_dir=tmp_path_factory.mktemp("state"),
        coordinator_url=f"http://127.0.0.1:{_closed_port()}",
        model="cnn",
        budget_s=BUDGET_S,
    ).probe()


def test_identity_and_hardware_of_this_machine(real_probe: Capabilities) -> None:
    assert real_probe.identity.arch == platform.machine()
    assert real_probe.identity.python == platform.python_version()
    assert real_probe.identity.agent_version
    assert real_probe.cpu.cores >= 1
    assert real_probe.memory.total_bytes > 0
    assert 0 < real_probe.memory.available_bytes <= real_probe.memory.total_bytes
    assert real_probe.disk.free_bytes > 0
    assert real_probe.probed_at is not None


def test_onnxruntime_cpu_provider_is_verified(real_probe: Capabilities) -> None:
    ort = real_probe.onnxruntime
    assert ort.version == onnxruntime.__version__
    assert "CPUExecutionProvider" in ort.compiled_providers
    assert "CPUExecutionProvider" in ort.verified_providers
    assert set(ort.verified_providers) | set(ort.failed_providers) == set(ort.compiled_providers)


def test_speed_within_budget(real_probe: Capabilities) -> None:
    speed = real_probe.speed
    assert speed.onnx_infer_samples_per_s is not None and speed.onnx_infer_samples_per_s > 0
    assert speed.onnx_provider in real_probe.onnxruntime.verified_providers
    assert speed.torch_train_samples_per_s is not None and speed.torch_train_samples_per_s > 0
    assert speed.torch_model == "cnn"
    assert speed.budget_s == BUDGET_S
    assert speed.seconds < BUDGET_S + 3
    assert real_probe.probe_seconds < BUDGET_S + 10


def test_unreachable_coordinator_is_a_probe_error(real_probe: Capabilities) -> None:
    assert real_probe.speed.coordinator_rtt_ms is None
    errors = {e.what: e.error for e in real_probe.probe_errors}
    assert "ConnectError" in errors["speed.coordinator_rtt"]


def test_reachable_coordinator_gives_rtt(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from fl_edge_agent import coordinator_rtt

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "ok"})

    ticks = iter(range(100))
    rtt = coordinator_rtt.measure_coordinator_rtt(
        "http://coord:8080/",
        transport=httpx.MockTransport(handler),
        clock=lambda: next(ticks) * 0.004,
    )
    assert rtt == pytest.approx(4.0)
    assert seen == ["http://coord:8080/healthz"] * 3


def _probe_without_benchmarks(tmp_path: Path, run: object) -> Capabilities:
    return CapabilityProbe(
        root=tmp_path,
        state_dir=tmp_path,
        run=run,  # type: ignore[arg-type]
        benchmark=False,
    ).probe()


def test_fake_nvidia_smi_is_parsed(tmp_path: Path) -> None:
    calls: list[tuple[str, ...]] = []

    def fake(argv: Sequence[str], timeout_s: float) -> str:
        calls.append(tuple(argv))
        return H100_CSV + "NVIDIA GeForce RTX 4090, 24564 MiB, 550.54.15\n"

    caps = _probe_without_benchmarks(tmp_path, fake)
    assert calls == [NVIDIA_SMI_ARGV]
    assert caps.nvidia_gpus == [
        NvidiaGpu(name="NVIDIA H100 80GB HBM3", memory_total_mib=81559, driver_version="550.54.15"),
        NvidiaGpu(
            name="NVIDIA GeForce RTX 4090", memory_total_mib=24564, driver_version="550.54.15"
        ),
    ]
    assert "nvidia-smi" not in {e.what for e in caps.probe_errors}


def test_missing_nvidia_smi_is_a_probe_error(tmp_path: Path) -> None:
    caps = _probe_without_benchmarks(tmp_path, _no_nvidia_smi)
    assert caps.nvidia_gpus == []
    errors = {e.what: e.error for e in caps.probe_errors}
    assert "not found" in errors["nvidia-smi"]


def test_failing_nvidia_smi_is_a_probe_error(tmp_path: Path) -> None:
    def failing(argv: Sequence[str], timeout_s: float) -> str:
        raise subprocess.CalledProcessError(
            9, list(argv), stderr="NVIDIA-SMI has failed because it couldn't communicate\n"
        )

    caps = _probe_without_benchmarks(tmp_path, failing)
    errors = {e.what: e.error for e in caps.probe_errors}
    assert "couldn't communicate" in errors["nvidia-smi"]


def test_nvidia_smi_parser_skips_blank_lines_and_keeps_commas_in_names() -> None:
    gpus = parse_nvidia_smi("\nTesla V100-SXM2-16GB, 16384 MiB, 535.1\n\n")
    assert gpus == [
        NvidiaGpu(name="Tesla V100-SXM2-16GB", memory_total_mib=16384, driver_version="535.1")
    ]


def test_listed_but_broken_provider_is_failed_not_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = onnxruntime.get_available_providers()
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", *real]
    )
    info = check_providers()
    assert "CUDAExecutionProvider" in info.compiled_providers
    assert "CUDAExecutionProvider" not in info.verified_providers
    assert "not in available provider names" in info.failed_providers["CUDAExecutionProvider"]
    assert "CPUExecutionProvider" in info.verified_providers


def test_fingerprint_follows_slow_fields_only() -> None:
    caps = Capabilities(
        probed_at=datetime(2025, 1, 1, tzinfo=UTC),
        jetson=JetsonInfo(
            model="NVIDIA Jetson Xavier NX Developer Kit",
            power_mode_id=2,
            power_mode_name="MODE_15W_6CORE",
        ),
    )
    later = caps.model_copy(deep=True)
    later.probed_at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=1)
    later.probe_seconds = 3.2
    later.memory.available_bytes = 12345
    assert later.fingerprint() == caps.fingerprint()

    other_mode = caps.model_copy(deep=True)
    assert other_mode.jetson is not None
    other_mode.jetson.power_mode_id = 6
    other_mode.jetson.power_mode_name = "MODE_20W_6CORE"
    assert other_mode.fingerprint() != caps.fingerprint()

    other_gpu = caps.model_copy(deep=True)
    other_gpu.nvidia_gpus = [NvidiaGpu(name="NVIDIA A2")]
    assert other_gpu.fingerprint() != caps.fingerprint()


def test_wire_json_round_trips_and_ignores_unknown_fields(real_probe: Capabilities) -> None:
    data = real_probe.model_dump(mode="json")
    data["from_the_future"] = {"x": 1}
    data["cpu"]["new_field"] = 2
    again = Capabilities.model_validate(data)
    assert again.fingerprint() == real_probe.fingerprint()
    assert Capabilities.model_validate({}).probe_errors == []


def test_importing_the_probe_loads_no_torch_onnx_or_numpy() -> None:
    import sys

    code = (
        "import fl_shared.capabilities, fl_edge_agent.capability_probe, "
        "fl_edge_agent.probe_command, sys; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(out.stdout.split())
    assert "fl_edge_agent.capability_probe" in loaded
    assert not {"torch", "onnx", "onnxruntime", "numpy", "fl_shared.models"} & loaded
