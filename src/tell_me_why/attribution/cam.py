"""Grad-CAM and Grad-CAM++: activations captured by a forward hook, gradients by autograd.

The hook hands the rest of the network a fresh leaf copy of the layer's output, so the backward pass only runs
through the layers above it, in-place operations after the layer (``ReLU(inplace=True)``) cannot corrupt the
captured activation, and frozen weights do not matter. No backward hooks, no ``.grad`` fields.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._utils.classifier import eval_mode, output_dependencies, resolve_targets, target_scores
from .._utils.images import upsample
from .base import Attribution

__all__ = [
    "GradCAM",
    "GradCAMPlusPlus",
    "activation_and_gradient",
    "default_cam_layer",
    "cam_layer_note",
    "MIN_CAM_SIDE",
    "upsample",
]


# Grad-CAM's maps have the layer's resolution: below 7 x 7 (the last block of a ResNet at 224 px) they cannot
# say where in a small image the evidence is (a 2 x 2 map at 64 px lights up the same corner for every image).
MIN_CAM_SIDE = 7


def default_cam_layer(model: nn.Module, inputs: torch.Tensor, min_side: int = MIN_CAM_SIDE) -> nn.Module:
    """The deepest module whose 4-D activation the model's output depends on and whose map is at least
    ``min_side`` x ``min_side`` for these inputs, among modules called once per forward (ResNet at 224 px: its last
    block; at 64 px: layer2, 8 x 8). When no map is that large, the deepest of the largest maps (and a warning says
    why); see :func:`cam_layer_note`.

    The dependency check (one backward pass) skips branches that do not feed the output, such as xAAEnet's
    decoder, which runs after the encoder but does not lead to the logits.
    """
    maps = [call for call in output_dependencies(model, inputs[:1], on="outputs")
            if call.output.ndim == 4 and call.output.shape[-1] * call.output.shape[-2] > 1]
    if not maps:
        raise ValueError("The output depends on no 4-D activation larger than 1x1; pass layer= explicitly.")
    large = [call for call in maps if min(call.output.shape[-2:]) >= min_side]
    if large:
        return large[-1].module
    largest = max(reversed(maps), key=lambda call: call.output.shape[-1] * call.output.shape[-2])  # the deepest
    warnings.warn(cam_layer_note(largest.name, tuple(largest.output.shape[-2:]), tuple(inputs.shape[-2:]), min_side),
                  UserWarning, stacklevel=2)
    return largest.module


def cam_layer_note(name: str, map_size: tuple[int, int], input_size: tuple[int, int],
                   min_side: int = MIN_CAM_SIDE) -> str:
    """Why a CAM is coarse: no layer of the model has a map of ``min_side`` x ``min_side`` at this input size."""
    return (f"No layer of this model has a map of at least {min_side} x {min_side} at {input_size[0]} x "
            f"{input_size[1]} px: Grad-CAM uses {name or 'the model'}, whose {map_size[0]} x {map_size[1]} map can "
            f"only say roughly where; a larger input or a method at pixel resolution (Integrated Gradients, "
            f"causal) says more.")


def activation_and_gradient(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, target):
    """``layer``'s activation and the gradient of the target scores with respect to it.

    The forward hook hands the rest of the network a fresh leaf copy of the activation: the backward pass stops
    there (only the layers above it are differentiated, as in captum), it exists even when every weight is
    frozen, and in-place operations after the layer (``ReLU(inplace=True)``) work on the copy.
    """
    captured: list[torch.Tensor] = []

    def replace(_module, _inputs, output):
        leaf = output.detach().clone().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = layer.register_forward_hook(replace)
    try:
        with eval_mode(model), torch.enable_grad():
            outputs = model(inputs.detach())
            targets = resolve_targets(outputs.detach(), target)
            activation = captured[-1]
            (gradient,) = torch.autograd.grad(target_scores(outputs, targets).sum(), activation)
    finally:
        handle.remove()
    return activation.detach(), gradient


class _CAM(Attribution):
    def __init__(self, model: nn.Module, layer: nn.Module | None = None) -> None:
        super().__init__(model)
        if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
            raise ValueError(f"{type(self).__name__} captures a layer's activation with a forward hook, which "
                             f"TorchScript modules do not support; load the model from a state dict with its "
                             f"architecture, or use a gradient or causal method.")
        self.layer = layer

    def _activation_and_gradient(self, inputs, target):
        if self.layer is None:  # found once (a forward and a backward pass), then reused by every call
            self.layer = default_cam_layer(self.model, inputs)
        return activation_and_gradient(self.model, self.layer, inputs, target)

    def _attribute(self, inputs, target, relu: bool = True, upsampled: bool = False):
        activation, gradient = self._activation_and_gradient(inputs, target)
        cam = (self._weights(activation, gradient) * activation).sum(1, keepdim=True)
        cam = torch.relu(cam) if relu else cam
        return upsample(cam, inputs.shape[-2:]) if upsampled else cam


class GradCAM(_CAM):
    """Grad-CAM: channel weights = spatial mean of the gradients; map = ReLU(sum_k w_k A_k), (B, 1, h, w)
    at the layer's resolution (``upsampled=True`` for the input's size)."""

    @staticmethod
    def _weights(activation, gradient):
        return gradient.mean(dim=(2, 3), keepdim=True)


class GradCAMPlusPlus(_CAM):
    """Grad-CAM++ in closed form (exponential score): a = g^2 / (2 g^2 + sum_ij(A) g^3), weights
    w_k = sum_ij a relu(g)."""

    @staticmethod
    def _weights(activation, gradient):
        g2, g3 = gradient**2, gradient**3
        denominator = 2 * g2 + activation.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
        return (alpha * torch.relu(gradient)).sum(dim=(2, 3), keepdim=True)
