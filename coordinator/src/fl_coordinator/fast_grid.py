"""FastGrid: the ServerApp's Grid, with replies pulled every 0.1 s instead of every 3 s.

Flower 1.42's ``HttpGrid.send_and_receive`` (``flwr/superlink/grid/http_grid.py``) pushes the
messages, then pulls replies with a fixed 3 s sleep between pulls, so a round waits 1.5 s on
average after its last reply arrived; its object pulls back off 1 s, 2 s, ... ``Strategy.start``
only calls ``grid.get_node_ids()`` and ``grid.send_and_receive(...)``, so our ServerApp hands
it this wrapper. A pull is one request to the SuperLink on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run

DEFAULT_POLL_S = 0.1


def _patch_grid_object_pulls() -> None:
    from flwr.superlink.grid import http_grid

    from fl_shared.flower_polling import fast_object_pulls

    fast_object_pulls(http_grid)


class FastGrid(Grid):
    """Wraps a Grid; same API, short reply polling; everything else is the wrapped grid's."""

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
        self._clock = clock
        self._sleep = sleep
        self._allowed: set[int] | None = None
        self._quorum: int | None = None
        # Seconds from the push to each reply of the last send_and_receive, by node id.
        self.reply_seconds: dict[int, float] = {}
        _patch_grid_object_pulls()

    @property
    def wrapped(self) -> Grid:
        """The Grid this wraps."""
        return self._grid

    def set_run(self, run: Run) -> None:
        """Set the run (on the wrapped grid)."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Create a message (on the wrapped grid)."""
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def restrict_to(self, node_ids: Iterable[int]) -> None:
        """From now on only these nodes count as online (the run's eligible devices)."""
        self._allowed = set(node_ids)

    def get_node_ids(self) -> Iterable[int]:
        """Node ids of the online nodes (from the wrapped grid; only allowed ones, if set)."""
        ids = self._grid.get_node_ids()
        return ids if self._allowed is None else [n for n in ids if n in self._allowed]

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Node information (from the wrapped grid; only allowed nodes, if set)."""
        nodes = self._grid.get_nodes()
        return nodes if self._allowed is None else [n for n in nodes if n.node_id in self._allowed]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push messages (through the wrapped grid)."""
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull replies (through the wrapped grid)."""
        return self._grid.pull_messages(message_ids)

    def expect_replies(self, quorum: int) -> None:
        """Let the next send_and_receive return once ``quorum`` replies came (over-commit)."""
        self._quorum = quorum

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``, then pull replies every poll_s until all came or timeout passed.

        The contract of Grid.send_and_receive: the replies that came in time (messages whose
        push failed are not waited for). After ``expect_replies(k)`` this call returns as
        soon as ``k`` replies without an error came: the round stops waiting for the rest.
        """
        quorum, self._quorum = self._quorum, None
        started = self._clock()
        pending = {mid for mid in self._grid.push_messages(messages) if mid}
        replies: list[Message] = []
        self.reply_seconds = {}
        deadline = None if timeout is None else started + timeout
        while pending:
            got = list(self._grid.pull_messages(pending))
            now = self._clock()
            for reply in got:
                self.reply_seconds[int(reply.metadata.src_node_id)] = now - started
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and now >= deadline):
                break
            if quorum is not None and sum(not m.has_error() for m in replies) >= quorum:
                break
            self._sleep(self.poll_s)
        return replies
