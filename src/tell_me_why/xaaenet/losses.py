"""Reconstruction and adversarial losses of xAAEnet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor

__all__ = [
    "MSSSIM_WEIGHTS",
    "msssim_levels",
    "ms_ssim_any_size",
    "reconstruction_loss",
    "generator_loss",
    "critic_loss",
]

# Wang et al. (2003) scale weights, finest first; pytorch-msssim uses the same.
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Weight of (1 - MS-SSIM) against L1 in the reconstruction loss (Zhao et al., 2017).
MSSSIM_ALPHA = 0.84
# Weights of the critic's two terms: prior samples labelled real, encoded z labelled fake.
CRITIC_REAL_WEIGHT, CRITIC_FAKE_WEIGHT = 0.6, 0.4


def msssim_levels(height: int, width: int, win_size: int = 11) -> int:
    """How many MS-SSIM scales (1 to 5) an image of this size allows with a Gaussian window of ``win_size``.

    Each scale halves the image and the window must still fit at the coarsest one; this is the
    condition pytorch-msssim checks for its fixed 5 scales (side > (win_size - 1) * 2**4).
    """
    side = min(height, width)
    levels = 1
    while levels < len(MSSSIM_WEIGHTS) and side > (win_size - 1) * 2**levels:
        levels += 1
    if side < win_size:
        raise ValueError(f"Images of {height}x{width} are too small for SSIM with a {win_size}-pixel window.")
    return levels


def ms_ssim_any_size(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 11) -> Tensor:
    """Mean MS-SSIM of two image batches, with as many scales as their size allows.

    Identical to ``pytorch_msssim.ms_ssim`` for images larger than 160 px; smaller images use the first
    scales with their weights renormalised to sum to one.
    """
    levels = msssim_levels(*x.shape[-2:], win_size=win_size)
    weights = x.new_tensor(MSSSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(win_size, 1.5).to(x).repeat([x.shape[1], 1, 1, 1])
    factors = []
    for level in range(levels):
        ssim_per_channel, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False, K=(0.01, 0.03))
        if level < levels - 1:
            factors.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(factors, dim=0)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean()


def reconstruction_loss(reconstruction: Tensor, target: Tensor) -> Tensor:
    """``0.84 (1 - MS-SSIM) + 0.16 L1`` on images in [0, 1]."""
    msssim = ms_ssim_any_size(reconstruction, target, data_range=1.0)
    return MSSSIM_ALPHA * (1.0 - msssim) + (1.0 - MSSSIM_ALPHA) * F.l1_loss(reconstruction, target)


def generator_loss(fake_logits: Tensor) -> Tensor:
    """The encoder's adversarial term: make the critic call encoded ``z`` real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def critic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's term: prior samples are real, encoded ``z`` is fake (``ln 2`` when it cannot tell)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return CRITIC_REAL_WEIGHT * real + CRITIC_FAKE_WEIGHT * fake
