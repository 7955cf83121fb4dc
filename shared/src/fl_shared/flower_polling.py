"""Shorter waits inside Flower 1.42's SuperNode and object pulls (the fast-rounds patches).

Flower's SuperNode main loop (``flwr/supernode/start_client_internal.py``) sleeps a literal 3 s
after every pull from the SuperLink that found no message and 0.5 s while it waits for the
ClientApp's reply; its object pulls (``flwr/supercore/inflatable/inflatable_utils.py``) retry
an object that is not there yet after 1 s, 2 s, ... None of it is configurable. The functions
here swap those waits, in the one process that calls them, for adaptive ones:

- idle pulls: every ``hot_poll_s`` for ``hot_window_s`` after the last message (a run is
  going on), Flower's own 3 s otherwise, so an idle fleet loads the SuperLink as before;
- reply waits: ``reply_poll_s`` (a local check, no network);
- object pulls: first retry after 20 ms, capped at 0.5 s.

Each patch checks that the Flower source still has the shape it was written for; if not it
logs ``flower_patch_skipped`` and leaves Flower unchanged (slower, never wrong).
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# The literal sleeps in flwr/supernode/start_client_internal.py (flwr 1.42).
FLOWER_IDLE_SLEEP_S = 3
FLOWER_REPLY_SLEEP_S = 0.5
FAST_PULL_BACKOFF_S = 0.02
FAST_PULL_BACKOFF_CAP_S = 0.5


@dataclass(frozen=True)
class PollSettings:
    """How the patched SuperNode waits."""

    hot_poll_s: float = 0.1
    hot_window_s: float = 60.0
    idle_poll_s: float = float(FLOWER_IDLE_SLEEP_S)
    reply_poll_s: float = 0.02


class AdaptiveTime(ModuleType):
    """Stands in for ``time`` inside one Flower module; only ``sleep`` behaves differently."""

    def __init__(self, settings: PollSettings) -> None:
        super().__init__("time")
        self.settings = settings
        self.last_message_at = float("-inf")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def message_seen(self) -> None:
        """A message was pulled: poll fast for the next hot window."""
        self.last_message_at = time.monotonic()

    def idle_interval(self) -> float:
        """How long to wait before the next pull after one that found nothing."""
        hot = time.monotonic() - self.last_message_at < self.settings.hot_window_s
        return self.settings.hot_poll_s if hot else self.settings.idle_poll_s

    def sleep(self, seconds: float) -> None:
        """Flower's fixed waits become adaptive ones; any other sleep is unchanged."""
        if seconds == FLOWER_IDLE_SLEEP_S:
            time.sleep(self.idle_interval())
        elif seconds == FLOWER_REPLY_SLEEP_S:
            time.sleep(min(seconds, self.settings.reply_poll_s))
        else:
            time.sleep(seconds)


def _source_has(module: ModuleType, *needles: str) -> bool:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    return all(needle in source for needle in needles)


def fast_object_pulls(module: ModuleType, *, max_tries_per_object: int | None = None) -> bool:
    """Make ``module.pull_objects`` retry a missing object after 20 ms instead of 1 s.

    ``max_tries_per_object`` (at most 0.5 s apart) bounds how long one missing object is
    waited for; Flower's own limit is 500 tries within 2 h.
    """
    original = getattr(module, "pull_objects", None)
    if getattr(original, "fl_fast", False):
        return True
    if original is None or "initial_backoff" not in inspect.signature(original).parameters:
        log.warning("flower_patch_skipped", patch="object_pulls", module=module.__name__)
        return False

    @functools.wraps(original)
    def pull_objects(*args: Any, **kwargs: Any) -> Any:
        kwargs["initial_backoff"] = min(kwargs.get("initial_backoff", 1.0), FAST_PULL_BACKOFF_S)
        kwargs["backoff_cap"] = min(kwargs.get("backoff_cap", 10.0), FAST_PULL_BACKOFF_CAP_S)
        if max_tries_per_object is not None:
            kwargs["max_tries_per_object"] = max_tries_per_object
        return original(*args, **kwargs)

    pull_objects.fl_fast = True  # type: ignore[attr-defined]
    module.pull_objects = pull_objects  # type: ignore[attr-defined]
    return True


def patch_supernode(settings: PollSettings) -> AdaptiveTime | None:
    """Patch the SuperNode main loop in this process; None when Flower's code has changed."""
    from flwr.supernode import start_client_internal as sci

    fast_object_pulls(sci)
    if not (
        _source_has(
            sci, f"time.sleep({FLOWER_IDLE_SLEEP_S})", f"time.sleep({FLOWER_REPLY_SLEEP_S})"
        )
        and hasattr(sci, "_pull_and_store_message")
    ):
        log.warning("flower_patch_skipped", patch="supernode_polling", module=sci.__name__)
        return None
    shim = AdaptiveTime(settings)
    original_pull = sci._pull_and_store_message

    def pull_and_store_message(*args: Any, **kwargs: Any) -> int | None:
        run_id = original_pull(*args, **kwargs)
        if run_id is not None:
            shim.message_seen()
        return run_id

    sci.time = shim
    sci._pull_and_store_message = pull_and_store_message
    return shim
