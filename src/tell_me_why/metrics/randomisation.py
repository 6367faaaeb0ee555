"""Model-parameter randomisation (Adebayo et al., 2018): does the explanation change when the model does?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from .._utils.classifier import eval_mode, output_dependencies, resolve_targets
from .._utils.images import pixel_relevance

__all__ = ["RandomisationStep", "model_randomisation"]


@dataclass
class RandomisationStep:
    """After randomising ``layer`` (and, cascading, every layer above it): Spearman rank correlation and SSIM
    between the original and the new maps (means over images). ``spearman`` is NaN when an original map is
    constant (a blank map cannot show that it depends on the model)."""

    layer: str
    spearman: float
    ssim: float


def _rank_correlation(original: np.ndarray, randomised: np.ndarray) -> float:
    """Spearman correlation of two maps; NaN when the original is constant (a blank map cannot show that it
    depends on the model), 0 when only the randomised one is (nothing of the original is left)."""
    if np.ptp(original) == 0:
        return float("nan")
    if np.ptp(randomised) == 0:
        return 0.0
    return float(spearmanr(original.ravel(), randomised.ravel()).statistic)


def _normalised_abs(maps: torch.Tensor) -> np.ndarray:
    values = maps.abs().cpu().numpy()
    peak = values.reshape(len(values), -1).max(1)
    return values / np.where(peak > 0, peak, 1.0)[:, None, None]


def model_randomisation(
    model: nn.Module,
    explain: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    cascading: bool = True,
    seed: int = 0,
) -> list[RandomisationStep]:
    """The sanity check of Adebayo et al.: re-initialise the model's layers from the output down (cascading) or
    one at a time (independent) and compare each explanation with the original. The layers are those with
    parameters that the prediction depends on (an xAAEnet's decoder and critic are left out), from the output
    down. A method that explains the model must change when the model does (low similarity). The model is
    randomised in place and its saved
    state is restored afterwards, also after an error.

    ``explain(model, inputs, targets)`` returns maps; the targets are the original model's predictions.
    """
    from skimage.metrics import structural_similarity

    with torch.no_grad(), eval_mode(model):
        targets = resolve_targets(model(inputs), None)
    size = inputs.shape[-2:]
    original = _normalised_abs(pixel_relevance(explain(model, inputs, targets), size))
    # From the output down: the reverse of the order in which the forward pass finished with each layer.
    layers = [(call.name, call.module) for call in reversed(output_dependencies(model, inputs[:1], "parameters"))]
    generator = torch.Generator().manual_seed(seed)
    # Randomise in place and restore the saved state afterwards (deep copies fail on models that keep
    # non-leaf tensors as attributes, like xAAEnet's z).
    saved = {key: value.detach().clone() for key, value in model.state_dict().items()}
    steps = []
    try:
        for name, module in layers:
            if not cascading:
                model.load_state_dict(saved)
            with torch.no_grad():
                for parameter in module.parameters(recurse=False):
                    spread = parameter.std(correction=0).clamp_min(1e-3)
                    parameter.copy_(torch.randn(parameter.shape, generator=generator).to(parameter) * spread)
            maps = _normalised_abs(pixel_relevance(explain(model, inputs, targets), size))
            rho = [_rank_correlation(a, b) for a, b in zip(original, maps)]
            ssim = [structural_similarity(a, b, data_range=1.0) for a, b in zip(original, maps)]
            steps.append(RandomisationStep(name, float(np.mean(rho)), float(np.mean(ssim))))
    finally:
        model.load_state_dict(saved)
    return steps
