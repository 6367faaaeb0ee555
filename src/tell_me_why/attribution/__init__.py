"""Local explanations for any PyTorch classifier: one class per method with one ``attribute()`` call.

``explain(model, inputs, method="gradcam", target=None, **kwargs)`` runs a method by name from ``METHODS``.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionRollout, attention_maps
from .base import Attribution, eval_mode, resolve_targets, target_scores
from .cam import GradCAM, GradCAMPlusPlus, default_cam_layer, upsample
from .feature_visualisation import ActivationMaximisation, DeepDream
from .gradient_shap import GradientShap
from .gradients import InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients, quadrature
from .shapley import ShapleyValueSampling, grid_groups, patch_groups, superpixel_groups
from .smoothgrad import SmoothGrad
from .tcav import TCAV, TCAVResult

__all__ = [
    "Attribution", "Saliency", "InputXGradient", "IntegratedGradients", "SmoothGrad", "GradCAM", "GradCAMPlusPlus",
    "GradientShap", "ShapleyValueSampling", "AttentionRollout", "attention_maps", "patch_groups",
    "superpixel_groups", "grid_groups", "ActivationMaximisation", "DeepDream", "TCAV", "TCAVResult", "METHODS", "explain", "default_cam_layer", "upsample", "quadrature", "resolve_targets",
    "target_scores", "eval_mode",
]

# name -> (class, constructor keyword arguments taken from explain()'s kwargs)
METHODS: dict[str, tuple[type[Attribution], tuple[str, ...]]] = {
    "saliency": (Saliency, ()),
    "input_x_gradient": (InputXGradient, ()),
    "integrated_gradients": (IntegratedGradients, ()),
    "smoothgrad": (SmoothGrad, ("method",)),
    "gradcam": (GradCAM, ("layer",)),
    "gradcam++": (GradCAMPlusPlus, ("layer",)),
    "gradient_shap": (GradientShap, ()),
    "shapley_sampling": (ShapleyValueSampling, ()),
}


def explain(model: nn.Module, inputs: torch.Tensor, method: str = "gradcam", target=None, **kwargs) -> torch.Tensor:
    """Attributions of ``inputs`` by the method named ``method`` (see ``METHODS``)."""
    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}; available: {sorted(METHODS)}.")
    cls, constructor_keys = METHODS[method]
    constructor = {key: kwargs.pop(key) for key in constructor_keys if key in kwargs}
    return cls(model, **constructor).attribute(inputs, target=target, **kwargs)
