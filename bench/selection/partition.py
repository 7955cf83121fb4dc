"""Label-skewed partitions with lognormal sizes: Dirichlet(alpha) class mix per device.

``fl_shared.partitioning`` splits each label across partitions, so its partition sizes follow
from the Dirichlet draws; FedScale-style fleets need heavy-tailed data sizes of their own,
hence this partitioner. Per device: a size ``n_i`` (lognormal, sigma ``size_sigma``, scaled so
that the sizes add up to ``total`` and clipped at ``min_size``), a class mix ``q_i`` drawn from
Dirichlet(alpha, ..., alpha), and ``n_i`` examples with class counts ~ Multinomial(n_i, q_i),
drawn without replacement from each class's pool: no example sits on two devices. When a
class has run out, the device's remaining examples come from the classes left, in proportion
to its mix (``moved`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Partition:
    """Row indices per device into the training set."""

    indices: list[np.ndarray]
    moved: int  # examples taken from another class than the mix said, as theirs had run out

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray([len(i) for i in self.indices], dtype=np.int64)


def lognormal_dirichlet(
    labels: np.ndarray,
    *,
    num_devices: int,
    alpha: float,
    seed: int,
    total: int,
    size_sigma: float = 1.0,
    min_size: int = 16,
) -> Partition:
    """Split ``labels``' rows over ``num_devices`` devices (see the module docstring)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0xDA7A])
    raw = np.exp(size_sigma * rng.standard_normal(num_devices))
    sizes = np.maximum(np.round(raw / raw.sum() * total).astype(np.int64), min_size)
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    left = np.asarray([len(p) for p in pools], dtype=np.int64)  # unassigned rows per class
    if sizes.sum() > left.sum():
        raise ValueError(f"{sizes.sum()} examples asked for, only {left.sum()} rows exist")
    moved = 0
    indices = []
    for size in sizes:
        mix = rng.dirichlet(np.full(len(classes), alpha))
        counts = rng.multinomial(int(size), mix)
        short = int(np.maximum(counts - left, 0).sum())
        moved += short
        while short:  # some classes ran out: the rest comes from those left, by the same mix
            counts = np.minimum(counts, left)
            room = left - counts
            weights = np.where(room > 0, mix + 1e-12, 0.0)
            extra = rng.multinomial(short, weights / weights.sum())
            counts += np.minimum(extra, room)
            short = int(np.maximum(extra - room, 0).sum())
        rows = []
        for k, count in enumerate(counts):
            start = len(pools[k]) - left[k]
            rows.append(pools[k][start : start + count])
            left[k] -= count
        indices.append(np.sort(np.concatenate(rows)))
    return Partition(indices=indices, moved=moved)
