"""The pointing game: does a map's peak fall on the known evidence?"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._utils.images import pixel_relevance

__all__ = ["pointing_game"]


def pointing_game(
    attributions: torch.Tensor, evidence: np.ndarray | torch.Tensor, size=None, tolerance: int = 0
) -> np.ndarray:
    """Whether the most relevant pixel of each map lies within ``tolerance`` pixels (Chebyshev distance) of its
    evidence mask (B, H, W); ties: the first pixel in row-major order.

    The original pointing game (Zhang et al., 2016) allows 15 px at 224 px. Maps that are constant over patches
    (Shapley values of patches) need ``tolerance = patch side - 1``: their peak is the patch's first pixel, which
    may lie outside the evidence even when the patch covers it.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}.")
    evidence = torch.as_tensor(evidence).detach().cpu().bool()
    if tolerance:
        evidence = nn.functional.max_pool2d(evidence[:, None].float(), 2 * tolerance + 1, stride=1,
                                            padding=tolerance)[:, 0].bool()
    relevance = pixel_relevance(attributions, size or evidence.shape[-2:]).reshape(len(evidence), -1).cpu()
    peak = relevance.argmax(1)
    return evidence.reshape(len(evidence), -1).gather(1, peak[:, None])[:, 0].numpy()
