"""TCAV: does a human concept (given by example images) push the model toward a class?

A concept activation vector (CAV) is the normal of a linear classifier separating the layer's activations of the
concept images from those of random images. The TCAV score of a class is the fraction of its inputs whose target
score increases along the CAV (positive directional derivative, computed on the live, non-detached activation).
Scores over repeated random sets are compared with CAVs of random-versus-random sets by a t-test: a concept
matters when its scores differ from those of random concepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .base import eval_mode
from .cam import activation_and_gradient

__all__ = ["TCAV", "TCAVResult"]


@dataclass
class TCAVResult:
    """``score``: mean TCAV score of the concept over runs; ``scores`` per run; ``random_scores`` of
    random-versus-random CAVs; ``p_value`` of the two-sided t-test between them; ``significant`` at ``alpha``."""

    score: float
    scores: np.ndarray
    random_scores: np.ndarray
    p_value: float
    significant: bool


class TCAV:
    """TCAV at ``layer`` of ``model`` (any module with a tensor output)."""

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model, self.layer = model, layer

    def _run(self, inputs: torch.Tensor, with_gradient: bool, target=None):
        if with_gradient:
            return activation_and_gradient(self.model, self.layer, inputs, target)[1].flatten(1)
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _i, output: captured.append(output.detach()))
        try:
            with eval_mode(self.model), torch.no_grad():
                self.model(inputs)
        finally:
            handle.remove()
        return captured[-1].flatten(1)

    def activations(self, images: torch.Tensor) -> np.ndarray:
        """The layer's activations (N, D), flattened."""
        return self._run(images, with_gradient=False).cpu().numpy()

    def concept_activation_vector(self, concept: torch.Tensor, other: torch.Tensor, seed: int = 0) -> np.ndarray:
        """Unit normal (D,) of a logistic regression separating ``concept`` from ``other`` activations,
        pointing toward the concept."""
        from sklearn.linear_model import LogisticRegression

        features = np.concatenate([self.activations(concept), self.activations(other)])
        labels = np.r_[np.ones(len(concept)), np.zeros(len(other))]
        classifier = LogisticRegression(max_iter=2000, random_state=seed).fit(features, labels)
        vector = classifier.coef_[0]
        return vector / max(np.linalg.norm(vector), 1e-12)

    def directional_derivatives(self, inputs: torch.Tensor, cav: np.ndarray, target=None) -> np.ndarray:
        """d(target score)/d(activation) . CAV for each input."""
        gradient = self._run(inputs, with_gradient=True, target=target)
        return (gradient @ torch.as_tensor(cav, dtype=gradient.dtype, device=gradient.device)).cpu().numpy()

    def score(self, inputs: torch.Tensor, cav: np.ndarray, target=None) -> float:
        """Fraction of ``inputs`` whose target score grows along ``cav``."""
        return float((self.directional_derivatives(inputs, cav, target) > 0).mean())

    def test(
        self,
        inputs: torch.Tensor,
        concept: torch.Tensor,
        random_images: torch.Tensor,
        target=None,
        runs: int = 10,
        set_size: int | None = None,
        alpha: float = 0.05,
        seed: int = 0,
    ) -> TCAVResult:
        """TCAV scores of ``concept`` for ``target`` over ``runs`` random sets drawn from ``random_images``,
        against random-versus-random CAVs, with a two-sided t-test."""
        from scipy.stats import ttest_ind

        size = set_size or len(concept)
        if len(random_images) < 2 * size:
            raise ValueError(f"random_images needs at least 2 x {size} images to draw pairs of random sets.")
        rng = np.random.default_rng(seed)
        scores, random_scores = [], []
        for run in range(runs):
            chosen = rng.permutation(len(random_images))
            first, second = random_images[chosen[:size]], random_images[chosen[size : 2 * size]]
            scores.append(self.score(inputs, self.concept_activation_vector(concept, first, seed + run), target))
            random_scores.append(self.score(inputs, self.concept_activation_vector(second, first, seed + run), target))
        scores_a, random_a = np.array(scores), np.array(random_scores)
        if np.ptp(np.r_[scores_a, random_a]) == 0:
            p_value = 1.0
        else:
            p_value = float(ttest_ind(scores_a, random_a).pvalue)
        return TCAVResult(float(scores_a.mean()), scores_a, random_a, p_value, bool(p_value < alpha))
