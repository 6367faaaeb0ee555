"""The models bench_causal.py explains, built the same way in this process and in the reference's venv."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from tell_me_why.testing import SmallCNN


class GreyResNet18(nn.Module):
    """torchvision's ResNet-18 (2 classes) on grey images, repeated to 3 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet18(num_classes=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet(x.expand(-1, 3, -1, -1))


def build(arch: str) -> nn.Module:
    """An untrained ``small_cnn`` or ``resnet18``; load its weights with ``load_state_dict``."""
    return {"small_cnn": SmallCNN, "resnet18": GreyResNet18}[arch]()
