"""Image tensors: ImageNet statistics, Gaussian blur, resizing maps to an image's size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "gaussian_blur", "upsample", "pixel_relevance"]

# The statistics torchvision's ImageNet backbones were trained with (RGB, images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """One image (C, H, W) blurred by a separable Gaussian of ``sigma`` px (edges replicated)."""
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)[0]


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """(B, C, h, w) maps resized to ``size`` (H, W) bilinearly, for display over the image."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def pixel_relevance(attributions: torch.Tensor, size) -> torch.Tensor:
    """(B, H, W) relevance per pixel from the maps of any method: the channel sum of (B, C, H, W) maps, with
    layer-resolution maps (CAMs, (B, 1, h, w) or (B, h, w)) upsampled to ``size`` first."""
    maps = attributions.detach()
    maps = maps if maps.is_floating_point() else maps.float()
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.shape[-2:] != tuple(size):
        maps = upsample(maps.sum(1, keepdim=True), size)
    return maps.sum(1)
