"""Label-array partitioning (IID / Dirichlet label skew) in pure numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fl_shared.catalog import PARTITIONER_NAMES
from fl_shared.errors import UnknownPartitionerError, unknown_name_message

__all__ = ["partition_indices"]


def partition_indices(
    labels: np.ndarray,
    *,
    partitioner: str,
    num_partitions: int,
    partition_id: int,
    alpha: float = 0.5,
    seed: int = 42,
) -> np.ndarray:
    """Return the sorted int64 row indices of partition ``partition_id`` of ``labels``.

    ``"iid"``: the rows are shuffled with a numpy ``Generator`` seeded by ``seed`` and cut
    into ``num_partitions`` contiguous shards whose sizes differ by at most one; the shards
    are disjoint and cover every row.

    ``"dirichlet"``: for each label class, that class's rows are shuffled and split across
    the partitions by proportions drawn from Dirichlet(``alpha``), all seeded by ``seed``;
    smaller ``alpha`` means more label skew. Partitions may be empty.

    The result is a pure function of the arguments: same inputs, same indices. Every call
    computes the same full split and returns one part of it, so the partitions of one
    ``(labels, partitioner, num_partitions, alpha, seed)`` are disjoint and cover every row.
    """
    if partitioner not in PARTITIONER_NAMES:
        raise UnknownPartitionerError(
            unknown_name_message("partitioner", partitioner, PARTITIONER_NAMES)
        )
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int | np.integer):
        raise TypeError(f"num_partitions must be an integer, got {num_partitions!r}")
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    if isinstance(partition_id, bool) or not isinstance(partition_id, int | np.integer):
        raise TypeError(f"partition_id must be an integer, got {partition_id!r}")
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition_id must be in [0, {num_partitions}) for num_partitions="
            f"{num_partitions}, got {partition_id}"
        )
    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {label_array.shape}")
    n = int(label_array.shape[0])
    if num_partitions > n:
        raise ValueError(f"num_partitions ({num_partitions}) exceeds the number of samples ({n})")
    if partitioner == "dirichlet" and not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")

    rng = np.random.default_rng(seed)
    if partitioner == "iid":
        selected = _iid_part(rng, n, int(num_partitions), int(partition_id))
    else:
        selected = _dirichlet_part(
            rng, label_array, int(num_partitions), int(partition_id), float(alpha)
        )
    return np.sort(selected.astype(np.int64, copy=False))


def _iid_part(
    rng: np.random.Generator, n: int, num_partitions: int, partition_id: int
) -> npt.NDArray[np.int64]:
    """Shard ``partition_id`` of a seeded permutation of ``range(n)``.

    The first ``n % num_partitions`` shards hold one row more (``np.array_split``'s sizes).
    """
    order = rng.permutation(n)
    base, extra = divmod(n, num_partitions)
    start = partition_id * base + min(partition_id, extra)
    stop = start + base + (1 if partition_id < extra else 0)
    return np.asarray(order[start:stop], dtype=np.int64)


def _dirichlet_part(
    rng: np.random.Generator,
    labels: np.ndarray,
    num_partitions: int,
    partition_id: int,
    alpha: float,
) -> npt.NDArray[np.int64]:
    """Partition ``partition_id`` of a seeded per-class Dirichlet(``alpha``) split.

    Vectorised over classes, so many distinct labels cost no Python loop: a seeded
    permutation, stably sorted by class, lists each class's rows contiguously in a random
    order; class ``c``'s block is cut at ``floor(cumsum(p_c) * count_c)`` with ``p_c`` one
    row of a seeded ``(classes, num_partitions)`` Dirichlet draw.
    """
    n = int(labels.shape[0])
    class_of = _class_ids(labels)
    counts = np.bincount(class_of)
    permutation = rng.permutation(n)
    # Small unsigned keys let the stable argsort use radix sort.
    keys = class_of.astype(np.uint16) if len(counts) <= 1 << 16 else class_of
    order = permutation[np.argsort(keys[permutation], kind="stable")]  # classes in blocks
    proportions = rng.dirichlet(np.full(num_partitions, alpha), size=len(counts))
    cumulative = np.cumsum(proportions, axis=1)
    cuts = np.floor(cumulative * counts[:, None]).astype(np.int64)
    cuts = np.minimum(cuts, counts[:, None])  # rounding could overshoot the class size
    cuts[:, -1] = counts  # every row lands in some partition
    lower = cuts[:, partition_id - 1] if partition_id > 0 else np.zeros_like(counts)
    lengths = cuts[:, partition_id] - lower
    # Gather this partition's segment of every class block: positions into ``order``.
    segment_start = np.cumsum(counts) - counts + lower
    first = np.cumsum(lengths) - lengths  # where each segment starts in the result
    positions = np.repeat(segment_start - first, lengths) + np.arange(int(lengths.sum()))
    return np.asarray(order[positions], dtype=np.int64)


def _class_ids(labels: np.ndarray) -> npt.NDArray[np.intp]:
    """Each row's class as its rank among the sorted distinct labels (``np.unique``'s inverse).

    Small non-negative integer labels (the usual case) take a bincount path that gives the
    same ids without sorting.
    """
    if labels.dtype.kind in "iub":
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high <= 2 * labels.shape[0] + 1024:
            ids = labels.astype(np.intp)
            present = np.bincount(ids, minlength=high + 1) > 0
            return (np.cumsum(present) - 1)[ids]
    _, inverse = np.unique(labels, return_inverse=True)
    return np.asarray(inverse, dtype=np.intp).reshape(-1)  # numpy 2.0-2.1 keep labels' shape
