"""Tests for fl_shared.training: it learns, max_samples, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl_shared.datasets import ArrayDataset, load_digits
from fl_shared.models import create_model
from fl_shared.training import EvalResult, TrainResult, evaluate, train


@pytest.fixture(scope="module")
def digits_train() -> ArrayDataset:
    return load_digits("train")


@pytest.fixture(scope="module")
def digits_test() -> ArrayDataset:
    return load_digits("test")


def test_mlp_learns_digits(digits_train: ArrayDataset, digits_test: ArrayDataset) -> None:
    torch.manual_seed(0)
    model = create_model("mlp")
    before = evaluate(model, digits_test)
    result = train(model, digits_train, epochs=3, seed=0)
    after = evaluate(model, digits_test)
    assert isinstance(result, TrainResult)
    assert result.num_examples == len(digits_train)
    assert result.seconds > 0
    assert 0.0 <= result.accuracy <= 1.0
    assert after.accuracy > 0.85
    assert after.loss < before.loss
    assert after.num_examples == len(digits_test)


def test_max_samples_limits_examples(digits_train: ArrayDataset) -> None:
    torch.manual_seed(0)
    result = train(create_model("mlp"), digits_train, max_samples=100, batch_size=16)
    assert result.num_examples == 100
    larger = train(create_model("mlp"), digits_train, max_samples=10_000)
    assert larger.num_examples == len(digits_train)


def test_training_is_deterministic_for_seed(digits_train: ArrayDataset) -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(1)
        results.append(train(create_model("mlp"), digits_train, max_samples=200, seed=5))
    assert results[0].loss == results[1].loss
    assert results[0].accuracy == results[1].accuracy


def test_cnn_trains_one_step_and_changes_weights(digits_train: ArrayDataset) -> None:
    torch.manual_seed(0)
    model = create_model("cnn")
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, digits_train, max_samples=32, batch_size=32)
    assert result.num_examples == 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_evaluate_reports_bounded_accuracy(digits_test: ArrayDataset) -> None:
    torch.manual_seed(0)
    result = evaluate(create_model("resnet18"), digits_test.subset(np.arange(40)), batch_size=16)
    assert isinstance(result, EvalResult)
    assert 0.0 <= result.accuracy <= 1.0
    assert result.loss > 0
    assert result.num_examples == 40


def test_empty_dataset_reports_zero_examples() -> None:
    empty = ArrayDataset(np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, np.int64))
    assert train(create_model("mlp"), empty).num_examples == 0
    assert evaluate(create_model("mlp"), empty).num_examples == 0


def test_invalid_arguments_rejected(digits_test: ArrayDataset) -> None:
    with pytest.raises(ValueError, match="epochs"):
        train(create_model("mlp"), digits_test, epochs=0)
    with pytest.raises(ValueError, match="max_samples"):
        train(create_model("mlp"), digits_test, max_samples=0)
