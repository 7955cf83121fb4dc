"""Local DP on the device: the ClientApp's training replies go through LocalDpMod when asked."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fl_edge_agent import client_app
from fl_shared.datasets import ArrayDataset
from fl_shared.models import create_model
from fl_shared.training import TrainResult

RUN: dict[str, bool | float | int | str] = {
    "registry-run-id": 1,
    "model": "mlp",
    "dataset": "digits",
    "partitioner": "iid",
    "dirichlet-alpha": 0.5,
    "seed": 1,
    "max-train-samples": 0,
    "local-epochs": 1,
    "batch-size": 8,
    "learning-rate": 0.1,
}
LOCAL_DP: dict[str, bool | float | int | str] = {
    "privacy": "local",
    "dp-clipping-norm": 0.5,
    "dp-sensitivity": 1.0,
    "dp-epsilon": 2.0,
    "dp-delta": 1e-5,
}


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


@pytest.fixture
def big_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training adds 1.0 to every weight, on no data (no dataset is read)."""

    def train(model: torch.nn.Module, _data: Any, **_kwargs: Any) -> TrainResult:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
        return TrainResult(loss=0.1, accuracy=0.5, num_examples=8, seconds=0.01)

    empty = ArrayDataset(images=np.zeros((0, 1, 8, 8), np.float32), labels=np.zeros(0, np.int64))
    monkeypatch.setattr(client_app, "train", train)
    monkeypatch.setattr(client_app, "local_data", lambda _context, _split: empty)


def _train(run_config: dict[str, bool | float | int | str]) -> tuple[dict, dict]:
    torch.manual_seed(0)
    sent = create_model("mlp", 10).state_dict()
    content = RecordDict({"arrays": ArrayRecord(sent), "config": ConfigRecord({"server-round": 1})})
    msg = Message(content=content, dst_node_id=1, message_type="train")
    context = Context(1, 1, {}, RecordDict(), run_config)
    answer = client_app.app(msg, context)
    assert not answer.has_error(), answer.error if answer.has_error() else ""
    got = answer.content.array_records["arrays"].to_torch_state_dict()
    return sent, got


def _update_norm(sent: dict, got: dict) -> float:
    return math.sqrt(sum(float(((got[k] - sent[k]) ** 2).sum()) for k in sent))


def test_without_local_dp_the_update_leaves_as_trained(big_step: None) -> None:
    sent, got = _train(RUN)
    for key in sent:
        if sent[key].dtype.is_floating_point:
            torch.testing.assert_close(got[key], sent[key] + 1.0)


def test_with_local_dp_the_update_is_clipped_and_noised(big_step: None) -> None:
    # Noise std = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon; with it zeroed the clipping
    # shows alone, then the noise shows as its std.
    sent, got = _train({**RUN, **LOCAL_DP, "dp-epsilon": 1e12})
    assert _update_norm(sent, got) == pytest.approx(0.5, rel=1e-4)
    np.random.seed(0)
    sent, got = _train({**RUN, **LOCAL_DP})
    residual = torch.cat([(got[k] - sent[k]).flatten() for k in sent])
    expected_std = 1.0 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 2.0
    assert float(residual.std()) == pytest.approx(expected_std, rel=0.05)


def test_local_dp_leaves_evaluation_alone(big_step: None) -> None:
    torch.manual_seed(0)
    content = RecordDict(
        {"arrays": ArrayRecord(create_model("mlp", 10).state_dict()), "config": ConfigRecord({})}
    )
    msg = Message(content=content, dst_node_id=1, message_type="evaluate")
    answer = client_app.app(msg, Context(1, 1, {}, RecordDict(), {**RUN, **LOCAL_DP}))
    assert not answer.has_error()  # LocalDpMod on an evaluate reply would be an error reply
