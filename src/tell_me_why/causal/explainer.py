"""``CausalExplainer``: responsibility maps and minimal sufficient explanations for any image classifier."""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)

# Reference images of each predicted class kept from the calibration images, for the contrastive fallback.
_REFERENCES_PER_CLASS = 3
# calibrate() classifies every candidate mask of each of at most this many images.
_CALIBRATION_IMAGES = 64
# Constant masks tried for the neutral mask, evenly spaced from the darkest to the brightest calibration value.
_CONSTANT_MASKS = 5
_MASK_NAMES = {"min": "the image's minimum", "mean": "the image's mean colour", "blur": "the image blurred",
               "noise": "uniform noise"}


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

    Hidden pixels take ``mask_value``; the default, ``"neutral"``, is the mask the model finds closest to undecided
    (:meth:`calibrate`). When the fully hidden image is still the target class, the default
    ``fallback="contrastive"`` explains the image against a mask or reference image the model reads as another
    class, and says so in ``stats["fallback"]``; an explanation that stays empty says why in ``stats["note"]``.
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
        self.neutral_mask: str | None = None
        self._neutral_ranking: list[str] = []
        self._calibrated = False
        self._values: list[float] = []
        self._mean_image: torch.Tensor | None = None
        self._references: list[tuple[str, torch.Tensor]] = []

    def explain(self, images: torch.Tensor, target: int | list[int] | None = None,
                paths: list[str] | None = None) -> CausalExplanation | list[CausalExplanation]:
        """Explain one image (C, H, W) or a batch (B, C, H, W); ``target`` defaults to the top-1 class.

        The first call chooses the masks from its own images (see :meth:`calibrate`); call that method first to
        choose them from a larger, representative set.
        """
        images = torch.as_tensor(images).detach().float().cpu()
        if images.ndim not in (3, 4):
            raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}.")
        if not self._calibrated:
            self.calibrate(images if images.ndim == 4 else images[None])
        if images.ndim == 3:
            return self._explain_one(images, target if not isinstance(target, list) else target[0],
                                     paths[0] if paths else None)
        targets = target if isinstance(target, (list, tuple)) else [target] * len(images)
        if len(targets) != len(images):
            raise ValueError(f"{len(targets)} targets for {len(images)} images.")
        bar = tqdm(range(len(images)), desc="Causal explanations", disable=not self.settings.progress)
        return [self._explain_one(images[i], targets[i], paths[i] if paths else None) for i in bar]

    def _candidates(self, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The masks a hidden pixel may take for ``image``: its mean colour, its blur, five values from the
        calibration images' darkest to their brightest, and their mean image (when it has the image's size)."""
        found = [("the image's mean colour", mask_fill(image, "mean", None, None)),
                 ("the image blurred", mask_fill(image, "blur", None, None))]
        found += [(f"the value {value:.6g}", torch.full_like(image, value)) for value in self._values]
        if self._mean_image is not None and self._mean_image.shape == image.shape:
            found.append(("the mean image", self._mean_image))
        return found

    def calibrate(self, images: torch.Tensor, names: list[str] | None = None) -> str | None:
        """Choose the masks, once for this model, from representative ``images`` (B, C, H, W).

        Keeps their value range, their mean image and their most confident images of each predicted class (the
        references of the contrastive fallback, called by their ``names`` when given, e.g. file names). With
        ``mask_value="neutral"`` every candidate of ``_candidates`` then hides all pixels of each image, and the
        candidates are ranked by how close their class probabilities come to uniform, on average: the first is the
        mask for every later image (the next one that exists for an image of another size). A mask the model reads
        as one class would leave every image of that class without evidence to find. At most 64 evenly spaced
        images are used. Returns the neutral mask (None when another mask is set).
        """
        images = torch.as_tensor(images).detach().float().cpu()
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"calibrate needs a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
        if names is not None and len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} calibration images.")
        if len(images) > _CALIBRATION_IMAGES:  # memory: every candidate mask of every image is classified
            kept = np.linspace(0, len(images) - 1, _CALIBRATION_IMAGES).round().astype(int)
            images, names = images[kept], [names[i] for i in kept] if names is not None else None
        predictor = Predictor(self.model, batch_size=self.settings.batch_size, output=self.output)
        self._values = np.linspace(float(images.min()), float(images.max()), _CONSTANT_MASKS).tolist()
        self._mean_image = images.mean(0) if len(images) > 1 else None
        own = predictor(images)
        self._references = []
        for label in range(own.shape[1]):
            ranked = torch.argsort(own[:, label], descending=True)
            self._references += [(f"the reference {names[i] if names else f'image {int(i)}'}", images[i].clone())
                                 for i in ranked[:_REFERENCES_PER_CLASS] if int(own[i].argmax()) == label]
        self._calibrated = True
        if self.mask_image is not None or self.settings.mask_value != "neutral":
            return None
        candidates = [name for name, _ in self._candidates(images[0])]
        fills = torch.stack([torch.stack([fill for _, fill in self._candidates(image)]) for image in images])
        probabilities = predictor(fills.flatten(0, 1)).view(len(images), len(candidates), -1)
        distance = (probabilities.max(-1).values - 1 / probabilities.shape[-1]).mean(0)
        self._neutral_ranking = [candidates[i] for i in torch.argsort(distance).tolist()]
        self.neutral_mask = self._neutral_ranking[0]
        logger.info("causal: neutral mask is %s (mean top probability %.2f with every pixel hidden)",
                    self.neutral_mask, float(distance.min()) + 1 / probabilities.shape[-1])
        return self.neutral_mask

    def _fill(self, image: torch.Tensor) -> tuple[torch.Tensor, str]:
        settings = self.settings
        if self.mask_image is None and settings.mask_value == "neutral":
            available = dict(self._candidates(image))
            chosen = next(name for name in self._neutral_ranking if name in available)
            return available[chosen], f"neutral: {chosen}"
        fill = mask_fill(image, settings.mask_value, self.mask_image, settings.seed)
        if self.mask_image is not None:
            return fill, "the mask image"
        return fill, _MASK_NAMES.get(settings.mask_value, f"the value {settings.mask_value}")

    def _contrastive_fill(self, image: torch.Tensor, predictor: Predictor, target: int):
        """What to hide pixels with when ``image`` is explained against another class than ``target``: the
        calibration image the model reads most clearly as another class (a real example of the contrast), else
        the mask candidate read as another class that is closest to undecided (the least informative one).
        Returns (fill, description, its class), or None when the model reads every one of them as ``target``."""
        references = [(name, fill) for name, fill in self._references if fill.shape == image.shape]
        for options, clearest in ((references, True), (self._candidates(image), False)):
            if not options:
                continue
            probabilities = predictor(torch.stack([fill for _, fill in options]))
            other = probabilities.argmax(1) != target
            if other.any():
                score = probabilities[:, target] if clearest else -probabilities[:, target]
                best = int(torch.where(other, score, torch.inf).argmin())
                return options[best][1], options[best][0], int(probabilities[best].argmax())
        return None

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
        fill, mask = self._fill(image)
        occluder = Occluder(image, fill, predictor, target)
        min_confidence = settings.confidence_threshold * confidence
        stats: dict[str, Any] = {"search": SEARCH_METHOD, "mask": mask}

        # A model that predicts the target with every pixel hidden needs no evidence against that mask: explain
        # the image against a mask the model reads as another class instead (contrastive), or say why not.
        blank_is_target = bool(occluder.passes(torch.zeros((1, *shape), dtype=torch.bool))[0])
        if blank_is_target and settings.fallback == "contrastive":
            found = self._contrastive_fill(image, predictor, target)
            if found is not None:
                fill, contrast, contrast_class = found
                occluder = Occluder(image, fill, predictor, target)
                stats.update(fallback=f"explained against {contrast}, which the model reads as class "
                                      f"{contrast_class}: with every pixel hidden by {mask} it already predicts "
                                      f"class {target}", contrast_class=contrast_class)
                blank_is_target = False
        explanation = contrastive = None
        explanations: list[np.ndarray] = []
        if blank_is_target:
            responsibility = np.zeros(shape)
            stats.update(passing=0, failing=0, max_depth=0, rounds=0, iterations=0, budget_exhausted=False,
                         note=f"class {target} is predicted with every pixel hidden by {mask}"
                              + (" and by every other mask tried" if settings.fallback == "contrastive" else "")
                              + ": no pixel is a cause")
        else:
            landscape = responsibility_landscape(occluder, shape, settings)
            responsibility = landscape.responsibility
            stats.update(passing=landscape.passing, failing=landscape.failing, max_depth=landscape.max_depth,
                         rounds=landscape.rounds, budget_exhausted=landscape.budget_exhausted,
                         iterations=landscape.iterations, agreement=landscape.agreement)
            stats["landscape_forward_passes"] = predictor.forward_passes
            if responsibility.max() > 0:
                explanation, explanations, contrastive = self._extract(occluder, responsibility, min_confidence)
                if explanation is None:
                    stats["note"] = "no pixel set ranked by responsibility reaches the confidence threshold"
            elif landscape.rounds == 0:
                stats["note"] = "max_forward_passes ran out before the first occlusion experiment"
            else:
                stats["note"] = ("no partly hidden image keeps the class: every mutant with a quarter of a box "
                                 "hidden changes the decision, so the evidence is spread over the whole image")
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
