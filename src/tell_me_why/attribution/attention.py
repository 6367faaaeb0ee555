"""Attention maps and attention rollout for vision transformers (torchvision ``VisionTransformer`` and timm ViTs).

The attention weights are read from every ``nn.MultiheadAttention`` by asking it for per-head weights during the
call (a forward pre-hook sets ``need_weights=True, average_attn_weights=False``; the module's output is the same),
so no model code changes. Rollout (Abnar & Zuidema, 2020) multiplies the layers' residual-corrected attention
matrices with **later layers on the left** (R = A_L ... A_2 A_1) and reads the CLS token's row over the patches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._utils.classifier import eval_mode
from .base import Attribution, TargetSpec

__all__ = ["attention_maps", "AttentionRollout", "has_attention"]


def _timm_attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm-style attention blocks: softmax weights pass through ``attn_drop`` unless fused attention is on."""
    return [m for m in model.modules()
            if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]


def has_attention(model: nn.Module) -> bool:
    """Whether ``model`` has attention modules that :func:`attention_maps` can read."""
    return any(isinstance(m, nn.MultiheadAttention) for m in model.modules()) or bool(_timm_attention_modules(model))


@torch.no_grad()
def attention_maps(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention weights (B, heads, tokens, tokens), in call order.

    Reads ``nn.MultiheadAttention`` (torchvision) and timm's attention blocks: for the latter, fused attention
    is switched off for the call (restored after), so the softmax weights reach ``attn_drop``, whose input is
    recorded (dropout is the identity in eval mode).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    timm_layers = _timm_attention_modules(model)
    if not layers and not timm_layers:
        raise ValueError("The model has no attention module (nn.MultiheadAttention or timm Attention).")
    captured: list[torch.Tensor] = []

    def ask_for_weights(_module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep(_module, _args, output):
        captured.append(output[1].detach())

    def keep_softmax(_module, args, _output):
        captured.append(args[0].detach())

    handles = [m.register_forward_pre_hook(ask_for_weights, with_kwargs=True) for m in layers]
    handles += [m.register_forward_hook(keep) for m in layers]
    handles += [m.attn_drop.register_forward_hook(keep_softmax) for m in timm_layers]
    fused = [m.fused_attn for m in timm_layers]
    try:
        for m in timm_layers:
            m.fused_attn = False
        with eval_mode(model):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in zip(timm_layers, fused):
            m.fused_attn = flag
    return captured


class AttentionRollout(Attribution):
    """Attention rollout: ``attribute(inputs)`` returns (B, h, w) over the patch grid (CLS token's row).

    ``head_fusion``: ``"mean"``, ``"max"`` or ``"min"`` over heads; ``discard_ratio`` zeroes that fraction of the
    lowest attentions of each layer (never the CLS column); each layer is ``0.5 A + 0.5 I``, rows renormalised.
    """

    def __init__(self, model: nn.Module, head_fusion: str = "mean", discard_ratio: float = 0.0) -> None:
        if head_fusion not in ("mean", "max", "min"):
            raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}.")
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}.")
        super().__init__(model)
        self.head_fusion, self.discard_ratio = head_fusion, discard_ratio

    def rollout(self, attentions: list[torch.Tensor]) -> torch.Tensor:
        """The (B, tokens, tokens) rollout of per-layer weights (B, heads, tokens, tokens)."""
        result = None
        for weights in attentions:
            fused = weights.mean(1) if self.head_fusion == "mean" else getattr(weights, self.head_fusion)(1).values
            if self.discard_ratio:
                threshold = torch.quantile(fused.flatten(1), self.discard_ratio, dim=1).view(-1, 1, 1)
                keep = fused >= threshold
                keep[..., 0] = True  # never discard attention to the CLS token
                fused = fused * keep
            identity = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
            layer = 0.5 * fused + 0.5 * identity
            layer = layer / layer.sum(-1, keepdim=True)
            result = layer if result is None else layer @ result  # later layers on the left
        return result

    def _attribute(self, inputs: torch.Tensor, target: TargetSpec) -> torch.Tensor:
        """CLS-to-patch rollout on the patch grid (B, h, w), normalised to max 1 per image (class-agnostic:
        ``target`` is accepted for a uniform interface and ignored)."""
        rolled = self.rollout(attention_maps(self.model, inputs))
        # CLS first, then any other prefix tokens (timm's distillation or register tokens), then the patches.
        prefix = getattr(self.model, "num_prefix_tokens", 1)
        patches = rolled[:, 0, prefix:]
        height, width = inputs.shape[-2:]
        rows = round(math.sqrt(patches.shape[1] * height / width))
        grid = patches.reshape(len(patches), rows, -1)
        return grid / grid.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
