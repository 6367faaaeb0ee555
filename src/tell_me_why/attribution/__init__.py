"""Local explanations for any PyTorch classifier: one class per method with one ``attribute()`` call.

``explain(model, inputs, method="gradcam", target=None, **kwargs)`` runs a method by name from the registry
(:data:`METHODS`; ``"causal"`` comes from :mod:`tell_me_why.causal`). TCAV and feature visualisation answer other
questions (is a concept used? what does a unit respond to?) and have their own calls.
"""

from __future__ import annotations

from .attention import AttentionRollout, attention_maps, has_attention
from .base import Attribution, eval_mode, resolve_targets, target_scores
from .cam import GradCAM, GradCAMPlusPlus, default_cam_layer, upsample
from .feature_visualisation import ActivationMaximisation, DeepDream
from .figures import plot_method_comparison, plot_overlay
from .gradient_shap import GradientShap
from .gradients import InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients, quadrature
from .registry import METHODS, MethodSpec, available_methods, build_method, explain, register_method
from .shapley import ShapleyValueSampling, grid_groups, patch_groups, superpixel_groups
from .smoothgrad import SmoothGrad
from .tcav import TCAV, TCAVResult

__all__ = [
    "Attribution",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientShap",
    "ShapleyValueSampling",
    "AttentionRollout",
    "attention_maps",
    "has_attention",
    "patch_groups",
    "superpixel_groups",
    "grid_groups",
    "ActivationMaximisation",
    "DeepDream",
    "TCAV",
    "TCAVResult",
    "METHODS",
    "MethodSpec",
    "register_method",
    "build_method",
    "available_methods",
    "explain",
    "default_cam_layer",
    "upsample",
    "quadrature",
    "resolve_targets",
    "target_scores",
    "eval_mode",
    "plot_overlay",
    "plot_method_comparison",
]
