"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``text``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in state:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def leftover_processes() -> Callable[[str], list[int]]:
    """Find processes a test left behind, by a path only they have on their command line."""
    return processes_mentioning
