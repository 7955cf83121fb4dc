"""The agent daemon stays light: torch and Flower's training stack load only in the ClientApp."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_agent_daemon_never_imports_torch() -> None:
    modules = _loaded_after("import fl_edge_agent.cli, fl_edge_agent.agent")
    assert "fl_edge_agent.agent" in modules
    assert not {"torch", "fl_shared.models", "fl_shared.training", "sklearn"} & modules


def test_wire_schemas_need_no_torch() -> None:
    modules = _loaded_after("import fl_shared.wire")
    assert "fl_shared.wire" in modules and "torch" not in modules and "numpy" not in modules
