"""SmoothGrad around any attribution method: average over noisy copies of the input."""

from __future__ import annotations

import torch

from .base import Attribution, TargetSpec, expand_targets, resolve_targets

__all__ = ["SmoothGrad", "NOISE_TUNNEL_TYPES"]

NOISE_TUNNEL_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


class SmoothGrad(Attribution):
    """Mean (``"smoothgrad"``), mean of squares (``"smoothgrad_sq"``) or variance (``"vargrad"``) of
    ``method``'s attributions over ``n_samples`` copies with Gaussian noise of standard deviation
    ``stdev_spread * (max - min)`` of each image (noise relative to the input's range, as in the paper).

    ``method`` is an attribution class (default :class:`~tell_me_why.attribution.Saliency`) or instance. The
    target is fixed on the clean input, so every noisy copy explains the same class. Seeded: same seed, same map.
    """

    def __init__(self, model, method=None, **method_kwargs) -> None:
        super().__init__(model)
        from .gradients import Saliency

        method = method or Saliency
        self.method = method(model, **method_kwargs) if isinstance(method, type) else method

    def _attribute(
        self,
        inputs: torch.Tensor,
        target: TargetSpec,
        n_samples: int = 25,
        stdev_spread: float = 0.15,
        nt_type: str = "smoothgrad",
        seed: int | None = 0,
        samples_per_batch: int | None = None,
        **method_kwargs,
    ) -> torch.Tensor:
        if nt_type not in NOISE_TUNNEL_TYPES:
            raise ValueError(f"nt_type must be one of {NOISE_TUNNEL_TYPES}, got {nt_type!r}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        inputs = inputs.detach()
        if target is None:  # the predicted class needs a pass on the clean inputs
            with torch.no_grad():
                targets = resolve_targets(self.model(inputs), target)
        else:  # checked against the model's classes by the wrapped method
            targets = expand_targets(target, len(inputs)).to(inputs.device)
        flat = inputs.reshape(len(inputs), -1)
        sigma = (stdev_spread * (flat.max(1).values - flat.min(1).values)).view((-1,) + (1,) * (inputs.ndim - 1))
        generator = torch.Generator(device=inputs.device)
        if seed is not None:
            generator.manual_seed(seed)
        per_batch = samples_per_batch or n_samples
        total = total_sq = 0.0  # the wrapped method's maps may not have the input's shape (CAMs)
        for start in range(0, n_samples, per_batch):
            count = min(per_batch, n_samples - start)
            noise = torch.randn((count, *inputs.shape), generator=generator, device=inputs.device, dtype=inputs.dtype)
            noisy = (inputs[None] + sigma[None] * noise).reshape(count * len(inputs), *inputs.shape[1:])
            maps = self.method.attribute(noisy, target=targets.repeat(count), **method_kwargs)
            maps = maps.reshape(count, len(inputs), *maps.shape[1:])
            total = total + maps.sum(0)
            total_sq = total_sq + (maps**2).sum(0)
        mean, mean_sq = total / n_samples, total_sq / n_samples
        if nt_type == "smoothgrad":
            return mean
        if nt_type == "smoothgrad_sq":
            return mean_sq
        return mean_sq - mean**2
