"""Label-array partitioning (IID / Dirichlet) built on flwr_datasets partitioners."""

from __future__ import annotations

import numpy as np

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

    ``"iid"``: the rows are shuffled with ``seed`` (``IidPartitioner`` itself does not
    shuffle) and cut into ``num_partitions`` contiguous shards whose sizes differ by at
    most one; the shards are disjoint and cover every row.

    ``"dirichlet"``: ``DirichletPartitioner`` splits each label across partitions with
    proportions drawn from Dirichlet(``alpha``), seeded by ``seed``; smaller ``alpha``
    means more label skew. Partitions may be empty (``min_partition_size=0``).

    The result is a pure function of the arguments: same inputs, same indices.
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

    import datasets
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        Partitioner,
    )

    table = datasets.Dataset.from_dict(
        {"label": label_array.tolist(), "index": np.arange(n, dtype=np.int64)}
    ).with_format("arrow")  # arrow columns convert to numpy without per-row Python objects
    part: Partitioner
    if partitioner == "iid":
        table = table.shuffle(seed=seed)
        part = IidPartitioner(num_partitions=int(num_partitions))
    else:
        part = DirichletPartitioner(
            num_partitions=int(num_partitions),
            partition_by="label",
            alpha=float(alpha),
            min_partition_size=0,
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
    part.dataset = table
    selected = part.load_partition(int(partition_id))
    return np.sort(np.asarray(selected["index"], dtype=np.int64))
