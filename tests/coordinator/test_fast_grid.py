"""Tests for fl_coordinator.fast_grid: replies polled every poll_s, timeouts, delegation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.supercore.run import Run

from fl_coordinator.fast_grid import FastGrid


class Reply:
    def __init__(self, reply_to: str, error: bool = False) -> None:
        node = 100 + ord(reply_to[0])  # one node per message
        fields = {"reply_to_message_id": reply_to, "src_node_id": node}
        self.metadata = type("Metadata", (), fields)()
        self.error = error

    def has_error(self) -> bool:
        return self.error


class ScriptedGrid:
    """Stands in for Flower's HttpGrid: replies arrive on the pulls named in ``script``."""

    def __init__(self, push_ids: list[str], script: dict[int, list[str]]) -> None:
        self.push_ids = push_ids
        self.script = script
        self.pulls: list[set[str]] = []
        self.calls: list[str] = []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        list(messages)
        return self.push_ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
        self.pulls.append(set(message_ids))
        return [Reply(mid) for mid in self.script.get(len(self.pulls), [])]

    def get_node_ids(self) -> Iterable[int]:
        self.calls.append("get_node_ids")
        return [11, 12]

    def get_nodes(self) -> Iterable[Any]:
        return [NodeInfo(node_id=n) for n in self.get_node_ids()]

    def create_message(self, *args: Any) -> Any:
        self.calls.append(f"create_message{args[1:]}")
        return "message"

    def set_run(self, run: Run) -> None:
        self.calls.append("set_run")

    @property
    def run(self) -> str:
        return "the run"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _grid(inner: ScriptedGrid, t: FakeTime) -> FastGrid:
    return FastGrid(inner, poll_s=0.1, clock=t.clock, sleep=t.sleep)  # type: ignore[arg-type]


def test_pulls_every_poll_until_all_replies_came() -> None:
    inner = ScriptedGrid(["a", "b"], {1: ["a"], 4: ["b"]})
    t = FakeTime()
    replies = list(_grid(inner, t).send_and_receive([], timeout=30))
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b"]
    assert inner.pulls == [{"a", "b"}, {"b"}, {"b"}, {"b"}]
    assert t.sleeps == [0.1, 0.1, 0.1]  # Flower's HttpGrid sleeps 3 s between pulls


def test_gives_up_at_the_timeout_with_the_replies_so_far() -> None:
    inner = ScriptedGrid(["a", "b"], {2: ["a"]})
    t = FakeTime()
    replies = list(_grid(inner, t).send_and_receive([], timeout=0.95))
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert 0.95 <= t.now < 1.1
    assert len(inner.pulls) == 11


def test_messages_whose_push_failed_are_not_waited_for() -> None:
    inner = ScriptedGrid(["a", ""], {1: ["a"]})
    t = FakeTime()
    assert len(list(_grid(inner, t).send_and_receive([], timeout=None))) == 1
    assert t.sleeps == []


def test_everything_else_is_the_wrapped_grids() -> None:
    inner = ScriptedGrid([], {})
    grid = _grid(inner, FakeTime())
    assert list(grid.get_node_ids()) == [11, 12]
    assert [n.node_id for n in grid.get_nodes()] == [11, 12]
    assert grid.run == "the run"  # type: ignore[comparison-overlap]
    grid.set_run(Run.create_empty(run_id=3))
    assert grid.create_message(RecordDict(), "train", 11, "1") == "message"  # type: ignore[comparison-overlap]
    assert grid.wrapped is inner  # type: ignore[comparison-overlap]
    assert "set_run" in inner.calls and "create_message('train', 11, '1', None)" in inner.calls


def test_a_restricted_grid_only_sees_the_allowed_nodes() -> None:
    inner = ScriptedGrid([], {})
    grid = _grid(inner, FakeTime())
    grid.restrict_to([12, 99])
    assert list(grid.get_node_ids()) == [12]
    assert [n.node_id for n in grid.get_nodes()] == [12]


def test_over_commit_returns_once_the_quorum_of_good_replies_came() -> None:
    # "a" fails, "b" and "c" succeed on later pulls, "d" never comes.
    inner = ScriptedGrid(["a", "b", "c", "d"], {1: ["b"], 2: ["c"], 3: ["d"]})
    t = FakeTime()
    grid = _grid(inner, t)
    grid.expect_replies(2)
    replies = list(grid.send_and_receive([], timeout=30))
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["b", "c"]
    assert len(inner.pulls) == 2  # it stopped waiting for "a" and "d"
    assert grid.reply_seconds == {100 + ord("b"): 0.0, 100 + ord("c"): 0.1}
    # The quorum is for one call: the next one waits for every reply (until the timeout).
    inner.pulls.clear()
    replies = list(grid.send_and_receive([], timeout=30))
    assert len(replies) == 3 and len(inner.pulls) > 3


def test_replies_with_errors_do_not_count_towards_the_quorum() -> None:
    inner = ScriptedGrid(["a", "b"], {1: ["a"], 2: ["b"]})
    inner.pull_messages = lambda ids: (  # type: ignore[method-assign]
        inner.pulls.append(set(ids))
        or [Reply(m, error=m == "a") for m in inner.script.get(len(inner.pulls), [])]
    )
    t = FakeTime()
    grid = _grid(inner, t)
    grid.expect_replies(1)
    replies = list(grid.send_and_receive([], timeout=30))
    assert [r.has_error() for r in replies] == [True, False]
