"""Tests for fl_shared.models: exact architectures, output contract and the factory."""

from __future__ import annotations

import pytest
import torch

from fl_shared.catalog import MODEL_NAMES
from fl_shared.errors import FlSharedError, UnknownModelError
from fl_shared.models import (
    MLP,
    BasicBlock,
    ResNet18,
    SimpleCNN,
    count_parameters,
    create_model,
)

SIMPLE_CNN_PARAMS = 1_199_882
# torchvision resnet18 has 11,689,512; here: 1-channel 3x3 stem, 10-class fc.
RESNET18_PARAMS = 11_172_810
MLP_PARAMS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_simple_cnn_has_exact_seed_parameter_count() -> None:
    assert count_parameters(SimpleCNN()) == SIMPLE_CNN_PARAMS
    assert count_parameters(create_model("cnn")) == SIMPLE_CNN_PARAMS


def test_resnet18_is_a_real_resnet18() -> None:
    model = ResNet18()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    # Projection shortcuts (1x1 conv + BN) where width/stride changes: layer2..4.
    projections = [b for b in blocks if not isinstance(b.shortcut, torch.nn.Identity)]
    assert len(projections) == 3
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 1 + 8 * 2 + 3
    assert count_parameters(model) == RESNET18_PARAMS
    assert 11_100_000 < RESNET18_PARAMS < 11_200_000


def test_resnet18_residual_path_is_used() -> None:
    torch.manual_seed(0)
    block = BasicBlock(8, 8).eval()
    x = torch.randn(2, 8, 5, 5)
    # Zeroing the last BN's scale and shift kills the residual branch: out = relu(x).
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        assert torch.allclose(block(x), torch.relu(x))


def test_mlp_parameter_count() -> None:
    assert count_parameters(MLP()) == MLP_PARAMS


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_output_log_probabilities(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert torch.all(out <= 0)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_num_classes_changes_output_width(name: str) -> None:
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError) as excinfo:
        create_model("vgg16")
    message = str(excinfo.value)
    assert "vgg16" in message
    for valid in MODEL_NAMES:
        assert valid in message
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, FlSharedError)
