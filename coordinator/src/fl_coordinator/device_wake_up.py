"""Wake the run's devices before round 1: one small query message each, replies awaited briefly.

An idle SuperNode asks the SuperLink for work only every few seconds, and a device's
ClientApp loads a run's app on its first message. Sending every device a query first moves
both costs out of round 1, and tells the ServerApp which devices answer at all.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from flwr.app import ConfigRecord, MessageType, RecordDict
from flwr.serverapp import Grid

log = structlog.get_logger(__name__)

WAKE_UP_GROUP = "wake-up"


def wake_up_devices(grid: Grid, node_ids: Iterable[int], timeout_s: float) -> dict[int, str]:
    """Send each node a wake-up query; return {node id: device id} of those that answered.

    Our ClientApp answers with its device id (node config ``device-id``); a device whose
    ClientApp does not say is mapped to "".
    """
    messages = [
        grid.create_message(
            RecordDict({"config": ConfigRecord({"purpose": WAKE_UP_GROUP})}),
            MessageType.QUERY,
            node_id,
            WAKE_UP_GROUP,
        )
        for node_id in node_ids
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout_s))
    answered = {
        int(m.metadata.src_node_id): str(
            m.content.config_records.get("device", ConfigRecord()).get("device-id", "")
        )
        for m in replies
        if not m.has_error()
    }
    log.info(
        "devices_woken",
        asked=len(messages),
        answered=len(answered),
        failed=len(replies) - len(answered),
        timeout_s=timeout_s,
    )
    return answered
