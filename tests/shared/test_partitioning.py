"""Tests for fl_shared.partitioning: IID cover, determinism, Dirichlet skew, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fl_shared.catalog import PARTITIONER_NAMES
from fl_shared.errors import UnknownPartitionerError
from fl_shared.partitioning import partition_indices

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    # Balanced labels in a scrambled order, like a real classification dataset.
    rng = np.random.default_rng(123)
    return rng.permutation(np.arange(6000) % NUM_CLASSES).astype(np.int64)


def _all_partitions(
    labels: np.ndarray,
    num_partitions: int,
    *,
    partitioner: str,
    alpha: float = 0.5,
    seed: int = 42,
) -> list[np.ndarray]:
    return [
        partition_indices(
            labels,
            partitioner=partitioner,
            num_partitions=num_partitions,
            partition_id=pid,
            alpha=alpha,
            seed=seed,
        )
        for pid in range(num_partitions)
    ]


def _dominant_share(labels: np.ndarray, part: np.ndarray) -> float:
    return float(np.bincount(labels[part], minlength=NUM_CLASSES).max() / len(part))


def test_iid_partitions_are_disjoint_cover_and_balanced() -> None:
    labels = np.arange(1003) % NUM_CLASSES
    parts = _all_partitions(labels, 7, partitioner="iid")
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == 1003
    combined = np.concatenate(parts)
    assert len(np.unique(combined)) == 1003
    np.testing.assert_array_equal(np.sort(combined), np.arange(1003))
    for part in parts:
        assert part.dtype == np.int64
        np.testing.assert_array_equal(part, np.sort(part))


def test_iid_is_shuffled_not_contiguous(labels: np.ndarray) -> None:
    part = partition_indices(labels, partitioner="iid", num_partitions=4, partition_id=0)
    # A contiguous shard would be 0..1499; a shuffled one spans the whole range.
    assert part.min() < 100
    assert part.max() > 5900
    assert _dominant_share(labels, part) < 0.15


@pytest.mark.parametrize("partitioner", PARTITIONER_NAMES)
def test_same_seed_same_partition_different_seed_differs(
    labels: np.ndarray, partitioner: str
) -> None:
    first, again, other = (
        partition_indices(
            labels,
            partitioner=partitioner,
            num_partitions=5,
            partition_id=2,
            seed=seed,
        )
        for seed in (7, 7, 8)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dirichlet_small_alpha_is_skewed(labels: np.ndarray) -> None:
    parts = _all_partitions(labels, 10, partitioner="dirichlet", alpha=0.1, seed=42)
    combined = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(combined), np.arange(len(labels)))
    non_empty = [p for p in parts if len(p) > 0]
    shares = [_dominant_share(labels, p) for p in non_empty]
    # IID partitions have a dominant-label share of ~0.1; alpha=0.1 concentrates labels.
    assert float(np.mean(shares)) > 0.4
    sizes = [len(p) for p in parts]
    assert max(sizes) > 2 * min(sizes)


def test_dirichlet_large_alpha_is_near_uniform(labels: np.ndarray) -> None:
    parts = _all_partitions(labels, 10, partitioner="dirichlet", alpha=1000.0, seed=42)
    for part in parts:
        assert abs(len(part) - 600) < 60
        assert _dominant_share(labels, part) < 0.15


def test_dirichlet_supports_string_labels() -> None:
    labels = np.array(["cat", "dog", "cow"] * 50)
    parts = _all_partitions(labels, 3, partitioner="dirichlet", alpha=1.0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(150))


@pytest.mark.parametrize("partition_id", [-1, 4, 10])
def test_bad_partition_id_rejected(labels: np.ndarray, partition_id: int) -> None:
    with pytest.raises(ValueError, match="partition_id"):
        partition_indices(labels, partitioner="iid", num_partitions=4, partition_id=partition_id)


def test_bad_num_partitions_rejected(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        partition_indices(labels, partitioner="iid", num_partitions=0, partition_id=0)
    with pytest.raises(ValueError, match="num_partitions"):
        partition_indices(labels[:3], partitioner="iid", num_partitions=4, partition_id=0)


def test_bad_alpha_rejected(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="alpha"):
        partition_indices(
            labels, partitioner="dirichlet", num_partitions=4, partition_id=0, alpha=0.0
        )


def test_unknown_partitioner_lists_valid_names(labels: np.ndarray) -> None:
    with pytest.raises(UnknownPartitionerError) as excinfo:
        partition_indices(labels, partitioner="shard", num_partitions=2, partition_id=0)
    for valid in PARTITIONER_NAMES:
        assert valid in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
