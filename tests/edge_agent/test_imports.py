"""The agent daemon stays light: torch and Flower's training stack load only in the ClientApp."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(statement: str) -> set[str]:
    # A None entry is a module kept out on purpose (fl_edge_agent.launcher), not a loaded one.
    code = (
        f"{statement}; import sys; "
        "print(' '.join(sorted(m for m, v in sys.modules.items() if v is not None)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_agent_daemon_never_imports_torch() -> None:
    modules = _loaded_after("import fl_edge_agent.cli, fl_edge_agent.agent")
    assert "fl_edge_agent.agent" in modules
    assert not {"torch", "fl_shared.models", "fl_shared.training", "sklearn"} & modules


def test_agent_daemon_leaves_out_what_it_never_uses() -> None:
    # Its RSS budget is 60 MB (docs/benchmarks.md, "Agent footprint"): rich and pygments
    # (structlog's pretty tracebacks, httpx's CLI) and click cost ~5.5 MB, and the console
    # script keeps them out; the probe modules and psutil ~1.4 MB more.
    modules = _loaded_after(
        "from fl_edge_agent.launcher import keep_console_extras_out; "
        "keep_console_extras_out(); "
        "import fl_edge_agent.cli, fl_edge_agent.agent"
    )
    assert {"fl_edge_agent.agent", "structlog", "httpx"} <= modules
    assert not {"rich", "pygments", "click"} & modules
    # Only the probe process needs the probe modules; SystemLoad reads /proc itself.
    assert not {"fl_edge_agent.capability_probe", "psutil"} & modules
    # Only `enroll` generates keys and reads certificates: the daemon reads its identity files
    # with the standard library.
    assert "fl_edge_agent.enrolled_identity" in modules
    assert not {"cryptography", "fl_edge_agent.enrollment", "fl_edge_agent.supernode_key"} & modules
    # The SuperNode health check speaks gRPC without the health-checking protobuf modules.
    assert "grpc" in modules
    assert not {"grpc_health.v1.health_pb2", "grpc_health.v1.health_pb2_grpc"} & modules


def test_wire_schemas_need_no_torch() -> None:
    modules = _loaded_after("import fl_shared.wire")
    assert "fl_shared.wire" in modules and "torch" not in modules and "numpy" not in modules
