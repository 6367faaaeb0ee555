"""Causal responsibility maps as an entry of the explanation registry: ``explain(model, x, method="causal")``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..attribution.base import Attribution, TargetSpec, expand_targets
from ..attribution.registry import MethodSpec, register_method
from .explainer import CausalExplainer
from .settings import CausalSettings

__all__ = ["CausalResponsibility"]


class CausalResponsibility(Attribution):
    """Responsibility maps (B, 1, H, W) of :class:`CausalExplainer`, with the attribution interface; keyword
    arguments of the constructor are causal settings (``iterations=``, ``mask_value=`` ...). Each image's full
    explanation (minimal sufficient mask, statistics) is kept in ``last_explanations``, and ``last_notes`` says
    which maps are contrastive and why a map is empty. ``calibrate(images)`` chooses the masks from a
    representative set before the first call (else the first call's images are used)."""

    def __init__(self, model: nn.Module, **settings: Any) -> None:
        super().__init__(model)
        self.explainer = CausalExplainer(model, **settings)
        self.last_explanations: list = []

    def calibrate(self, images: torch.Tensor) -> str | None:
        """See :meth:`CausalExplainer.calibrate`."""
        return self.explainer.calibrate(images)

    def _attribute(self, inputs: torch.Tensor, target: TargetSpec) -> torch.Tensor:
        targets = None if target is None else expand_targets(target, len(inputs)).tolist()
        self.last_explanations = self.explainer.explain(inputs, target=targets)
        self.last_notes = [explanation.note for explanation in self.last_explanations]
        maps = [torch.from_numpy(e.responsibility).float()[None] for e in self.last_explanations]
        return torch.stack(maps).to(inputs.device)


register_method("causal", MethodSpec(CausalResponsibility, tuple(CausalSettings.names()),
                                     summary="causal responsibility (ReX)"))
