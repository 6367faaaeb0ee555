"""``CausalExplainer``: responsibility maps and minimal sufficient explanations for any image classifier."""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .explanation import CausalExplanation
from .extraction import (
    SEARCH_METHOD,
    contrastive_explanation,
    minimal_sufficient,
    spatial_explanation,
    spotlight_explanations,
)
from .landscape import responsibility_landscape
from .occlusion import Occluder, mask_fill
from .predictor import Predictor
from .settings import CausalSettings

__all__ = ["CausalExplainer"]


class CausalExplainer:
    """Causal responsibility explanations (the ReX method) for a classifier, batched.

    Parameters
    ----------
    model
        An ``nn.Module`` or a callable mapping images (N, C, H, W), in the model's own input space, to logits or
        probabilities: one logit (sigmoid binary head), two, or many classes.
    settings
        A :class:`CausalSettings`; ``config`` (a TOML file) and keyword arguments override it, validated the
        same way.
    output
        ``"auto"``, ``"logits"`` or ``"probabilities"``: what the model returns.
    mask_image
        An image (C, H, W) whose pixels replace the hidden ones (instead of ``mask_value``).
    """

    def __init__(
        self,
        model: torch.nn.Module | Callable,
        settings: CausalSettings | None = None,
        *,
        config: str | Path | None = None,
        output: str = "auto",
        mask_image: torch.Tensor | None = None,
        **overrides: Any,
    ) -> None:
        if config is not None:
            if settings is not None:
                raise ValueError("Pass settings or config (a TOML file), not both.")
            settings = CausalSettings.from_toml(config)
        settings = settings or CausalSettings()
        self.settings = settings.replace(**overrides) if overrides else settings
        self.model = model
        self.output = output
        self.mask_image = mask_image

    def explain(self, images: torch.Tensor, target: int | list[int] | None = None,
                paths: list[str] | None = None) -> CausalExplanation | list[CausalExplanation]:
        """Explain one image (C, H, W) or a batch (B, C, H, W); ``target`` defaults to the top-1 class."""
        images = torch.as_tensor(images).detach().float().cpu()
        if images.ndim == 3:
            return self._explain_one(images, target if not isinstance(target, list) else target[0],
                                     paths[0] if paths else None)
        if images.ndim != 4:
            raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}.")
        targets = target if isinstance(target, (list, tuple)) else [target] * len(images)
        if len(targets) != len(images):
            raise ValueError(f"{len(targets)} targets for {len(images)} images.")
        bar = tqdm(range(len(images)), desc="Causal explanations", disable=not self.settings.progress)
        return [self._explain_one(images[i], targets[i], paths[i] if paths else None) for i in bar]

    def _explain_one(self, image: torch.Tensor, target: int | None, path: str | None) -> CausalExplanation:
        settings = self.settings
        start = time.perf_counter()
        predictor = Predictor(self.model, batch_size=settings.batch_size, output=self.output)
        probabilities = predictor(image[None])[0]
        if target is None:
            target = int(probabilities.argmax())
        if not isinstance(target, numbers.Integral) or isinstance(target, bool):
            raise ValueError(f"target must be a class index (an int) or None, got {target!r}.")
        target = int(target)
        if not 0 <= target < len(probabilities):
            raise ValueError(f"target {target} is not a class of this model ({len(probabilities)} classes).")
        confidence = float(probabilities[target])
        shape = tuple(image.shape[1:])
        occluder = Occluder(image, mask_fill(image, settings.mask_value, self.mask_image, settings.seed), predictor,
                            target)
        min_confidence = settings.confidence_threshold * confidence
        stats: dict[str, Any] = {"search": SEARCH_METHOD}

        # A model that predicts the target with every pixel hidden does not need any evidence: nothing is a cause.
        blank_is_target = bool(occluder.passes(torch.zeros((1, *shape), dtype=torch.bool))[0])
        explanation = contrastive = None
        explanations: list[np.ndarray] = []
        if blank_is_target:
            responsibility = np.zeros(shape)
            stats.update(passing=0, failing=0, max_depth=0, rounds=0, budget_exhausted=False,
                         note="the target is predicted with every pixel hidden: no pixel is a cause")
        else:
            landscape = responsibility_landscape(occluder, shape, settings)
            responsibility = landscape.responsibility
            stats.update(passing=landscape.passing, failing=landscape.failing, max_depth=landscape.max_depth,
                         rounds=landscape.rounds, budget_exhausted=landscape.budget_exhausted)
            stats["landscape_forward_passes"] = predictor.forward_passes
            if responsibility.max() > 0:
                explanation, explanations, contrastive = self._extract(occluder, responsibility, min_confidence)
        stats.update(forward_passes=predictor.forward_passes, model_calls=predictor.model_calls,
                     seconds=time.perf_counter() - start)
        return CausalExplanation(
            image=image, responsibility=responsibility, target=target, confidence=confidence,
            explanation=explanation, explanations=explanations, contrastive=contrastive,
            settings=settings.as_dict(), stats=stats, path=path, _occluder=occluder,
        )

    def _extract(self, occluder: Occluder, responsibility: np.ndarray, min_confidence: float):
        settings = self.settings
        strategy = settings.strategy
        explanations: list[np.ndarray] = []
        contrastive = None
        if strategy == "spatial":
            explanation = spatial_explanation(occluder, responsibility, settings, min_confidence)
        elif strategy == "multi":
            rng = np.random.default_rng(None if settings.seed is None else settings.seed + 1)
            explanations = spotlight_explanations(occluder, responsibility, settings, min_confidence, rng)
            explanation = explanations[0] if explanations else None
        else:
            explanation = minimal_sufficient(occluder, responsibility, settings, min_confidence)
        if strategy == "contrastive":
            contrastive = contrastive_explanation(occluder, responsibility, settings, min_confidence)
        return explanation, explanations, contrastive
