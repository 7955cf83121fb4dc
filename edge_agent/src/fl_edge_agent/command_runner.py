"""CommandRunner: how the probe runs external tools, injectable so tests can fake them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

# Takes argv and a timeout in seconds, returns stdout; raises FileNotFoundError when the tool is
# missing, subprocess.CalledProcessError or subprocess.TimeoutExpired when it fails.
CommandRunner = Callable[[Sequence[str], float], str]


def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """Run ``argv`` and return its stdout; a non-zero exit raises CalledProcessError."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=True
    )
    return result.stdout
