"""Wall-clock phases of a long system test, printed as each ends and summed up at the end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Phases:
    """Wall-clock time of each phase, printed as it ends and summed up at the end."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = time.monotonic() - started
            print(f"phase {name}: {self.times[name]:.1f} s", flush=True)

    def summary(self) -> str:
        lines = [f"  {name:<28} {seconds:6.1f} s" for name, seconds in self.times.items()]
        total = time.monotonic() - self.started
        return "\n".join(["fleet test phases:", *lines, f"  {'total':<28} {total:6.1f} s"])
