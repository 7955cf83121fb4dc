"""The `fl-edge-agent` console script: keeps terminal-only extras out, then runs the CLI."""

from __future__ import annotations

import sys

# Optional imports that only serve a person at a terminal: structlog's pretty tracebacks
# (rich, which loads pygments; fl_shared.log_setup formats exceptions itself and never uses
# them) and httpx's own `httpx` command (click, then pygments and rich). Both libraries
# catch the ImportError and work without them. Loaded, they cost the long-running daemon
# ~5.5 MB of RSS (docs/benchmarks.md, "Agent footprint").
CONSOLE_EXTRAS = ("rich", "click")
# The libraries that try those imports when they are themselves imported.
_EXTRAS_USERS = ("structlog", "httpx")


def keep_console_extras_out() -> tuple[str, ...]:
    """Make ``import rich`` and ``import click`` fail in this process; returns what it blocked.

    A ``None`` in ``sys.modules`` makes the import raise ModuleNotFoundError (the Python
    reference, "The module cache"). Only a fresh process is changed: once structlog or
    httpx is imported the optional imports have happened, and something else in the
    process may need the extras. Code of ours that imported them would fail here at once;
    tests/edge_agent/test_launcher.py runs the daemon's imports through this function.
    """
    if any(name in sys.modules for name in _EXTRAS_USERS):
        return ()
    blocked = tuple(name for name in CONSOLE_EXTRAS if name not in sys.modules)
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    return blocked


def main() -> int:
    """Entry point of `fl-edge-agent`: the CLI is imported only after the extras are out."""
    keep_console_extras_out()
    from fl_edge_agent.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
