"""What every attribution method shares: target handling and a side-effect-free model call.

Gradients are taken with ``torch.autograd.grad`` with respect to a detached copy of the inputs (and, for CAMs,
to captured activations), so parameter ``.grad`` fields are never written; the model is put in eval mode for
the call and restored, hooks are removed in ``finally`` blocks, and the caller's inputs are left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["Attribution", "TargetSpec", "expand_targets", "resolve_targets", "target_scores", "eval_mode", "class_probabilities"]

TargetSpec = int | Sequence[int] | torch.Tensor | None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block (no BatchNorm statistics updated, no dropout), then the previous mode back."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def expand_targets(target: int | Sequence[int] | torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` class indices from one int or one per image; their range is checked by :func:`resolve_targets`,
    which needs the model's outputs."""
    targets = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(batch)
    if targets.numel() != batch:
        raise ValueError(f"Got {targets.numel()} targets for {batch} images; give one int, one per image, or None.")
    return targets


def resolve_targets(outputs: torch.Tensor, target: TargetSpec, batch: int | None = None) -> torch.Tensor:
    """One class index per image: ``None`` (the predicted class), an int, or one per image.

    Single-logit heads (outputs (B, 1) or (B,)) are binary classifiers: class 1 when the logit is positive.
    ``batch`` (default: the outputs' length) is the number of images when ``outputs`` come from other inputs
    (e.g. interpolated ones) and only give the number of classes.
    """
    batch = outputs.shape[0] if batch is None else batch
    single = outputs.ndim == 1 or outputs.shape[1] == 1
    classes = 2 if single else outputs.shape[1]
    if target is None:
        logits = outputs.reshape(batch, -1)
        return (logits[:, 0] > 0).long() if single else logits.argmax(1)
    targets = expand_targets(target, batch)
    if (targets < 0).any() or (targets >= classes).any():
        raise ValueError(f"Targets must be class indices in [0, {classes}), got {targets.tolist()}.")
    return targets.to(outputs.device)


def class_probabilities(outputs: torch.Tensor, already_probabilities: bool = False) -> torch.Tensor:
    """(N, C) class probabilities from logits (softmax) or, for a single-logit head (N, 1) or (N,), the two
    classes [1 - sigmoid, sigmoid]; ``already_probabilities`` skips the squashing."""
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        positive = outputs.reshape(-1)
        positive = positive if already_probabilities else torch.sigmoid(positive)
        return torch.stack([1 - positive, positive], 1)
    return outputs if already_probabilities else torch.softmax(outputs, 1)


def target_scores(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The score (B,) whose gradient is explained: the target's logit; for a single-logit head, the logit for
    class 1 and its negation for class 0 (the log-odds of the target)."""
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        logit = outputs.reshape(-1)
        return torch.where(targets == 1, logit, -logit)
    return outputs.gather(1, targets[:, None])[:, 0]


class Attribution:
    """Base class: ``Method(model, ...).attribute(inputs, target=None, ...) -> Tensor``."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
        self.model = model

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
