"""CudaStackProbe: CUDA, cuDNN and TensorRT versions on disk, and whether torch can use CUDA."""

from __future__ import annotations

import json
import re
from typing import Final

from fl_edge_agent.dpkg_status import read_dpkg_versions, upstream_version
from fl_edge_agent.probe_error_log import ProbeErrorLog
from fl_edge_agent.system_root import SystemRoot
from fl_shared.capabilities import CudaStack

CUDA_VERSION_JSON: Final[str] = "usr/local/cuda/version.json"
CUDA_VERSION_TXT: Final[str] = "usr/local/cuda/version.txt"
CUDNN_HEADERS: Final[tuple[str, ...]] = (
    "usr/include/cudnn_version.h",
    "usr/include/aarch64-linux-gnu/cudnn_version_v8.h",
    "usr/include/x86_64-linux-gnu/cudnn_version_v8.h",
    "usr/local/cuda/include/cudnn_version.h",
)
_CUDNN_PACKAGE_RE = re.compile(r"libcudnn\d+(-cuda-\d+)?$")
_TENSORRT_PACKAGE_RE = re.compile(r"libnvinfer\d+$")


def parse_cudnn_header(text: str) -> str | None:
    """``#define CUDNN_MAJOR 8`` / MINOR / PATCHLEVEL -> ``8.6.0``."""
    parts = []
    for name in ("MAJOR", "MINOR", "PATCHLEVEL"):
        match = re.search(rf"#define\s+CUDNN_{name}\s+(\d+)", text)
        if match is None:
            return None
        parts.append(match.group(1))
    return ".".join(parts)


class CudaStackProbe:
    """Reads the CUDA library versions under a root; checks torch in this process."""

    def __init__(self, root: SystemRoot, errors: ProbeErrorLog) -> None:
        self._root = root
        self._errors = errors

    def probe(self, check_torch: bool = True) -> CudaStack:
        """Versions found on disk, plus torch's version and a real CUDA tensor op."""
        packages: dict[str, str] = (
            self._errors.attempt("dpkg.status", lambda: read_dpkg_versions(self._root), {})
            if self._root.exists("var/lib/dpkg/status")
            else {}
        )
        stack = CudaStack(
            cuda=self._errors.attempt("cuda.version", self.cuda_version, None),
            cudnn=self._errors.attempt("cuda.cudnn", lambda: self.cudnn_version(packages), None),
            tensorrt=tensorrt_version(packages),
        )
        if check_torch:
            no_torch: tuple[str | None, bool] = (None, False)
            stack.torch, stack.torch_cuda_ok = self._errors.attempt(
                "torch", self.torch_cuda, no_torch
            )
        return stack

    def cuda_version(self) -> str | None:
        """From /usr/local/cuda/version.json (CUDA 11+) or version.txt (CUDA 10); None if absent."""
        if self._root.exists(CUDA_VERSION_JSON):
            data = json.loads(self._root.read_text(CUDA_VERSION_JSON))
            return str(data["cuda"]["version"])
        if self._root.exists(CUDA_VERSION_TXT):
            match = re.search(r"CUDA Version\s+([\d.]+)", self._root.read_text(CUDA_VERSION_TXT))
            return match.group(1) if match else None
        return None

    def cudnn_version(self, packages: dict[str, str]) -> str | None:
        """From cudnn_version.h, else from the libcudnn* package."""
        header = self._root.first_existing(*CUDNN_HEADERS)
        if header is not None:
            version = parse_cudnn_header(self._root.read_text(header))
            if version:
                return version
        for name, version in sorted(packages.items()):
            if _CUDNN_PACKAGE_RE.match(name):
                return upstream_version(version)
        return None

    def torch_cuda(self) -> tuple[str | None, bool]:
        """torch's version and whether a tiny tensor op on CUDA really runs."""
        import torch  # heavy: loaded only when probing, never by the daemon

        if not torch.cuda.is_available():
            return torch.__version__, False
        try:
            x = torch.ones(4, 4, device="cuda")
            ok = float((x @ x).sum().item()) == 64.0
        except RuntimeError as exc:
            self._errors.add("torch.cuda", f"RuntimeError: {exc}")
            ok = False
        return torch.__version__, ok


def tensorrt_version(packages: dict[str, str]) -> str | None:
    """From the ``tensorrt`` meta-package, else a libnvinfer* package."""
    if "tensorrt" in packages:
        return upstream_version(packages["tensorrt"])
    for name, version in sorted(packages.items()):
        if _TENSORRT_PACKAGE_RE.match(name):
            return upstream_version(version)
    return None
