"""Flower Messages for strategy tests: the round's model sent to nodes, and their replies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

NDArrays = dict[str, np.ndarray]


def enter_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower builds messages inside a run; outside one its task identity must be set."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def arrays(values: NDArrays) -> ArrayRecord:
    return ArrayRecord({key: Array(np.asarray(value)) for key, value in values.items()})


def train_message(node_id: int, model: NDArrays) -> Message:
    """What the ServerApp sends ``node_id`` to train."""
    content = RecordDict({"arrays": arrays(model), "config": ConfigRecord({"server-round": 1})})
    return Message(content=content, dst_node_id=node_id, message_type="train")


def reply(
    node_id: int,
    model: NDArrays,
    *,
    examples: int = 10,
    loss: float = 0.5,
    device_id: str | None = None,
    to: Message | None = None,
) -> Message:
    """A device's training reply (from ``node_id``) carrying ``model`` as its new weights."""
    content = RecordDict(
        {
            "arrays": arrays(model),
            "metrics": MetricRecord(
                {"num-examples": examples, "train-loss": loss, "train-seconds": 1.0}
            ),
            "device": ConfigRecord({"device-id": device_id or f"dev-{node_id}"}),
        }
    )
    request = to if to is not None else train_message(node_id, model)
    return Message(content=content, reply_to=request)


def error_reply(node_id: int, model: NDArrays) -> Message:
    """A failed ClientApp's reply."""
    from flwr.app.error import Error

    return Message(Error(code=0, reason="boom"), reply_to=train_message(node_id, model))


def plus(model: NDArrays, delta: float) -> NDArrays:
    """The model with ``delta`` added to every parameter."""
    return {key: value + delta for key, value in model.items()}
