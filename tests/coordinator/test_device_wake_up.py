"""Tests for fl_coordinator.device_wake_up: one query per device, answers counted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ConfigRecord, MessageType, RecordDict

from fl_coordinator.device_wake_up import WAKE_UP_GROUP, wake_up_devices


class Reply:
    def __init__(self, src: int, error: bool = False, device_id: str | None = None) -> None:
        self.metadata = type("Metadata", (), {"src_node_id": src})()
        self._error = error
        records = {} if device_id is None else {"device": ConfigRecord({"device-id": device_id})}
        self.content = RecordDict(records)

    def has_error(self) -> bool:
        return self._error


class RecordingGrid:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.sent: list[dict[str, Any]] = []
        self.timeouts: list[float | None] = []

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str
    ) -> dict[str, Any]:
        return {"type": message_type, "dst": dst_node_id, "group": group_id, "content": content}

    def send_and_receive(
        self, messages: Iterable[dict[str, Any]], *, timeout: float | None = None
    ) -> Iterable[Any]:
        self.sent = list(messages)
        self.timeouts.append(timeout)
        return self.replies


def test_every_node_gets_one_query_and_answers_are_counted() -> None:
    grid = RecordingGrid([Reply(11, device_id="dev-a"), Reply(12, error=True), Reply(14)])
    answered = wake_up_devices(grid, [11, 12, 13, 14], timeout_s=7.5)  # type: ignore[arg-type]
    # 12 replied with an error, 13 did not reply in time, 14's ClientApp did not say who it is
    assert answered == {11: "dev-a", 14: ""}
    assert [m["dst"] for m in grid.sent] == [11, 12, 13, 14]
    assert {m["type"] for m in grid.sent} == {MessageType.QUERY}
    assert {m["group"] for m in grid.sent} == {WAKE_UP_GROUP}
    assert grid.sent[0]["content"].config_records["config"]["purpose"] == WAKE_UP_GROUP
    assert grid.timeouts == [7.5]


def test_no_devices_sends_nothing() -> None:
    grid = RecordingGrid([])
    assert wake_up_devices(grid, [], timeout_s=1.0) == {}  # type: ignore[arg-type]
    assert grid.sent == []
