"""Tests for fl_edge_agent.launcher: the console script keeps terminal-only extras out."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "edge_agent" / "pyproject.toml"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FL_AGENT_")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_console_script_runs_the_launcher() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts["fl-edge-agent"] == "fl_edge_agent.launcher:main"
    installed = importlib.metadata.entry_points(group="console_scripts", name="fl-edge-agent")
    assert [e.value for e in installed] == ["fl_edge_agent.launcher:main"], (
        "the installed fl-edge-agent script is stale: reinstall edge_agent (make setup)"
    )


# What the daemon does up to its first request, through the real entry point: `run` loads
# the settings and refuses to start without --insecure (nothing is created), then the
# pieces of a running agent are exercised by hand.
DAEMON = """
import io, json, sys
from fl_edge_agent.launcher import main
code = main()
import structlog
from fl_edge_agent.coordinator_client import CoordinatorClient
from fl_edge_agent.supernode_health import SuperNodeHealth
from fl_shared.log_setup import configure_logging
CoordinatorClient("http://127.0.0.1:9").close()
health = SuperNodeHealth("127.0.0.1:9")
health.check(timeout_s=0.2)
health.close()
out = io.StringIO()
configure_logging(json_output=False, stream=out)
try:
    1 / 0
except ZeroDivisionError:
    structlog.get_logger("test").exception("boom")
print(json.dumps({
    "code": code,
    "loaded": [m for m in ("rich", "pygments", "click") if sys.modules.get(m) is not None],
    "agent": "fl_edge_agent.agent" in sys.modules,
    "log": out.getvalue(),
}))
"""


def test_daemon_never_loads_terminal_extras(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\n")
    result = _python(
        DAEMON,
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(state_dir),
        "--coordinator-url",
        "http://127.0.0.1:9",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == 2  # the TLS refusal: settings loaded, nothing started
    assert report["agent"]
    assert report["loaded"] == []
    # Exceptions are still logged in full, by structlog's plain formatter.
    assert "Traceback (most recent call last):" in report["log"]
    assert "ZeroDivisionError: division by zero" in report["log"]
    assert not state_dir.exists()


def test_keeps_out_nothing_once_structlog_is_imported() -> None:
    # Too late to matter, and someone in this process may want rich: leave it importable.
    result = _python(
        "import structlog\n"
        "from fl_edge_agent.launcher import keep_console_extras_out\n"
        "print(keep_console_extras_out())\n"
        "import rich.console\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "()"


def test_blocked_names_fail_to_import_in_a_fresh_process() -> None:
    result = _python(
        "from fl_edge_agent.launcher import keep_console_extras_out\n"
        "print(keep_console_extras_out())\n"
        "import rich\n"
    )
    assert result.stdout.strip() == "('rich', 'click')"
    assert "ModuleNotFoundError" in result.stderr
