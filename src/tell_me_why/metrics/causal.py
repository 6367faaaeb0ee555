"""Quality of a mask or a responsibility map: responsibility entropy and robustness to noise outside the mask."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["responsibility_entropy", "robustness"]


def responsibility_entropy(responsibility: np.ndarray) -> tuple[float, float]:
    """Shannon entropy (bits) of the map normalised to sum 1, and the same divided by log2(pixels) (1 = flat).

    Always finite: zero pixels contribute 0 (the reference's KL(uniform || map) is +inf as soon as one pixel is 0).
    A map that is zero everywhere carries no preference and counts as flat.
    """
    values = responsibility.ravel().astype(np.float64)
    total = values.sum()
    p = values / total if total > 0 else np.full(values.size, 1.0 / values.size)
    nonzero = p[p > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    return entropy, entropy / np.log2(values.size) if values.size > 1 else 0.0


def robustness(
    predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, mask: np.ndarray, target: int,
    samples: int, seed: int | None,
) -> float:
    """Share of ``samples`` copies of ``image`` (C, H, W), with every pixel outside ``mask`` (H, W) replaced by
    uniform noise over the image's range, that ``predict`` (images -> class scores) still gives ``target``."""
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    low, high = float(image.min()), float(image.max())
    keep = torch.from_numpy(mask).to(image.device)[None]
    noisy = []
    for _ in range(samples):
        noise = low + (high - low) * torch.rand(image.shape, generator=generator, dtype=image.dtype)
        noisy.append(torch.where(keep, image, noise.to(image.device)))
    scores = predict(torch.stack(noisy))
    return float((scores.argmax(1).cpu() == target).float().mean())
