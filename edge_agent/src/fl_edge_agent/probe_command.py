"""`fl-edge-agent probe [--json]`: print what this device is and can do."""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from fl_edge_agent.enrolled_identity import IdentityFiles
from fl_edge_agent.errors import EXIT_CONFIG, EXIT_OK, FlAgentError
from fl_edge_agent.settings import AgentSettings
from fl_shared.capabilities import Capabilities
from fl_shared.catalog import MODEL_NAMES
from fl_shared.errors import SettingsError

GIB = 1024**3


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `probe`, for a subcommand parser or a standalone one."""
    parser.add_argument("--json", action="store_true", help="print the Capabilities JSON")
    parser.add_argument("--config", type=Path, help="TOML file with an [agent] table")
    parser.add_argument("--state-dir", type=Path, help="whose disk free space to report")
    parser.add_argument("--coordinator-url", help="measure round-trip time to this coordinator")
    parser.add_argument("--model", default="cnn", help="model for the training-speed benchmark")
    parser.add_argument(
        "--budget-s", type=float, default=2.0, help="time for all speed benchmarks (2)"
    )
    parser.add_argument("--no-benchmark", action="store_true", help="skip the speed benchmarks")
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)


def _parse(args: argparse.Namespace | Sequence[str] | None) -> argparse.Namespace:
    if isinstance(args, argparse.Namespace):
        return args
    parser = argparse.ArgumentParser(prog="fl-edge-agent probe", description=__doc__)
    add_probe_arguments(parser)
    return parser.parse_args(args)


def probe_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run the probe and print a summary (or JSON with ``--json``); returns the exit code."""
    options = _parse(args)
    try:
        settings = AgentSettings.load(
            options.config,
            "agent",
            state_dir=options.state_dir,
            coordinator_url=options.coordinator_url,
        )
    except SettingsError as exc:
        print(f"fl-edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if options.model not in MODEL_NAMES:
        print(
            f"fl-edge-agent: unknown --model {options.model!r}; "
            f"choose one of {', '.join(MODEL_NAMES)}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if options.budget_s <= 0:
        print("fl-edge-agent: --budget-s must be > 0", file=sys.stderr)
        return EXIT_CONFIG
    # Imported here: the daemon builds this subcommand's parser, but only a probe process
    # needs the probe modules (~0.3 MB it would otherwise carry; docs/benchmarks.md).
    from fl_edge_agent.capability_probe import CapabilityProbe

    coordinator_url, coordinator_tls = _coordinator(settings)
    caps = CapabilityProbe(
        root=options.root,
        state_dir=settings.state_dir,
        coordinator_url=coordinator_url,
        coordinator_tls=coordinator_tls,
        model=options.model,
        budget_s=options.budget_s,
        benchmark=not options.no_benchmark,
    ).probe()
    print(caps.model_dump_json(indent=2) if options.json else format_summary(caps))
    return EXIT_OK


def _coordinator(settings: AgentSettings) -> tuple[str, ssl.SSLContext | None]:
    """The coordinator to time, and its enrolled CA: the probe never fails over an identity."""
    try:
        enrolled = IdentityFiles(settings.state_dir).load()
        if enrolled is None:
            return settings.coordinator_url, None
        url = enrolled.apply(settings).coordinator_url
        return url, enrolled.coordinator_tls() if url.startswith("https://") else None
    except FlAgentError:
        return settings.coordinator_url, None


def _num(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} {unit}"


def _mhz(hz: int | None) -> str:
    return "?" if hz is None else f"{hz / 1e6:.0f}"


def format_summary(caps: Capabilities) -> str:
    """A few aligned ``key  value`` lines for people."""
    ident, cpu, cuda, ort, speed = caps.identity, caps.cpu, caps.cuda, caps.onnxruntime, caps.speed
    lines: list[tuple[str, str]] = []
    jetson = caps.jetson
    device = jetson.model if jetson else ident.arch
    if jetson:
        device += f" ({jetson.soc or '?'}, {jetson.module_part_number or '?'})"
    lines.append(("device", device))
    lines.append(("os", f"{ident.os_pretty_name or '?'}, kernel {ident.kernel}, {ident.arch}"))
    lines.append(
        (
            "software",
            f"agent {ident.agent_version}, flwr {ident.flwr_version}, python {ident.python}",
        )
    )
    lines.append(("cpu", f"{cpu.model or '?'} x {cpu.cores}, max {_num(cpu.max_freq_mhz, 'MHz')}"))
    lines.append(
        (
            "memory",
            f"{caps.memory.total_bytes / GIB:.1f} GiB total, "
            f"{caps.memory.available_bytes / GIB:.1f} GiB available",
        )
    )
    lines.append(("disk", f"{caps.disk.free_bytes / GIB:.1f} GiB free in {caps.disk.path}"))
    gpus = [
        f"{g.name} ({_num(g.memory_total_mib, 'MiB')}, driver {g.driver_version})"
        for g in caps.nvidia_gpus
    ]
    lines.append(("gpu", "; ".join(gpus) or "none (nvidia-smi)"))
    if jetson:
        freq = jetson.gpu_freq_hz
        gpu_clock = f", GPU {_mhz(freq.min)}-{_mhz(freq.max)} MHz" if freq else ""
        lines.append(
            (
                "jetson",
                f"L4T {jetson.l4t_release or '?'} (JetPack {jetson.jetpack or '?'}), "
                f"power mode {jetson.power_mode_id} {jetson.power_mode_name or ''}{gpu_clock}",
            )
        )
    lines.append(
        (
            "cuda",
            f"CUDA {cuda.cuda or '-'}, cuDNN {cuda.cudnn or '-'}, TensorRT {cuda.tensorrt or '-'}, "
            f"torch {cuda.torch or '-'} ({'CUDA works' if cuda.torch_cuda_ok else 'no CUDA'})",
        )
    )
    failed = ", ".join(ort.failed_providers) or "none"
    lines.append(
        (
            "onnxruntime",
            f"{ort.version or '-'}: verified {', '.join(ort.verified_providers) or 'none'}"
            f"; failed {failed}",
        )
    )
    if speed.budget_s > 0:
        speed_text = (
            f"onnx {_num(speed.onnx_infer_samples_per_s, 'samples/s')} "
            f"({speed.onnx_provider or '-'}), torch {speed.torch_model} train "
            f"{_num(speed.torch_train_samples_per_s, 'samples/s')}, "
            f"rtt {_num(speed.coordinator_rtt_ms, 'ms', 1)} "
            f"({speed.seconds:.1f} s of {speed.budget_s:.1f} s budget)"
        )
    else:
        speed_text = "not measured"
    lines.append(("speed", speed_text))
    hottest = caps.max_temp_c()
    lines.append(("thermal", f"max {_num(hottest, '°C', 1)} over {len(caps.thermal_zones)} zones"))
    lines.append(("probe", f"{caps.probe_seconds:.1f} s, {len(caps.probe_errors)} errors"))
    width = max(len(key) for key, _ in lines)
    text = [f"{key:<{width}}  {value}" for key, value in lines]
    text.extend(f"{'':<{width}}  {e.what}: {e.error}" for e in caps.probe_errors)
    return "\n".join(text)
