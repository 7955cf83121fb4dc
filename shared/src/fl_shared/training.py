"""Local training and evaluation loops (SGD, NLL loss) over an ArrayDataset."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fl_shared.datasets import ArrayDataset

__all__ = ["EvalResult", "TrainResult", "evaluate", "train"]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``train``: loss/accuracy averaged over the last epoch's batches."""

    loss: float
    accuracy: float
    num_examples: int
    seconds: float
    # sqrt(mean squared per-example loss) over the last epoch: Oort's statistical utility.
    loss_rms: float = 0.0


@dataclass(frozen=True)
class EvalResult:
    """Outcome of ``evaluate``: mean loss and accuracy over the whole dataset."""

    loss: float
    accuracy: float
    num_examples: int


def _check_positive(**values: int) -> None:
    for field, value in values.items():
        if value < 1:
            raise ValueError(f"{field} must be >= 1, got {value}")


def train(
    model: nn.Module,
    data: ArrayDataset,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    max_samples: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> TrainResult:
    """Train ``model`` in place: SGD (momentum 0.9) on NLL loss of its log-probs.

    If ``max_samples`` is smaller than ``data``, a random subset of that size (drawn
    with ``seed``; vary it per round to see different samples) is used for every epoch.
    Batch order is shuffled each epoch by a generator seeded with ``seed``. An empty
    dataset trains nothing and reports zeros with ``num_examples=0``.
    """
    _check_positive(epochs=epochs, batch_size=batch_size)
    if max_samples is not None:
        _check_positive(max_samples=max_samples)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    if max_samples is not None and max_samples < len(data):
        chosen = torch.randperm(len(data), generator=generator)[:max_samples]
        images, labels = images[chosen], labels[chosen]
    num_examples = int(labels.shape[0])
    if num_examples == 0:
        return TrainResult(0.0, 0.0, 0, time.perf_counter() - start)

    model.to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
    loss_sum, square_sum, correct = 0.0, 0.0, 0
    for _ in range(epochs):
        loss_sum, square_sum, correct = 0.0, 0.0, 0
        order = torch.randperm(num_examples, generator=generator)
        for begin in range(0, num_examples, batch_size):
            batch = order[begin : begin + batch_size]
            x = images[batch].to(device)
            y = labels[batch].to(device)
            optimizer.zero_grad()
            log_probs = model(x)
            per_example = F.nll_loss(log_probs, y, reduction="none")
            loss = per_example.mean()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.item()) * int(y.shape[0])
            square_sum += float(per_example.detach().square().sum().item())
            correct += int((log_probs.argmax(dim=1) == y).sum().item())
    return TrainResult(
        loss=loss_sum / num_examples,
        accuracy=correct / num_examples,
        num_examples=num_examples,
        seconds=time.perf_counter() - start,
        loss_rms=math.sqrt(square_sum / num_examples),
    )


def evaluate(
    model: nn.Module,
    data: ArrayDataset,
    *,
    batch_size: int = 256,
    device: str = "cpu",
) -> EvalResult:
    """Mean NLL loss and accuracy of ``model`` on ``data`` (eval mode, no gradients).

    An empty dataset reports zeros with ``num_examples=0``.
    """
    _check_positive(batch_size=batch_size)
    num_examples = len(data)
    if num_examples == 0:
        return EvalResult(0.0, 0.0, 0)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    model.to(device)
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for begin in range(0, num_examples, batch_size):
            x = images[begin : begin + batch_size].to(device)
            y = labels[begin : begin + batch_size].to(device)
            log_probs = model(x)
            loss_sum += float(F.nll_loss(log_probs, y, reduction="sum").item())
            correct += int((log_probs.argmax(dim=1) == y).sum().item())
    return EvalResult(
        loss=loss_sum / num_examples,
        accuracy=correct / num_examples,
        num_examples=num_examples,
    )
