"""Deletion and insertion curves: does the map's ranking of pixels carry the decision?

One implementation for every explanation: attribution maps of any method and causal responsibility maps alike.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import trapezoid
from torch import nn

from .._utils.classifier import class_probabilities, eval_mode, resolve_targets
from .._utils.images import gaussian_blur, pixel_relevance

__all__ = [
    "BASELINES",
    "TIES",
    "CurveResult",
    "relevance_order",
    "deletion_insertion",
    "ChanceComparison",
    "random_ordering_gaps",
    "against_chance",
]

BASELINES = ("zero", "mean", "blur")
TIES = ("index", "smoothed")


def _baseline(inputs: torch.Tensor, kind: str | torch.Tensor) -> torch.Tensor:
    if isinstance(kind, torch.Tensor):
        return kind.to(inputs).expand_as(inputs)
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if kind == "blur":
        return torch.stack([gaussian_blur(image, sigma=max(inputs.shape[-2:]) / 16) for image in inputs])
    raise ValueError(f"baseline must be one of {BASELINES} or an image tensor, got {kind!r}.")


def relevance_order(relevance: np.ndarray, ties: str = "index") -> np.ndarray:
    """Flat pixel indices of one (H, W) map by decreasing relevance.

    ``ties="index"`` breaks ties by pixel index; ``"smoothed"`` first by a 3x3-smoothed map, so that among equal
    values the pixels in a relevant neighbourhood come first (responsibility maps are piecewise constant).
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}.")
    flat = relevance.ravel()
    if ties == "index":
        return np.argsort(-flat, kind="stable")
    from scipy.ndimage import uniform_filter

    smooth = uniform_filter(relevance, size=3, mode="nearest")
    return np.lexsort((np.arange(flat.size), -smooth.ravel(), -flat))


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

    def normalised(self, auc: np.ndarray) -> np.ndarray:
        """An AUC divided by the target probability of the whole image (the insertion curve's end)."""
        reference = self.insertion[:, -1]
        return auc / np.where(reference > 0, reference, 1.0)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor | np.ndarray,
    target=None,
    steps: int = 50,
    baseline: str | torch.Tensor = "zero",
    most_relevant_first: bool = True,
    batch_size: int = 64,
    ties: str = "index",
    output: str = "logits",
) -> CurveResult:
    """Target probability as pixels are removed (deletion: replaced by the baseline) or revealed (insertion:
    starting from the baseline) in the order of the map, from zero pixels to all pixels, batched.

    ``baseline``: ``"zero"``, ``"mean"``, ``"blur"`` or an image tensor (the mask value of a causal explanation).
    ``ties``: see :func:`relevance_order`. ``output``: whether ``model`` returns ``"logits"`` or
    ``"probabilities"``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    if output not in ("logits", "probabilities"):
        raise ValueError(f"output must be 'logits' or 'probabilities', got {output!r}.")
    inputs = inputs.detach()
    with eval_mode(model) if isinstance(model, nn.Module) else nullcontext():
        targets = resolve_targets(model(inputs), target)
        relevance = pixel_relevance(torch.as_tensor(attributions), inputs.shape[-2:]).cpu().numpy()
        signs = 1.0 if most_relevant_first else -1.0
        orders = [relevance_order(signs * r, ties) for r in relevance]
        ranks = torch.empty((len(inputs), relevance[0].size), dtype=torch.long)
        for i, order in enumerate(orders):
            ranks[i, torch.from_numpy(order)] = torch.arange(order.size)
        ranks = ranks.view(len(inputs), 1, *inputs.shape[-2:]).to(inputs.device)
        fill = _baseline(inputs, baseline)
        fractions = np.linspace(0.0, 1.0, steps + 1)
        counts = [int(round(f * relevance[0].size)) for f in fractions]
        curves = {"deletion": np.zeros((len(inputs), len(counts))), "insertion": np.zeros((len(inputs), len(counts)))}
        jobs = [(i, k, kind) for i in range(len(inputs)) for k in range(len(counts)) for kind in curves]
        for start in range(0, len(jobs), batch_size):
            part = jobs[start : start + batch_size]
            images = []
            for i, k, kind in part:
                changed = ranks[i] < counts[k]
                source, other = (fill[i], inputs[i]) if kind == "deletion" else (inputs[i], fill[i])
                images.append(torch.where(changed, source, other))
            probabilities = class_probabilities(model(torch.stack(images)), output == "probabilities")
            for (i, k, kind), row in zip(part, probabilities):
                curves[kind][i, k] = float(row[targets[i]])
    return CurveResult(fractions, curves["deletion"], curves["insertion"])


@dataclass
class ChanceComparison:
    """A map's mean ``gap`` (insertion AUC - deletion AUC, averaged over the images) against the same statistic
    for random orderings of the pixels (``random_gaps``, one per ordering). ``p_value``: the share of random
    orderings at least as good (with the map itself counted, so at least 1 / (orderings + 1))."""

    gap: float
    random_gaps: np.ndarray

    @property
    def p_value(self) -> float:
        return float((1 + np.sum(self.random_gaps >= self.gap)) / (1 + len(self.random_gaps)))

    @property
    def z_score(self) -> float:
        spread = float(np.std(self.random_gaps, ddof=1)) if len(self.random_gaps) > 1 else 0.0
        return float((self.gap - np.mean(self.random_gaps)) / spread) if spread > 0 else float("nan")

    def better_than_chance(self, alpha: float = 0.05) -> bool:
        return self.p_value <= alpha


def random_ordering_gaps(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    target=None,
    orderings: int = 19,
    steps: int = 50,
    baseline: str | torch.Tensor = "zero",
    seed: int = 0,
    batch_size: int = 64,
    output: str = "logits",
) -> np.ndarray:
    """Insertion AUC - deletion AUC, averaged over the images, for ``orderings`` random orderings of the pixels:
    the chance level that a map's deletion and insertion curves are read against (19 orderings: beating them all
    is p = 0.05)."""
    if orderings < 1:
        raise ValueError(f"orderings must be >= 1, got {orderings}.")
    generator = torch.Generator().manual_seed(seed)
    gaps = []
    for _ in range(orderings):
        noise = torch.rand((len(inputs), *inputs.shape[-2:]), generator=generator).to(inputs.device)
        curves = deletion_insertion(model, inputs, noise, target=target, steps=steps, baseline=baseline,
                                    batch_size=batch_size, output=output)
        gaps.append(float(np.mean(curves.insertion_auc - curves.deletion_auc)))
    return np.asarray(gaps)


def against_chance(curves: CurveResult, random_gaps: np.ndarray) -> ChanceComparison:
    """A map's deletion and insertion curves compared with random orderings (:func:`random_ordering_gaps` on the
    same images, target, steps and baseline)."""
    return ChanceComparison(float(np.mean(curves.insertion_auc - curves.deletion_auc)), np.asarray(random_gaps))
