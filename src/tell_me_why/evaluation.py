"""Does an explanation deserve trust? Deletion/insertion curves, model-parameter randomisation, pointing game,
and figures that put maps over images.

All checks take attribution maps of any method: (B, C, H, W) maps are reduced to (B, H, W) by summing over
channels, CAM maps (B, 1, h, w) are upsampled to the input size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.stats import spearmanr
from torch import nn

from .attribution.base import class_probabilities, eval_mode, resolve_targets
from .attribution.cam import upsample
from .plot_style import display_array

__all__ = [
    "pixel_relevance",
    "CurveResult",
    "deletion_insertion",
    "pointing_game",
    "RandomisationStep",
    "model_randomisation",
    "plot_overlay",
    "plot_method_comparison",
]

BASELINES = ("zero", "mean", "blur")


def pixel_relevance(attributions: torch.Tensor, size) -> torch.Tensor:
    """(B, H, W) relevance per pixel: channel sum of (B, C, H, W) maps, CAMs upsampled to ``size``."""
    maps = attributions.detach().float()
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.shape[-2:] != tuple(size):
        maps = upsample(maps.sum(1, keepdim=True), size)
    return maps.sum(1)


def _baseline(inputs: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if kind == "blur":
        from .causal.occlusion import gaussian_blur

        return torch.stack([gaussian_blur(image, sigma=max(inputs.shape[-2:]) / 16) for image in inputs])
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}.")


@dataclass
class CurveResult:
    """``fractions`` (steps + 1,) of pixels changed, ``deletion``/``insertion`` curves (B, steps + 1) of the
    target probability, and their trapezoidal AUCs (B,) over x in [0, 1]."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        return trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        return trapezoid(self.insertion, self.fractions, axis=1)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target=None,
    steps: int = 50,
    baseline: str = "zero",
    most_relevant_first: bool = True,
    batch_size: int = 64,
) -> CurveResult:
    """Target probability as pixels are removed (deletion: replaced by the baseline) or revealed (insertion:
    starting from the baseline) in the order of the map, from zero pixels to all pixels, batched."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    inputs = inputs.detach()
    with eval_mode(model):
        targets = resolve_targets(model(inputs), target)
        relevance = pixel_relevance(attributions, inputs.shape[-2:]).reshape(len(inputs), -1)
        order = torch.argsort(relevance, dim=1, descending=most_relevant_first, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
        ranks = ranks.view(len(inputs), 1, *inputs.shape[-2:])
        fill = _baseline(inputs, baseline)
        fractions = np.linspace(0.0, 1.0, steps + 1)
        counts = [int(round(f * order.shape[1])) for f in fractions]
        curves = {"deletion": np.zeros((len(inputs), len(counts))), "insertion": np.zeros((len(inputs), len(counts)))}
        jobs = [(i, k, kind) for i in range(len(inputs)) for k in range(len(counts)) for kind in curves]
        for start in range(0, len(jobs), batch_size):
            part = jobs[start : start + batch_size]
            images = []
            for i, k, kind in part:
                changed = ranks[i] < counts[k]
                source, other = (fill[i], inputs[i]) if kind == "deletion" else (inputs[i], fill[i])
                images.append(torch.where(changed, source, other))
            probabilities = class_probabilities(model(torch.stack(images)))
            for (i, k, kind), row in zip(part, probabilities):
                curves[kind][i, k] = float(row[targets[i]])
    return CurveResult(fractions, curves["deletion"], curves["insertion"])


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
    evidence = torch.as_tensor(evidence).bool()
    if tolerance:
        evidence = nn.functional.max_pool2d(evidence[:, None].float(), 2 * tolerance + 1, stride=1,
                                            padding=tolerance)[:, 0].bool()
    relevance = pixel_relevance(attributions, size or evidence.shape[-2:]).reshape(len(evidence), -1)
    peak = relevance.argmax(1)
    return evidence.reshape(len(evidence), -1).gather(1, peak[:, None])[:, 0].numpy()


@dataclass
class RandomisationStep:
    """After randomising ``layer`` (and, cascading, every layer above it): Spearman rank correlation and SSIM
    between the original and the new maps (means over images)."""

    layer: str
    spearman: float
    ssim: float


def _normalised_abs(maps: torch.Tensor) -> np.ndarray:
    values = maps.abs().numpy()
    peak = values.reshape(len(values), -1).max(1)
    return values / np.where(peak > 0, peak, 1.0)[:, None, None]


def _layers_from_the_output(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The modules with parameters of their own that the output on ``probe`` depends on, from the output back
    (reversed order of their last call). Modules the forward pass runs without leading to the output (an
    xAAEnet's decoder or critic) are left out: randomising them cannot change an explanation of the prediction."""
    names = {module: name for name, module in model.named_modules()}
    owners = [module for module in names if next(module.parameters(recurse=False), None) is not None]
    called: list[nn.Module] = []
    handles = [module.register_forward_hook(lambda module, args, output: called.append(module)) for module in owners]
    # Frozen parameters count too (they are part of the function explained): gradients are asked for them all.
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for parameter in frozen:
            parameter.requires_grad_(True)
        with torch.enable_grad(), eval_mode(model):
            output = model(probe)
            ordered = list(dict.fromkeys(reversed(called)))
            own = [list(module.parameters(recurse=False)) for module in ordered]
            gradients = torch.autograd.grad(output.sum(), [p for params in own for p in params], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        for parameter in frozen:
            parameter.requires_grad_(False)
    used, position = [], 0
    for module, params in zip(ordered, own):
        if any(g is not None for g in gradients[position : position + len(params)]):
            used.append((names[module], module))
        position += len(params)
    return used


def model_randomisation(
    model: nn.Module,
    explain: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    cascading: bool = True,
    seed: int = 0,
) -> list[RandomisationStep]:
    """The sanity check of Adebayo et al.: re-initialise the model's layers from the output down (cascading) or
    one at a time (independent) and compare each explanation with the original. The layers are those the
    prediction runs, in the order of the forward pass. A method that explains the
    model must change when the model does (low similarity). The model is randomised in place and its saved
    state is restored afterwards, also after an error.

    ``explain(model, inputs, targets)`` returns maps; the targets are the original model's predictions.
    """
    from skimage.metrics import structural_similarity

    with torch.no_grad(), eval_mode(model):
        targets = resolve_targets(model(inputs), None)
    size = inputs.shape[-2:]
    original = _normalised_abs(pixel_relevance(explain(model, inputs, targets), size))
    layers = _layers_from_the_output(model, inputs[:1])
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
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * spread)
            maps = _normalised_abs(pixel_relevance(explain(model, inputs, targets), size))
            with warnings.catch_warnings():  # a constant map has no rank correlation: counted as 0
                warnings.simplefilter("ignore")
                rho = [np.nan_to_num(spearmanr(a.ravel(), b.ravel()).statistic) for a, b in zip(original, maps)]
            ssim = [structural_similarity(a, b, data_range=1.0) for a, b in zip(original, maps)]
            steps.append(RandomisationStep(name, float(np.mean(rho)), float(np.mean(ssim))))
    finally:
        model.load_state_dict(saved)
    return steps


def plot_overlay(image: torch.Tensor, attribution: torch.Tensor, ax=None, title: str | None = None,
                 signed: bool = False, alpha: float = 0.55):
    """One map over its image (|map| in 'inferno', or signed in a diverging map); returns the axes."""
    import matplotlib.pyplot as plt

    from .plot_style import figure_style

    relevance = pixel_relevance(attribution[None] if attribution.ndim == 3 else attribution,
                                image.shape[-2:])[0].numpy()
    with figure_style():
        if ax is None:
            _, ax = plt.subplots(figsize=(4, 4))
        shown = display_array(image)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        if signed:
            limit = max(float(np.abs(relevance).max()), 1e-12)
            ax.imshow(relevance, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha)
        else:
            ax.imshow(np.abs(relevance), cmap="inferno", alpha=alpha)
        ax.set_title(title or "")
        ax.axis("off")
    return ax


def plot_method_comparison(image: torch.Tensor, maps: dict[str, torch.Tensor], save_path=None, show=None,
                           title: str | None = None):
    """The image and one overlay per method, side by side; saved (PNG) and closed when ``save_path`` is given."""
    import matplotlib.pyplot as plt

    from .plot_style import figure_style, finish_figure

    with figure_style():
        fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.2 * (len(maps) + 1), 3.4), squeeze=False)
        shown = display_array(image)
        axes[0, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[0, 0].set_title("image")
        axes[0, 0].axis("off")
        for ax, (name, attribution) in zip(axes[0, 1:], maps.items()):
            plot_overlay(image, attribution, ax=ax, title=name)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    finish_figure(fig, save_path, show, close=save_path is not None)
    return fig
