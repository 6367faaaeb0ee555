"""Registry of the built-in image encoders (torchvision ResNets without their head).

A registry rather than an if-chain: `register_encoder` adds a backbone under a name, and
`build_encoder(name, ...)` returns a module that maps images to a feature map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torchvision import models

__all__ = ["EncoderSpec", "register_encoder", "available_encoders", "build_encoder", "PretrainedWeightsUnavailable"]


class PretrainedWeightsUnavailable(RuntimeError):
    """Raised when pretrained weights are requested but cannot be downloaded or found in the cache."""


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one backbone: a torchvision constructor and its default ImageNet weights."""

    constructor: Callable[..., nn.Module]
    weights: models.WeightsEnum


_ENCODERS: dict[str, EncoderSpec] = {
    "resnet18": EncoderSpec(models.resnet18, models.ResNet18_Weights.DEFAULT),
    "resnet34": EncoderSpec(models.resnet34, models.ResNet34_Weights.DEFAULT),
    "resnet50": EncoderSpec(models.resnet50, models.ResNet50_Weights.DEFAULT),
}


def register_encoder(name: str, constructor: Callable[..., nn.Module], weights: models.WeightsEnum) -> None:
    """Add a torchvision-style ResNet backbone to the registry under ``name``."""
    _ENCODERS[name] = EncoderSpec(constructor, weights)


def available_encoders() -> list[str]:
    """Names accepted by ``build_encoder`` and ``AAE(encoder=...)``."""
    return sorted(_ENCODERS)


def _load_pretrained_state(name: str, spec: EncoderSpec) -> dict[str, torch.Tensor]:
    try:
        return spec.weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # urllib, socket and SSL errors all mean "not reachable"
        raise PretrainedWeightsUnavailable(
            f"Could not load the ImageNet weights of '{name}' ({type(exc).__name__}: {exc}). "
            "This machine seems to be offline. Pass pretrained=False to start from random weights, "
            f"or pre-seed the torch hub cache ({torch.hub.get_dir()}/checkpoints) with the file "
            f"{spec.weights.url.rsplit('/', 1)[-1]} on a machine with internet access."
        ) from exc


def _adapt_first_conv(backbone: nn.Module, in_channels: int) -> None:
    """Make the stem accept ``in_channels`` inputs; pretrained RGB filters are averaged for grey input."""
    conv: nn.Conv2d = backbone.conv1
    if conv.in_channels == in_channels:
        return
    new_conv = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        mean_filter = conv.weight.mean(dim=1, keepdim=True)
        new_conv.weight.copy_(mean_filter.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
    backbone.conv1 = new_conv


def build_encoder(name: str, *, pretrained: bool = True, in_channels: int = 3) -> nn.Sequential:
    """Return the backbone ``name`` without its pooling and fully connected head.

    ``pretrained=False`` never touches the network. ``pretrained=True`` loads ImageNet weights
    from the torch hub cache or downloads them, and raises `PretrainedWeightsUnavailable` with
    instructions when neither works.
    """
    if name not in _ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {available_encoders()}.")
    if in_channels not in (1, 3):
        raise ValueError(f"input_channels must be 1 or 3, got {in_channels}.")
    spec = _ENCODERS[name]
    backbone = spec.constructor(weights=None)
    if pretrained:
        backbone.load_state_dict(_load_pretrained_state(name, spec), strict=True)
    _adapt_first_conv(backbone, in_channels)
    return nn.Sequential(*list(backbone.children())[:-2])
