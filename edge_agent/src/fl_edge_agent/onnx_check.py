"""OnnxCheck: which ONNX Runtime providers really run a model, and how fast inference is."""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from fl_edge_agent.probe_error_log import describe_error
from fl_shared.capabilities import OnnxRuntimeInfo

if TYPE_CHECKING:
    import numpy as np

CPU_PROVIDER: Final[str] = "CPUExecutionProvider"
# Most preferred first when choosing where to benchmark; TensorRT after CUDA because its engine
# build would eat most of a few-second budget.
PROVIDER_PREFERENCE: Final[tuple[str, ...]] = (
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "QNNExecutionProvider",
    "XnnpackExecutionProvider",
    CPU_PROVIDER,
)
VERIFY_SHAPE: Final[tuple[int, int]] = (2, 4)
BENCH_BATCH: Final[int] = 32
BENCH_LAYERS: Final[tuple[int, ...]] = (784, 256, 128, 10)
OPSET: Final[int] = 13
IR_VERSION: Final[int] = 8  # readable by ONNX Runtime releases as old as 1.10 (JetPack 4 wheels)


def _serialize(graph: Any) -> bytes:
    from onnx import helper  # heavy: loaded only when probing

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    return bytes(model.SerializeToString())


def tiny_model() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A MatMul+Relu model with fixed shapes, an input, and the output it must produce."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rows, cols = VERIFY_SHAPE
    weight = (np.arange(cols * cols, dtype=np.float32).reshape(cols, cols) - 6.0) / 10.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "capability_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])],
        [numpy_helper.from_array(weight, "w")],
    )
    x = np.linspace(-1.0, 1.0, rows * cols, dtype=np.float32).reshape(rows, cols)
    return _serialize(graph), x, np.maximum(x @ weight, 0.0)


def mlp_model(batch: int = BENCH_BATCH) -> tuple[bytes, np.ndarray]:
    """A 784-256-128-10 MLP (Gemm+Relu) with random weights, and a random input batch."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "x"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(BENCH_LAYERS)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(fan_out, dtype=np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < len(BENCH_LAYERS) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "capability_bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, BENCH_LAYERS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, BENCH_LAYERS[-1]])],
        inits,
    )
    x = rng.standard_normal((batch, BENCH_LAYERS[0])).astype(np.float32)
    return _serialize(graph), x


class ProviderCheckError(RuntimeError):
    """A provider could not run the check model on its own, or computed wrong numbers."""


def _notes(caught: list[warnings.WarningMessage]) -> str:
    notes = "; ".join(str(w.message) for w in caught)
    return f" ({notes})" if notes else ""


def _session(model: bytes, provider: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions; keep stderr clean
    if provider != CPU_PROVIDER:
        # A provider that cannot run every node must fail, not quietly hand nodes to the CPU.
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            session = ort.InferenceSession(model, options, providers=[provider])
        except Exception as exc:
            raise ProviderCheckError(describe_error(exc) + _notes(caught)) from exc
    active = session.get_providers()
    if not active or active[0] != provider:
        raise ProviderCheckError(
            f"fell back to {active[0] if active else 'nothing'}{_notes(caught)}"
        )
    return session


def verify_provider(provider: str) -> None:
    """Run the tiny model on ``provider`` alone; raise when it fails or computes wrong numbers."""
    import numpy as np

    model, x, expected = tiny_model()
    session = _session(model, provider)
    (got,) = session.run(None, {"x": x})
    # TF32/FP16 providers round; a broken one is off by far more.
    if not np.allclose(got, expected, rtol=1e-2, atol=1e-2):
        raise ProviderCheckError(f"wrong result: {got.tolist()} != {expected.tolist()}")


def check_providers() -> OnnxRuntimeInfo:
    """Compiled-in providers and which of them verified (failures with their error)."""
    import onnxruntime

    info = OnnxRuntimeInfo(
        version=onnxruntime.__version__,
        compiled_providers=list(onnxruntime.get_available_providers()),
    )
    for provider in info.compiled_providers:
        try:
            verify_provider(provider)
        except Exception as exc:  # noqa: BLE001 - any provider failure is a finding, not a crash
            info.failed_providers[provider] = (
                str(exc) if isinstance(exc, ProviderCheckError) else describe_error(exc)
            )
        else:
            info.verified_providers.append(provider)
    return info


def best_provider(verified: list[str]) -> str | None:
    """The most preferred verified provider for the benchmark."""
    ranked = [p for p in PROVIDER_PREFERENCE if p in verified]
    return ranked[0] if ranked else None


def measure_inference_speed(
    provider: str, budget_s: float, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Samples/s of MLP inference on ``provider``, running batches until ``budget_s`` is spent."""
    model, x = mlp_model()
    start = clock()
    session = _session(model, provider)
    session.run(None, {"x": x})  # warm-up: allocations and kernel selection
    batches = 0
    bench_start = clock()
    while True:
        session.run(None, {"x": x})
        batches += 1
        elapsed = clock() - bench_start
        if clock() - start >= budget_s:
            break
    return batches * x.shape[0] / max(elapsed, 1e-9)
