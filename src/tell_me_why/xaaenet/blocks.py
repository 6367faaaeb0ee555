"""Building blocks that turn any image encoder into an xAAEnet: skip taps, decoder and latent critic."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._utils.devices import module_device
from .._utils.images import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "FeatureMapProbe",
    "SkipTaps",
    "SkipDropout",
    "UnetBlock",
    "ResizeToOrig",
    "DynamicUnetSkipDropout",
    "LatentCritic",
    "ImageNetNormalize",
    "as_size",
]


def as_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from an int (square) or a pair."""
    if isinstance(size, int):
        height, width = size, size
    else:
        height, width = (int(s) for s in size)
    if min(height, width) < 32:
        raise ValueError(f"input_size must be at least 32 pixels on each side, got {(height, width)}.")
    return height, width


@dataclass(frozen=True)
class FeatureMapProbe:
    """What one dry run of an encoder tells: its output shape and where each resolution ends.

    ``skip_sources`` maps module names to the shape ``(C, H, W)`` of the last activation produced at each
    resolution finer than the output (deepest first). Modules that run more than once in a forward pass
    are never taps, since their stored output would be ambiguous.
    """

    feature_shape: tuple[int, int, int]
    skip_sources: dict[str, tuple[int, int, int]]

    @classmethod
    def run(cls, encoder: nn.Module, input_channels: int, size: tuple[int, int]) -> FeatureMapProbe:
        events: list[tuple[str, tuple[int, ...]]] = []
        calls: dict[str, int] = {}

        def record(name: str):
            def hook(_module, _inputs, output):
                calls[name] = calls.get(name, 0) + 1
                if isinstance(output, Tensor) and output.dim() == 4:
                    events.append((name, tuple(output.shape[1:])))

            return hook

        handles = [m.register_forward_hook(record(n)) for n, m in encoder.named_modules() if n]
        was_training = encoder.training
        device = module_device(encoder)
        try:
            encoder.eval()
            with torch.no_grad():
                out = encoder(torch.zeros(1, input_channels, *size, device=device))
        finally:
            encoder.train(was_training)
            for handle in handles:
                handle.remove()
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise ValueError(
                "The encoder must map a batch of images (B, C, H, W) to a feature map (B, C', H', W'); "
                f"it returned {type(out).__name__} of shape {getattr(out, 'shape', None)}."
            )
        feature_shape = tuple(out.shape[1:])
        final_hw = feature_shape[1:]
        last_at_resolution: dict[tuple[int, int], tuple[str, tuple[int, ...]]] = {}
        for name, shape in events:
            hw = shape[1:]
            finer_than_output = hw[0] > final_hw[0] or hw[1] > final_hw[1]
            coarser_than_input = hw[0] < size[0] or hw[1] < size[1]
            if calls[name] == 1 and finer_than_output and coarser_than_input:
                last_at_resolution[hw] = (name, shape)
        ordered = sorted(last_at_resolution.values(), key=lambda item: item[1][1] * item[1][2])
        return cls(feature_shape, {name: shape for name, shape in ordered})


class SkipTaps:
    """Forward hooks that keep the activations of the probed modules during one forward pass."""

    def __init__(self, encoder: nn.Module, names: list[str]):
        self.names = names
        self.outputs: dict[str, Tensor] = {}
        modules = dict(encoder.named_modules())
        self._handles = [modules[name].register_forward_hook(self._keeper(name)) for name in names]

    def _keeper(self, name: str):
        def hook(_module, _inputs, output):
            self.outputs[name] = output

        return hook

    def pop(self) -> list[Tensor]:
        """Return the kept activations (deepest first) and forget them so they can be freed."""
        kept = [self.outputs[name] for name in self.names]
        self.outputs = {}
        return kept

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class SkipDropout(nn.Module):
    """Drop a whole skip connection per image with probability ``p`` in training; scale by ``1 - p`` in eval.

    Unlike ``Dropout2d`` (identity in eval), the eval output is the expectation of the training output, so a
    decoder trained with skips mostly off is not fed full-strength skips at inference.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"skip_dropout must be in [0, 1], got {p}.")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x * (1.0 - self.p)
        keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p).to(x.dtype)
        return x * keep


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UnetBlock(nn.Module):
    """Upsample to the size of the next encoder stage, merge its (dropped-out) skip, then two convolutions."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, skip_dropout: float = 1.0):
        super().__init__()
        self.skip_dropout = SkipDropout(skip_dropout) if skip_channels else None
        self.convs = nn.Sequential(
            _conv_bn_relu(in_channels + skip_channels, out_channels), _conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: Tensor, size: tuple[int, int], skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if self.skip_dropout is not None and skip is not None:
            x = torch.cat([x, self.skip_dropout(skip)], dim=1)
        return self.convs(x)


class ResizeToOrig(nn.Module):
    """Resize a map to the input image size (no-op when it already matches)."""

    def __init__(self, mode: str = "bilinear"):
        super().__init__()
        self.mode = mode

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode=self.mode, align_corners=False)


class DynamicUnetSkipDropout(nn.Module):
    """Decoder from ``z`` to an image in [0, 1], one `UnetBlock` per encoder resolution.

    The stage sizes come from the probed encoder, so any input size (non-square included) and any encoder
    work. With ``skip_dropout=1`` (the default) skips would always be zero, so they are not built at all and
    the reconstruction has to go through ``z``.
    """

    def __init__(
        self,
        encoding_dims: int,
        probe: FeatureMapProbe,
        out_size: tuple[int, int],
        out_channels: int,
        skip_dropout: float = 1.0,
        width: int = 256,
        min_width: int = 16,
    ):
        super().__init__()
        self.use_skips = skip_dropout < 1.0
        _, feat_h, feat_w = probe.feature_shape
        self.start_shape = (width, feat_h, feat_w)
        self.fc = nn.Linear(encoding_dims, width * feat_h * feat_w)
        self.stage_sizes = [shape[1:] for shape in probe.skip_sources.values()] + [tuple(out_size)]
        skip_channels = [shape[0] for shape in probe.skip_sources.values()] + [0]
        blocks, c_in = [], width
        for c_skip in skip_channels:
            c_out = max(min_width, c_in // 2)
            blocks.append(UnetBlock(c_in, c_skip if self.use_skips else 0, c_out, skip_dropout))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, out_channels, 3, padding=1)
        self.resize = ResizeToOrig()

    def forward(self, z: Tensor, skips: list[Tensor] | None = None) -> Tensor:
        x = F.relu(self.fc(z)).view(z.shape[0], *self.start_shape)
        if self.use_skips:
            if skips is None or len(skips) != len(self.blocks) - 1:
                raise ValueError(f"This decoder needs {len(self.blocks) - 1} skip activations (skip_dropout < 1).")
            skips = list(skips) + [None]
        else:
            skips = [None] * len(self.blocks)
        for block, size, skip in zip(self.blocks, self.stage_sizes, skips, strict=True):
            x = block(x, size, skip)
        # Sigmoid: the reconstruction loss (MS-SSIM with data_range=1, L1) assumes images in [0, 1].
        return torch.sigmoid(self.resize(self.head(x), self.stage_sizes[-1]))


class LatentCritic(nn.Module):
    """MLP ``D -> 64 -> 16 -> 1`` telling prior samples N(0, I) from encoded ``z``; returns logits."""

    def __init__(self, encoding_dims: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(encoding_dims, 64),
            nn.LeakyReLU(0.2),
            nn.Linear(64, 16),
            nn.LeakyReLU(0.2),
            nn.Linear(16, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ImageNetNormalize(nn.Module):
    """Map images in [0, 1] to the input statistics an ImageNet-trained encoder expects: by default those of the
    torchvision backbones, or the ``mean`` and ``std`` (RGB) given; grey images use their channel averages."""

    def __init__(self, channels: int = 3, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        mean, std = torch.tensor(mean), torch.tensor(std)
        if channels == 1:
            mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std
