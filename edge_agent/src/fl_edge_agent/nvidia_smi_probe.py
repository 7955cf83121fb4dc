"""Discrete NVIDIA GPUs as `nvidia-smi --query-gpu` lists them."""

from __future__ import annotations

import re
from typing import Final

from fl_edge_agent.command_runner import CommandRunner
from fl_shared.capabilities import NvidiaGpu

NVIDIA_SMI_ARGV: Final[tuple[str, ...]] = (
    "nvidia-smi",
    "--query-gpu=name,memory.total,driver_version",
    "--format=csv,noheader",
)
NVIDIA_SMI_TIMEOUT_S: Final[float] = 10.0


def parse_nvidia_smi(csv_text: str) -> list[NvidiaGpu]:
    """``NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15`` lines -> NvidiaGpu list."""
    gpus = []
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0]:
            continue
        name, memory, driver = ", ".join(fields[:-2]), fields[-2], fields[-1]
        match = re.match(r"(\d+)\s*MiB", memory)
        gpus.append(
            NvidiaGpu(
                name=name,
                memory_total_mib=int(match.group(1)) if match else None,
                driver_version=driver,
            )
        )
    return gpus


def query_nvidia_gpus(run: CommandRunner) -> list[NvidiaGpu]:
    """Run nvidia-smi through ``run``; its exceptions (tool missing, failure) propagate."""
    return parse_nvidia_smi(run(NVIDIA_SMI_ARGV, NVIDIA_SMI_TIMEOUT_S))
