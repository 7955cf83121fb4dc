"""CapabilityProbe: measures what this device is and can do, never crashing on what it lacks."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fl_edge_agent.command_runner import CommandRunner, run_command
from fl_edge_agent.coordinator_rtt import measure_coordinator_rtt
from fl_edge_agent.cuda_stack_probe import CudaStackProbe
from fl_edge_agent.host_probe import HostProbe
from fl_edge_agent.jetson_probe import JetsonProbe
from fl_edge_agent.nvidia_smi_probe import query_nvidia_gpus
from fl_edge_agent.onnx_check import best_provider, check_providers, measure_inference_speed
from fl_edge_agent.probe_error_log import ProbeErrorLog
from fl_edge_agent.speed_benchmark import measure_train_speed
from fl_edge_agent.system_root import SystemRoot
from fl_shared.capabilities import Capabilities, NvidiaGpu, OnnxRuntimeInfo, SpeedScore

# Shares of the speed budget; the RTT share also bounds each GET's timeout.
ONNX_SHARE: Final[float] = 0.4
TORCH_SHARE: Final[float] = 0.45
RTT_SHARE: Final[float] = 0.15
RTT_TRIES: Final[int] = 3


class CapabilityProbe:
    """Probes identity, hardware, software stack and speed; see ``probe()``."""

    def __init__(
        self,
        root: Path = Path("/"),
        state_dir: Path = Path("/var/lib/fl-edge-agent"),
        coordinator_url: str | None = None,
        model: str = "cnn",
        budget_s: float = 2.0,
        run: CommandRunner = run_command,
        clock: Callable[[], float] = time.perf_counter,
        benchmark: bool = True,
        coordinator_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.root = root
        # An enrolled device's coordinator CA (None: httpx's default verification).
        self.coordinator_tls = coordinator_tls
        self.state_dir = state_dir
        self.coordinator_url = coordinator_url
        self.model = model
        self.budget_s = budget_s
        self.benchmark = benchmark
        self._run = run
        self._clock = clock

    def probe(self) -> Capabilities:
        """Everything measurable; what could not be read is listed in ``probe_errors``."""
        start = self._clock()
        probed_at = datetime.now(UTC)
        errors = ProbeErrorLog()
        root = SystemRoot(self.root)
        host = HostProbe(root, errors)
        caps = Capabilities(probed_at=probed_at)
        caps.identity = errors.attempt("identity", host.identity, caps.identity)
        caps.cpu = errors.attempt("cpu", host.cpu, caps.cpu)
        caps.memory = errors.attempt("memory", host.memory, caps.memory)
        caps.disk = errors.attempt("disk", lambda: host.disk(self.state_dir), caps.disk)
        caps.thermal_zones = errors.attempt("thermal", host.thermal_zones, [])
        caps.nvidia_gpus = errors.attempt("nvidia-smi", self._nvidia_gpus, [])
        caps.jetson = errors.attempt("jetson", JetsonProbe(root, errors).probe, None)
        caps.cuda = errors.attempt("cuda", CudaStackProbe(root, errors).probe, caps.cuda)
        caps.onnxruntime = errors.attempt("onnxruntime", check_providers, OnnxRuntimeInfo())
        if self.benchmark:
            caps.speed = self._speed(caps, errors)
        caps.probe_errors = errors.errors
        caps.probe_seconds = round(self._clock() - start, 3)
        return caps

    def _nvidia_gpus(self) -> list[NvidiaGpu]:
        try:
            return query_nvidia_gpus(self._run)
        except FileNotFoundError as exc:
            raise FileNotFoundError("nvidia-smi not found (no discrete NVIDIA driver)") from exc
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            reason = detail[0] if detail else f"exit status {exc.returncode}"
            raise RuntimeError(f"nvidia-smi failed: {reason}") from exc

    def _speed(self, caps: Capabilities, errors: ProbeErrorLog) -> SpeedScore:
        start = self._clock()
        speed = SpeedScore(budget_s=self.budget_s)
        provider = best_provider(caps.onnxruntime.verified_providers)
        if provider is None:
            errors.add("speed.onnx", "no verified ONNX Runtime provider to benchmark")
        else:
            speed.onnx_provider = provider
            speed.onnx_infer_samples_per_s = errors.attempt(
                "speed.onnx",
                lambda: round(measure_inference_speed(provider, self.budget_s * ONNX_SHARE), 1),
                None,
            )
        speed.torch_model = self.model
        speed.torch_train_samples_per_s = errors.attempt(
            "speed.torch",
            lambda: round(
                measure_train_speed(
                    self.model, self.budget_s * TORCH_SHARE, use_cuda=caps.cuda.torch_cuda_ok
                ),
                1,
            ),
            None,
        )
        if self.coordinator_url is None:
            errors.add("speed.coordinator_rtt", "no coordinator_url configured")
        else:
            url, verify = self.coordinator_url, self.coordinator_tls
            timeout = max(0.2, self.budget_s * RTT_SHARE / RTT_TRIES)
            rtt = errors.attempt(
                "speed.coordinator_rtt",
                lambda: measure_coordinator_rtt(
                    url, tries=RTT_TRIES, timeout_s=timeout, verify=verify
                ),
                None,
            )
            speed.coordinator_rtt_ms = round(rtt, 2) if rtt is not None else None
        speed.seconds = round(self._clock() - start, 3)
        return speed
