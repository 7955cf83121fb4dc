"""RestartSchedule: when a supervised child that exited (or hung) is started again."""

from __future__ import annotations

from collections.abc import Callable

from fl_shared.backoff import Backoff

HEALTHY_AFTER_S = 60.0


class RestartSchedule:
    """Exponential backoff between restarts; a child that ran a healthy minute resets it."""

    def __init__(self, clock: Callable[[], float], backoff: Backoff | None = None) -> None:
        self._clock = clock
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self.restart_at: float | None = None
        self.restarts = 0
        self.started_at = 0.0

    def started(self) -> None:
        """The child was (re)started now."""
        self.started_at = self._clock()

    def still_running(self, now: float) -> None:
        """The child runs: long enough counts as healthy, and the backoff starts over."""
        if now - self.started_at > HEALTHY_AFTER_S:
            self.backoff.reset()

    def schedule(self, now: float) -> float:
        """The child is gone: plan its restart after the next backoff step; returns the wait."""
        wait = self.backoff.next_wait()
        self.restart_at = now + wait
        return wait

    def due(self, now: float) -> bool:
        """True (once, counting the restart) when a planned restart should happen now."""
        if self.restart_at is None or now < self.restart_at:
            return False
        self.restart_at = None
        self.restarts += 1
        return True

    def cancel(self) -> None:
        """Forget a planned restart (the owner stops the child)."""
        self.restart_at = None
