"""The registry of explanation methods by name (as timm registers models): ``explain(model, x, method=...)``.

Every entry is an :class:`~tell_me_why.attribution.base.Attribution` class. Other families add their own methods
with :func:`register_method` (``tell_me_why.causal`` registers ``"causal"`` when it is imported, which
``import tell_me_why`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .attention import AttentionRollout, has_attention
from .base import Attribution
from .cam import GradCAM, GradCAMPlusPlus
from .gradient_shap import GradientShap
from .gradients import InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients
from .shapley import ShapleyValueSampling
from .smoothgrad import SmoothGrad

__all__ = ["MethodSpec", "METHODS", "register_method", "available_methods", "build_method", "explain"]


@dataclass(frozen=True)
class MethodSpec:
    """A method: its class, the keyword arguments of :func:`explain` that go to its constructor (the others go to
    ``attribute``), and which models it applies to (``None``: any classifier)."""

    cls: type[Attribution]
    constructor_keys: tuple[str, ...] = ()
    applies_to: Callable[[nn.Module], bool] | None = None
    summary: str = ""


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, spec: MethodSpec, *, overwrite: bool = False) -> None:
    """Make ``spec`` available to :func:`explain` (and ``tmw explain --methods``) as ``name``."""
    if not isinstance(spec, MethodSpec) or not issubclass(spec.cls, Attribution):
        raise TypeError(f"Method {name!r} must be a MethodSpec of an Attribution subclass, got {spec!r}.")
    if name in METHODS and not overwrite and METHODS[name] != spec:
        raise ValueError(f"An explanation method named {name!r} is already registered; pass overwrite=True.")
    METHODS[name] = spec


def available_methods(model: nn.Module | None = None) -> list[str]:
    """Registered method names, or those that apply to ``model`` (attention rollout needs attention layers)."""
    return [name for name, spec in METHODS.items()
            if model is None or spec.applies_to is None or spec.applies_to(model)]


def explain(model: nn.Module, inputs: torch.Tensor, method: str = "gradcam", target=None, **kwargs) -> torch.Tensor:
    """Attributions of ``inputs`` by the method named ``method`` (see :data:`METHODS`); keyword arguments go to
    the method's constructor or to its ``attribute`` call."""
    attributor, call = build_method(model, method, **kwargs)
    return attributor.attribute(inputs, target=target, **call)


def build_method(model: nn.Module, method: str, **kwargs) -> tuple[Attribution, dict]:
    """The method named ``method`` built for ``model``, and the keyword arguments left for its ``attribute``
    calls: for explaining many batches with one object (whose ``last_notes`` say why a map is blank)."""
    if method not in METHODS:
        raise ValueError(f"Unknown explanation method {method!r}; available: {sorted(METHODS)}.")
    spec = METHODS[method]
    constructor = {key: kwargs.pop(key) for key in spec.constructor_keys if key in kwargs}
    return spec.cls(model, **constructor), kwargs


for _name, _spec in {
    "saliency": MethodSpec(Saliency, summary="gradient of the target score"),
    "input_x_gradient": MethodSpec(InputXGradient, summary="gradient x input"),
    "integrated_gradients": MethodSpec(IntegratedGradients, summary="path integral of gradients from a baseline"),
    "smoothgrad": MethodSpec(SmoothGrad, ("method",), summary="gradients averaged over noisy copies"),
    "gradcam": MethodSpec(GradCAM, ("layer",), summary="gradient-weighted class activation map"),
    "gradcam++": MethodSpec(GradCAMPlusPlus, ("layer",), summary="Grad-CAM++"),
    "gradient_shap": MethodSpec(GradientShap, summary="expected gradients from random baselines"),
    "shapley_sampling": MethodSpec(ShapleyValueSampling, summary="Shapley values of pixel groups"),
    "attention_rollout": MethodSpec(AttentionRollout, ("head_fusion", "discard_ratio"), has_attention,
                                    "attention rollout (vision transformers)"),
}.items():
    register_method(_name, _spec)
