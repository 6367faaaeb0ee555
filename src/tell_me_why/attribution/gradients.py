"""Vanilla gradients and gradient x input."""

from __future__ import annotations

import torch

from .base import Attribution, TargetSpec

__all__ = ["Saliency", "InputXGradient"]


class Saliency(Attribution):
    """The signed gradient of the target score with respect to the input (``abs=True`` for its magnitude;
    displays usually take the absolute value and the maximum over channels)."""

    def _attribute(self, inputs: torch.Tensor, target: TargetSpec, abs: bool = False) -> torch.Tensor:
        gradient, _ = self._gradients(inputs, target)
        return gradient.abs() if abs else gradient


class InputXGradient(Attribution):
    """Gradient times input."""

    def _attribute(self, inputs: torch.Tensor, target: TargetSpec) -> torch.Tensor:
        gradient, _ = self._gradients(inputs, target)
        return gradient * inputs.detach()
