"""What every explanation needs from a classifier: eval mode without side effects, the class to explain, class
probabilities, trainable flags, and which modules the output depends on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = [
    "TargetSpec",
    "eval_mode",
    "expand_targets",
    "resolve_targets",
    "class_probabilities",
    "target_scores",
    "set_module_trainable",
    "ModuleCall",
    "output_dependencies",
]

TargetSpec = int | Sequence[int] | torch.Tensor | None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block (no BatchNorm statistics updated, no dropout), then every module's previous mode
    back (also a module that was in eval mode inside a model in training mode, such as a frozen BatchNorm)."""
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
    targets = torch.as_tensor(target)
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"Targets must be integer class indices, got {target!r}.")
    targets = targets.long().reshape(-1)
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


def set_module_trainable(module: nn.Module, trainable: bool) -> nn.Module:
    """Enable or disable gradient updates for every parameter of ``module``; returns it.

    Disabling also drops the parameters' stored gradients: an optimizer with weight decay or momentum
    would otherwise keep moving a "frozen" parameter that still holds a (zero) gradient.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)
        if not trainable:
            parameter.grad = None
    return module


@dataclass(frozen=True)
class ModuleCall:
    """A submodule found by :func:`output_dependencies`: its qualified name, the module, and (when asked about
    outputs) the tensor its one call produced."""

    name: str
    module: nn.Module
    output: torch.Tensor | None = None


def output_dependencies(
    model: nn.Module, probe: torch.Tensor, on: Literal["parameters", "outputs"]
) -> list[ModuleCall]:
    """The submodules the model's output on ``probe`` depends on, in the order their (last) call finished.

    ``on="parameters"``: modules with parameters of their own whose parameters the output depends on (frozen
    ones included: they are part of the function). ``on="outputs"``: modules called once whose output tensor the
    output depends on (a module run twice has no single activation). Both run one forward pass and one backward
    pass with ``allow_unused``, so branches that the forward pass runs without leading to the output (an
    xAAEnet's decoder or critic) are left out. No ``.grad`` field is written and every mode is restored.
    """
    if on not in ("parameters", "outputs"):
        raise ValueError(f"on must be 'parameters' or 'outputs', got {on!r}.")
    names = {module: name for name, module in model.named_modules()}
    if on == "parameters":
        watched = [m for m in names if next(m.parameters(recurse=False), None) is not None]
    else:
        watched = [m for m in names if m is not model]
    finished: list[nn.Module] = []
    outputs: dict[nn.Module, object] = {}
    calls: dict[nn.Module, int] = {}

    def record(module, _args, output):
        finished.append(module)
        outputs[module] = output
        calls[module] = calls.get(module, 0) + 1

    handles = [module.register_forward_hook(record) for module in watched]
    frozen = [p for p in model.parameters() if not p.requires_grad] if on == "parameters" else []
    try:
        for parameter in frozen:
            parameter.requires_grad_(True)
        with torch.enable_grad(), eval_mode(model):
            leaf = probe.detach().clone().requires_grad_(on == "outputs")
            result = model(leaf)
            ordered = list(dict.fromkeys(reversed(finished)))[::-1]
            if on == "parameters":
                groups = [list(module.parameters(recurse=False)) for module in ordered]
            else:
                ordered = [m for m in ordered if calls[m] == 1 and isinstance(outputs[m], torch.Tensor)
                           and outputs[m].requires_grad]
                groups = [[outputs[m]] for m in ordered]
            tensors = [t for group in groups for t in group]
            gradients = torch.autograd.grad(result.sum(), tensors, allow_unused=True) if tensors else []
    finally:
        for handle in handles:
            handle.remove()
        for parameter in frozen:
            parameter.requires_grad_(False)
    found, position = [], 0
    for module, group in zip(ordered, groups):
        if any(g is not None for g in gradients[position : position + len(group)]):
            output = outputs[module].detach() if on == "outputs" else None
            found.append(ModuleCall(names[module], module, output))
        position += len(group)
    return found
