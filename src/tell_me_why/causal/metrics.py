"""Quality of a causal explanation: area, responsibility entropy, insertion/deletion AUC, robustness."""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import trapezoid

from .extraction import pixel_ranking, prefix_masks
from .occlusion import Occluder

__all__ = ["responsibility_entropy", "insertion_deletion", "robustness"]


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


def insertion_deletion(occluder: Occluder, responsibility: np.ndarray, steps: int) -> dict[str, object]:
    """Target probability as the top-ranked pixels are revealed (insertion) or removed (deletion).

    The curves start at zero pixels and end at all pixels, x is the fraction of pixels in [0, 1], and the AUC is
    the trapezoidal area under the probability (also divided by the unmasked confidence).
    """
    order = pixel_ranking(responsibility)
    n = len(order)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    sizes = [int(round(f * n)) for f in fractions]
    masks = prefix_masks(order, sizes, responsibility.shape)
    insertion = occluder.target_probability(masks)
    deletion = occluder.target_probability(masks, invert=True)
    reference = float(insertion[-1]) if insertion[-1] > 0 else 1.0
    auc_insertion = float(trapezoid(insertion, fractions))
    auc_deletion = float(trapezoid(deletion, fractions))
    return {
        "fractions": fractions,
        "insertion_curve": insertion,
        "deletion_curve": deletion,
        "insertion_auc": auc_insertion,
        "deletion_auc": auc_deletion,
        "insertion_auc_normalised": auc_insertion / reference,
        "deletion_auc_normalised": auc_deletion / reference,
    }


def robustness(occluder: Occluder, explanation: np.ndarray, samples: int, seed: int | None) -> float:
    """Share of ``samples`` copies, with every pixel outside the explanation replaced by uniform noise over the
    image's range, that are still classified as the target."""
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    image = occluder.image
    low, high = float(image.min()), float(image.max())
    keep = torch.from_numpy(explanation)[None, None]
    noisy = []
    for _ in range(samples):
        noise = low + (high - low) * torch.rand(image.shape, generator=generator, dtype=image.dtype)
        noisy.append(torch.where(keep[0], image, noise))
    probabilities = occluder.predictor(torch.stack(noisy))
    return float((probabilities.argmax(1) == occluder.target).float().mean())
