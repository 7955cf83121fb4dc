"""`flower-supernode` with shorter polling: a wrapper entry point (issue 3, prototype).

Flower 1.42's SuperNode main loop (``flwr/supernode/start_client_internal.py``) sleeps a fixed
3 s whenever a pull from the SuperLink returns no message, and 0.5 s while it waits for the
ClientApp's reply and for the reply's objects. Neither is configurable, so this wrapper swaps
the ``time`` module *of that one module* for a shim whose ``sleep`` shortens those waits, then
runs Flower's own ``flower_supernode()`` with the unchanged command line:

    python bench/fast_rounds/fast_supernode.py [flower-supernode arguments ...]

Idle polling is adaptive, because every idle poll is one HTTP request to the SuperLink:
for ``FL_SUPERNODE_HOT_WINDOW_S`` (default 60) after the last message the SuperNode polls every
``FL_SUPERNODE_HOT_POLL_S`` (default 0.1); after that every ``FL_SUPERNODE_IDLE_POLL_S``
(default 1.0; Flower's own is 3). Waits for the local ClientApp's reply use
``FL_SUPERNODE_REPLY_POLL_S`` (default 0.02; Flower's 0.5).

The SuperExec that the SuperNode starts (``--isolation subprocess``) reads its own documented
knob ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` (default 1.0 s); this wrapper sets it to 0.05 unless
it is already set. With ``--isolation process`` use ``warm_clientapp.py`` beside this file instead.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

# The literal sleeps in flwr/supernode/start_client_internal.py (flwr 1.42.0).
FLOWER_IDLE_SLEEP_S = 3
FLOWER_REPLY_SLEEP_S = 0.5


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


class FastTime(ModuleType):
    """Stands in for ``time`` inside start_client_internal only; everything but sleep passes."""

    def __init__(
        self,
        *,
        hot_poll_s: float,
        idle_poll_s: float,
        hot_window_s: float,
        reply_poll_s: float,
    ) -> None:
        super().__init__("time")
        self.hot_poll_s = hot_poll_s
        self.idle_poll_s = idle_poll_s
        self.hot_window_s = hot_window_s
        self.reply_poll_s = reply_poll_s
        self.last_message_at = float("-inf")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def message_seen(self) -> None:
        """Called when a message was pulled: poll fast for the next hot_window_s."""
        self.last_message_at = time.monotonic()

    def idle_interval(self) -> float:
        """How long to wait before the next pull when the last one found nothing."""
        hot = time.monotonic() - self.last_message_at < self.hot_window_s
        return self.hot_poll_s if hot else self.idle_poll_s

    def sleep(self, seconds: float) -> None:
        if seconds == FLOWER_IDLE_SLEEP_S:
            time.sleep(self.idle_interval())
        elif seconds == FLOWER_REPLY_SLEEP_S:
            time.sleep(min(seconds, self.reply_poll_s))
        else:
            time.sleep(seconds)


def install() -> FastTime:
    """Patch flwr.supernode.start_client_internal; return the shim (for tests/inspection)."""
    from flwr.supernode import start_client_internal as sci

    shim = FastTime(
        hot_poll_s=_env_float("FL_SUPERNODE_HOT_POLL_S", 0.1),
        idle_poll_s=_env_float("FL_SUPERNODE_IDLE_POLL_S", 1.0),
        hot_window_s=_env_float("FL_SUPERNODE_HOT_WINDOW_S", 60.0),
        reply_poll_s=_env_float("FL_SUPERNODE_REPLY_POLL_S", 0.02),
    )
    original_pull = sci._pull_and_store_message

    def pull_and_store_message(*args: Any, **kwargs: Any) -> int | None:
        run_id = original_pull(*args, **kwargs)
        if run_id is not None:
            shim.message_seen()
        return run_id

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from warm_clientapp import fast_object_pulls

    fast_object_pulls(sci)  # its own pulls of message objects from the SuperLink
    sci.time = shim  # type: ignore[assignment]
    sci._pull_and_store_message = pull_and_store_message
    # Inherited by the flower-superexec child that the SuperNode starts in subprocess mode.
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.05")
    return shim


def main() -> None:
    """Run flower-supernode with the patched polling; argv as for flower-supernode."""
    install()
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
