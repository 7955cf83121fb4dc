"""Tests for fl_shared.partitioning: cover, determinism, Dirichlet skew, speed, errors."""

from __future__ import annotations

import subprocess
import sys

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


def _label_distance(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance of the non-empty partitions' label mix to the global one."""
    overall = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    distances = [
        0.5 * float(np.abs(np.bincount(labels[p], minlength=NUM_CLASSES) / len(p) - overall).sum())
        for p in parts
        if len(p) > 0
    ]
    return float(np.mean(distances))


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


@pytest.mark.parametrize("partitioner", PARTITIONER_NAMES)
@pytest.mark.parametrize(
    ("num_partitions", "alpha"), [(1, 0.5), (2, 0.1), (7, 1.0), (16, 0.05), (50, 10.0)]
)
def test_partitions_are_disjoint_and_cover_every_row(
    labels: np.ndarray, partitioner: str, num_partitions: int, alpha: float
) -> None:
    parts = _all_partitions(labels, num_partitions, partitioner=partitioner, alpha=alpha)
    combined = np.concatenate(parts)
    assert len(combined) == len(labels)
    np.testing.assert_array_equal(np.sort(combined), np.arange(len(labels)))
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # sorted, no repeats


@pytest.mark.parametrize(("n", "num_partitions"), [(10, 10), (11, 3), (1003, 7), (6000, 64)])
def test_iid_sizes_differ_by_at_most_one(n: int, num_partitions: int) -> None:
    parts = _all_partitions(np.zeros(n, dtype=np.int64), num_partitions, partitioner="iid")
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == n


@pytest.mark.parametrize("partitioner", PARTITIONER_NAMES)
def test_every_partition_is_reproducible_and_labels_are_untouched(
    labels: np.ndarray, partitioner: str
) -> None:
    before = labels.copy()
    first = _all_partitions(labels, 8, partitioner=partitioner, alpha=0.3, seed=5)
    again = _all_partitions(labels, 8, partitioner=partitioner, alpha=0.3, seed=5)
    for one, other in zip(first, again, strict=True):
        np.testing.assert_array_equal(one, other)
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("partitioner", PARTITIONER_NAMES)
def test_seed_changes_the_split(labels: np.ndarray, partitioner: str) -> None:
    first = _all_partitions(labels, 4, partitioner=partitioner, seed=1)
    other = _all_partitions(labels, 4, partitioner=partitioner, seed=2)
    assert all(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_alpha_controls_label_skew(labels: np.ndarray) -> None:
    skewed = _label_distance(
        labels, _all_partitions(labels, 10, partitioner="dirichlet", alpha=0.1)
    )
    uniform = _label_distance(
        labels, _all_partitions(labels, 10, partitioner="dirichlet", alpha=100.0)
    )
    # Measured: ~0.65 for alpha=0.1 and ~0.04 for alpha=100 (IID sampling noise alone).
    assert skewed > 0.4
    assert uniform < 0.1
    iid = _label_distance(labels, _all_partitions(labels, 10, partitioner="iid"))
    assert iid < 0.1


def test_dirichlet_split_depends_on_label_classes_not_their_values(labels: np.ndarray) -> None:
    # Relabelling the classes order-preservingly (large, negative or string values) gives the
    # same partitions: the classes are ranked, then split.
    expected = _all_partitions(labels, 6, partitioner="dirichlet", alpha=0.2)
    for relabelled in (labels * 1_000_003 - 7, np.char.add("class-", labels.astype("U1"))):
        got = _all_partitions(relabelled, 6, partitioner="dirichlet", alpha=0.2)
        for one, other in zip(expected, got, strict=True):
            np.testing.assert_array_equal(one, other)


def test_dirichlet_with_one_row_per_label_covers_every_row() -> None:
    labels = np.arange(500)
    parts = _all_partitions(labels, 5, partitioner="dirichlet", alpha=0.5)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(500))


def test_partitioning_loads_no_dataframe_stack() -> None:
    # flwr_datasets pulled in datasets, pandas and pyarrow (~320 MB in the Debian packages).
    code = (
        "import sys, numpy as np\n"
        "from fl_shared.partitioning import partition_indices\n"
        "for name in ('iid', 'dirichlet'):\n"
        "    partition_indices(np.arange(100) % 10, partitioner=name, num_partitions=4,"
        " partition_id=1)\n"
        "heavy = ('flwr_datasets', 'datasets', 'pandas', 'pyarrow')\n"
        "print(' '.join(m for m in heavy if m in sys.modules) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["none"]
