"""Occlusion experiments: images with some pixels kept and the rest replaced by a mask value, classified in batches."""

from __future__ import annotations

import numpy as np
import torch

from .._utils.images import gaussian_blur
from .predictor import Predictor

__all__ = ["mask_fill", "Occluder"]


def mask_fill(image: torch.Tensor, mask_value, mask_image: torch.Tensor | None, seed: int | None) -> torch.Tensor:
    """The (C, H, W) values that hidden pixels take, on ``image``'s device (noise is drawn on the CPU: a seed gives
    the same mask everywhere)."""
    if mask_image is not None:
        fill = torch.as_tensor(mask_image, dtype=image.dtype, device=image.device)
        if fill.shape != image.shape:
            raise ValueError(f"mask_image has shape {tuple(fill.shape)}, the image {tuple(image.shape)}.")
        return fill
    if mask_value == "min":
        return torch.full_like(image, float(image.min()))
    if mask_value == "mean":
        return image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone()
    if mask_value == "blur":
        return gaussian_blur(image, sigma=max(image.shape[1:]) / 16)
    if mask_value == "noise":
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        low, high = float(image.min()), float(image.max())
        return (low + (high - low) * torch.rand(image.shape, generator=generator, dtype=image.dtype)).to(image.device)
    return torch.full_like(image, float(mask_value))


class Occluder:
    """Classify ``image`` with only the pixels of each mask visible (masks (N, H, W) bool), in chunks; the occluded
    images are made on ``image``'s device (the masks are moved there) and classified on the model's."""

    def __init__(self, image: torch.Tensor, fill: torch.Tensor, predictor: Predictor, target: int) -> None:
        self.image, self.fill, self.predictor, self.target = image, fill, predictor, target

    def probabilities(self, masks: torch.Tensor, invert: bool = False) -> torch.Tensor:
        """Class probabilities (N, C); ``invert`` hides the mask's pixels instead of showing them."""
        out = []
        batch = self.predictor.chunk_size(masks.shape[-2:])
        for start in range(0, len(masks), batch):
            keep = masks[start : start + batch, None].to(self.image.device)
            if invert:
                keep = ~keep
            out.append(self.predictor(torch.where(keep, self.image, self.fill)))
        return torch.cat(out) if out else torch.zeros(0, 2)

    def passes(self, masks: torch.Tensor, min_confidence: float = 0.0, invert: bool = False) -> np.ndarray:
        """Whether each occluded image is classified as the target (top-1, probability >= ``min_confidence``)."""
        probabilities = self.probabilities(masks, invert)
        if len(probabilities) == 0:
            return np.zeros(0, bool)
        top = probabilities.argmax(1) == self.target
        return (top & (probabilities[:, self.target] >= min_confidence)).numpy()

    def target_probability(self, masks: torch.Tensor, invert: bool = False) -> np.ndarray:
        probabilities = self.probabilities(masks, invert)
        return probabilities[:, self.target].numpy() if len(probabilities) else np.zeros(0)
