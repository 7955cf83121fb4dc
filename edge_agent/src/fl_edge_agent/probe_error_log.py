"""ProbeErrorLog: turns any failure of a sub-probe into a ProbeError entry instead of a crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fl_shared.capabilities import ProbeError

T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """One line naming the exception type and its message."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class ProbeErrorLog:
    """Collects what could not be read; ``attempt`` runs a sub-probe and never raises."""

    def __init__(self) -> None:
        self.errors: list[ProbeError] = []

    def add(self, what: str, error: str) -> None:
        """Record that ``what`` could not be read because of ``error``."""
        self.errors.append(ProbeError(what=what, error=error))

    def attempt(self, what: str, probe: Callable[[], T], default: T) -> T:
        """Return ``probe()``, or ``default`` after recording the exception it raised."""
        try:
            return probe()
        except Exception as exc:  # noqa: BLE001 - the probe must survive any sub-probe failure
            self.add(what, describe_error(exc))
            return default
