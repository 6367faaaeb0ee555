"""What every attribution method shares: target handling and a side-effect-free model call.

Gradients are taken with ``torch.autograd.grad`` with respect to a detached copy of the inputs (and, for CAMs,
to captured activations), so parameter ``.grad`` fields are never written; the model is put in eval mode for
the call and restored, hooks are removed in ``finally`` blocks, and the caller's inputs are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._utils.classifier import (
    TargetSpec,
    class_probabilities,
    eval_mode,
    expand_targets,
    resolve_targets,
    target_scores,
)

__all__ = [
    "Attribution",
    "TargetSpec",
    "expand_targets",
    "resolve_targets",
    "target_scores",
    "eval_mode",
    "class_probabilities",
    "accumulated_path_gradients",
]


class Attribution:
    """Base class: ``Method(model, ...).attribute(inputs, target=None, ...) -> Tensor``.

    ``last_notes`` holds, per image of the last call, why its map is blank or how it was made differently (None
    where there is nothing to say); methods that can leave a map blank fill it in. ``inputs`` go on the model's
    device, and the maps come back there.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
        self.model = model
        self.last_notes: list[str | None] = []

    def _gradients(self, inputs: torch.Tensor, target: TargetSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the target scores with respect to ``inputs`` (a fresh leaf), and the targets used."""
        leaf = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = self.model(leaf)
            targets = resolve_targets(outputs.detach(), target)
            (gradient,) = torch.autograd.grad(target_scores(outputs, targets).sum(), leaf)
        return gradient, targets

    def attribute(self, inputs: torch.Tensor, target: TargetSpec = None, **kwargs) -> torch.Tensor:
        """Attributions for ``inputs`` (B, ...) toward ``target`` (see :func:`resolve_targets`)."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
            raise ValueError("inputs must be a batched tensor (B, ...); add a batch dimension for one image.")
        with eval_mode(self.model):
            return self._attribute(inputs, target, **kwargs)

    def _attribute(self, inputs: torch.Tensor, target: TargetSpec, **kwargs) -> torch.Tensor:
        raise NotImplementedError


def accumulated_path_gradients(
    model: nn.Module,
    like: torch.Tensor,
    total: int,
    chunk: int | None,
    points: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    targets: torch.Tensor | None,
    target: TargetSpec = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_k weight_k * grad F_t(point_k)``, added into the image each point belongs to (shape of ``like``).

    ``points(index)`` makes the points numbered ``index`` and returns ``(points, image index, weight)``; they go
    through the model ``chunk`` at a time (``None``: all at once), so memory does not grow with ``total``. With
    ``targets=None`` the target classes come from ``target`` and the first chunk's outputs (one pass saved).
    Returns the sums and the targets used. This is the loop Integrated Gradients and GradientSHAP share.
    """
    accumulated = torch.zeros_like(like)
    chunk = chunk or total
    for start in range(0, total, chunk):
        index = torch.arange(start, min(start + chunk, total), device=like.device)
        inputs, image, weight = points(index)
        inputs.requires_grad_(True)
        with torch.enable_grad():
            outputs = model(inputs)
            if targets is None:  # given targets, checked against the model's number of classes
                targets = resolve_targets(outputs.detach(), target, batch=len(like))
            (gradient,) = torch.autograd.grad(target_scores(outputs, targets[image]).sum(), inputs)
        accumulated.index_add_(0, image, gradient * weight)
    return accumulated, targets
