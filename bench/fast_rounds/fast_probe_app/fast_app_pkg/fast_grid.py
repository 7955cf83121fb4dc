"""FastGrid: a Grid wrapper whose send_and_receive polls for replies every 0.1 s (issue 3).

Flower 1.42's ``HttpGrid.send_and_receive`` (``flwr/superlink/grid/http_grid.py``) pushes the
messages, then pulls the replies and sleeps a fixed 3 s between pulls, so every round waits up
to 3 s (1.5 s on average) after the last reply arrived. ``Strategy.start(grid=...)`` only calls
``grid.get_node_ids()`` and ``grid.send_and_receive(...)``, so the ServerApp can hand it this
wrapper instead:

    strategy.start(grid=FastGrid(grid), ...)

Everything except ``send_and_receive`` is delegated to the wrapped grid. A pull is one local
HTTP request from the ServerApp to its SuperLink (127.0.0.1), so 10 per second are cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

DEFAULT_POLL_S = 0.1


def _fast_object_pulls(initial_backoff_s: float = 0.02, cap_s: float = 0.5) -> None:
    """HttpGrid.pull_messages retries an object that is not there yet after 1 s, 2 s, ...

    (flwr/supercore/constant.py PULL_INITIAL_BACKOFF=1); make that 20 ms, capped at 0.5 s, in
    this (ServerApp) process only.
    """
    from flwr.superlink.grid import http_grid

    original = http_grid.pull_objects
    if getattr(original, "_fast", False):
        return

    def pull_objects(*args: Any, **kwargs: Any) -> Any:
        kwargs["initial_backoff"] = min(kwargs.get("initial_backoff", 1.0), initial_backoff_s)
        kwargs["backoff_cap"] = min(kwargs.get("backoff_cap", 10.0), cap_s)
        return original(*args, **kwargs)

    pull_objects._fast = True  # type: ignore[attr-defined]
    http_grid.pull_objects = pull_objects


class FastGrid:
    """Wraps a Grid; same API, shorter reply polling."""

    def __init__(
        self,
        grid: Grid,
        poll_s: float = DEFAULT_POLL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._grid = grid
        self.poll_s = poll_s
        _fast_object_pulls()
        self._clock = clock
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    @property
    def wrapped(self) -> Grid:
        """The Grid this wraps."""
        return self._grid

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``, then pull replies every poll_s until all came or timeout passed.

        Same contract as Grid.send_and_receive: returns the replies received in time (messages
        whose push failed are not waited for).
        """
        pending = {mid for mid in self._grid.push_messages(messages) if mid}
        replies: list[Message] = []
        deadline = None if timeout is None else self._clock() + timeout
        while pending:
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and self._clock() >= deadline):
                break
            self._sleep(self.poll_s)
        return replies
