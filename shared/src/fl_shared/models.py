"""SimpleCNN, ResNet18 and MLP for 1x28x28 inputs, plus a name-based factory."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fl_shared.catalog import MODEL_NAMES
from fl_shared.errors import UnknownModelError, unknown_name_message

__all__ = [
    "MLP",
    "BasicBlock",
    "ResNet18",
    "SimpleCNN",
    "count_parameters",
    "create_model",
]


class SimpleCNN(nn.Module):
    """The seed CNN (1,199,882 parameters for 10 classes); outputs log-probabilities."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity or 1x1 conv+BN shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]) with a 3x3 stride-1 stem for 1x28x28 inputs.

    No max-pool after the stem; spatial sizes go 28 -> 28 -> 14 -> 7 -> 4, then
    adaptive average pooling and a linear classifier. Outputs log-probabilities.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self._in_planes = 64
        self.layer1 = self._make_layer(64, 2, stride=1)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for block_stride in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self._in_planes, planes, block_stride))
            self._in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return F.log_softmax(x, dim=1)


class MLP(nn.Module):
    """Perceptron 784 -> 256 -> 128 -> classes (ReLU); outputs log-probabilities."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return F.log_softmax(x, dim=1)


_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "cnn": SimpleCNN,
    "resnet18": ResNet18,
    "mlp": MLP,
}
assert set(_FACTORIES) == set(MODEL_NAMES), "models.py and catalog.MODEL_NAMES disagree"


def create_model(name: str, num_classes: int = 10) -> nn.Module:
    """Instantiate the model registered under ``name`` (see ``catalog.MODEL_NAMES``)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnknownModelError(unknown_name_message("model", name, MODEL_NAMES))
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return factory(num_classes)


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (trainable or not) in ``model``."""
    return sum(p.numel() for p in model.parameters())
