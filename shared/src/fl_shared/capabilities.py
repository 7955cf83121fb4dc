"""Capabilities: the wire schema of what an edge device is and can do, as measured by its probe."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Capabilities",
    "CpuInfo",
    "CudaStack",
    "DiskInfo",
    "FrequencyRange",
    "Identity",
    "JetsonInfo",
    "MemoryInfo",
    "NvidiaGpu",
    "OnnxRuntimeInfo",
    "ProbeError",
    "SpeedScore",
    "ThermalZone",
]


class _CapabilityModel(BaseModel):
    """Base of the capability schemas: unknown fields are ignored so older/newer peers mix.

    Numbers must be finite: JSON has no Infinity or NaN (PostgreSQL's JSONB refuses them), and a
    speed of Infinity would win every selection.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Identity(_CapabilityModel):
    """What software runs on which machine."""

    arch: str = ""
    os_name: str = ""
    os_version: str = ""
    os_pretty_name: str = ""
    kernel: str = ""
    python: str = ""
    agent_version: str = ""
    flwr_version: str | None = None


class CpuInfo(_CapabilityModel):
    """The CPU as /proc/cpuinfo and cpufreq describe it."""

    model: str = ""
    cores: int = 0
    max_freq_mhz: float | None = None


class MemoryInfo(_CapabilityModel):
    """RAM from /proc/meminfo, in bytes."""

    total_bytes: int = 0
    available_bytes: int = 0


class DiskInfo(_CapabilityModel):
    """Free space where the agent keeps its state."""

    path: str = ""
    total_bytes: int = 0
    free_bytes: int = 0


class NvidiaGpu(_CapabilityModel):
    """One discrete NVIDIA GPU as nvidia-smi reports it."""

    name: str = ""
    memory_total_mib: int | None = None
    driver_version: str = ""


class FrequencyRange(_CapabilityModel):
    """A devfreq clock, in Hz."""

    min: int | None = None
    max: int | None = None
    cur: int | None = None


class JetsonInfo(_CapabilityModel):
    """An NVIDIA Jetson module: board, software release and power mode."""

    model: str = ""
    compatible: list[str] = Field(default_factory=list)
    soc: str | None = None
    module_part_number: str | None = None
    l4t_release: str | None = None
    jetpack: str | None = None
    power_mode_id: int | None = None
    power_mode_name: str | None = None
    gpu_freq_hz: FrequencyRange | None = None


class ThermalZone(_CapabilityModel):
    """One /sys/class/thermal zone."""

    name: str = ""
    type: str = ""
    temp_c: float | None = None


class CudaStack(_CapabilityModel):
    """Versions of the CUDA libraries, and whether torch can really use CUDA."""

    cuda: str | None = None
    cudnn: str | None = None
    tensorrt: str | None = None
    torch: str | None = None
    torch_cuda_ok: bool = False


class OnnxRuntimeInfo(_CapabilityModel):
    """Execution providers compiled in, and those that ran a tiny model correctly."""

    version: str | None = None
    compiled_providers: list[str] = Field(default_factory=list)
    verified_providers: list[str] = Field(default_factory=list)
    failed_providers: dict[str, str] = Field(default_factory=dict)


class SpeedScore(_CapabilityModel):
    """Results of the bounded micro-benchmarks."""

    onnx_infer_samples_per_s: float | None = None
    onnx_provider: str | None = None
    torch_train_samples_per_s: float | None = None
    torch_model: str | None = None
    coordinator_rtt_ms: float | None = None
    budget_s: float = 0.0
    seconds: float = 0.0


class ProbeError(_CapabilityModel):
    """Something the probe could not read, and why."""

    what: str
    error: str


# Fields that change only with hardware, software or power mode; the rest (free memory,
# temperatures, speed, timestamps) vary from one probe to the next.
_FINGERPRINT_FIELDS: dict[str, Any] = {
    "identity": True,
    "cpu": True,
    "memory": {"total_bytes"},
    "nvidia_gpus": True,
    "jetson": {
        "model",
        "compatible",
        "soc",
        "module_part_number",
        "l4t_release",
        "jetpack",
        "power_mode_id",
        "power_mode_name",
    },
    "cuda": True,
    "onnxruntime": {"version", "compiled_providers", "verified_providers"},
}


class Capabilities(_CapabilityModel):
    """Everything one probe measured about a device."""

    schema_version: str = "1.0"
    identity: Identity = Field(default_factory=Identity)
    cpu: CpuInfo = Field(default_factory=CpuInfo)
    memory: MemoryInfo = Field(default_factory=MemoryInfo)
    disk: DiskInfo = Field(default_factory=DiskInfo)
    nvidia_gpus: list[NvidiaGpu] = Field(default_factory=list)
    jetson: JetsonInfo | None = None
    thermal_zones: list[ThermalZone] = Field(default_factory=list)
    cuda: CudaStack = Field(default_factory=CudaStack)
    onnxruntime: OnnxRuntimeInfo = Field(default_factory=OnnxRuntimeInfo)
    speed: SpeedScore = Field(default_factory=SpeedScore)
    probe_errors: list[ProbeError] = Field(default_factory=list)
    probed_at: datetime | None = None
    probe_seconds: float = 0.0

    def fingerprint(self) -> str:
        """Hex digest of the slowly-changing fields: send capabilities again when it changes."""
        stable = self.model_dump(mode="json", include=_FINGERPRINT_FIELDS)
        blob = json.dumps(stable, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def max_temp_c(self) -> float | None:
        """Hottest thermal zone reading, or None when no zone could be read."""
        temps = [z.temp_c for z in self.thermal_zones if z.temp_c is not None]
        return max(temps) if temps else None
