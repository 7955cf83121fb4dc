"""Mlp: a 784-128-10 ReLU network in numpy, its local SGD training and FedAvg.

numpy rather than torch because a local round is ~10 SGD steps of batch 32 on a tiny model,
where torch's per-call overhead is twice numpy's run time (measured on 2 CPU cores); the
benchmark trains tens of thousands of such rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HIDDEN = 128
CLASSES = 10


@dataclass(frozen=True)
class Mlp:
    """Parameters of the network (float32)."""

    w1: np.ndarray  # (784, HIDDEN)
    b1: np.ndarray
    w2: np.ndarray  # (HIDDEN, CLASSES)
    b2: np.ndarray

    @classmethod
    def initial(cls, seed: int, inputs: int = 784) -> Mlp:
        """He-uniform weights (as torch's nn.Linear draws them), zero biases."""
        rng = np.random.default_rng([seed, 0x313])
        bound1, bound2 = 1 / np.sqrt(inputs), 1 / np.sqrt(HIDDEN)
        return cls(
            w1=rng.uniform(-bound1, bound1, (inputs, HIDDEN)).astype(np.float32),
            b1=np.zeros(HIDDEN, np.float32),
            w2=rng.uniform(-bound2, bound2, (HIDDEN, CLASSES)).astype(np.float32),
            b2=np.zeros(CLASSES, np.float32),
        )

    @property
    def num_bytes(self) -> int:
        """Bytes of the parameters as sent over the wire (float32)."""
        return sum(p.nbytes for p in (self.w1, self.b1, self.w2, self.b2))

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.w1 + self.b1, 0) @ self.w2 + self.b2

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Share of ``x`` classified as ``y``."""
        return float(np.mean(np.argmax(self.logits(x), axis=1) == y))

    def train_epoch(
        self, x: np.ndarray, y: np.ndarray, *, lr: float, batch_size: int, rng: np.random.Generator
    ) -> tuple[Mlp, float]:
        """One local epoch of plain SGD on softmax cross-entropy, shuffled by ``rng``.

        Returns the new parameters and ``loss_rms``: sqrt of the mean squared per-example loss
        over the epoch, each loss as computed in its batch's forward pass (Oort's utility).
        """
        w1, b1, w2, b2 = self.w1.copy(), self.b1.copy(), self.w2.copy(), self.b2.copy()
        order = rng.permutation(len(y))
        squares = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            xb, yb = x[rows], y[rows]
            pre = xb @ w1 + b1
            hidden = np.maximum(pre, 0)
            z = hidden @ w2 + b2
            z -= z.max(axis=1, keepdims=True)
            exp = np.exp(z)
            total = exp.sum(axis=1, keepdims=True)
            picked = np.arange(len(yb))
            losses = np.log(total[:, 0]) - z[picked, yb]
            squares += float(np.dot(losses, losses))
            grad = exp / total
            grad[picked, yb] -= 1
            grad /= len(yb)
            grad_hidden = grad @ w2.T
            grad_hidden[pre <= 0] = 0
            w2 -= lr * (hidden.T @ grad)
            b2 -= lr * grad.sum(axis=0)
            w1 -= lr * (xb.T @ grad_hidden)
            b1 -= lr * grad_hidden.sum(axis=0)
        loss_rms = float(np.sqrt(squares / max(len(y), 1)))
        return Mlp(w1, b1, w2, b2), loss_rms


def fedavg(models: Sequence[Mlp], weights: Sequence[float]) -> Mlp:
    """The weighted mean of ``models`` (FedAvg, weights = examples)."""
    share = np.asarray(weights, dtype=np.float64)
    share = (share / share.sum()).astype(np.float32)

    def mean(name: str) -> np.ndarray:
        return sum(s * getattr(m, name) for s, m in zip(share, models, strict=True))

    return Mlp(mean("w1"), mean("b1"), mean("w2"), mean("b2"))
