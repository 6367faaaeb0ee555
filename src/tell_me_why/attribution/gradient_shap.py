"""GradientSHAP: the expected gradient along random paths from random baselines, in chunks."""

from __future__ import annotations

import torch

from .base import Attribution, TargetSpec, accumulated_path_gradients, resolve_targets

__all__ = ["GradientShap"]


class GradientShap(Attribution):
    """``E_{b, a, e}[grad F(b + a (x - b) + e) * (x - b)]`` with a baseline ``b`` drawn from ``baselines``
    (K, ...), ``a ~ U(0, 1)`` and Gaussian noise ``e`` of standard deviation ``stdevs``, estimated with
    ``n_samples`` draws per image. At most ``internal_batch_size`` perturbed images go through the model at once
    (memory stays bounded whatever ``n_samples``). Seeded."""

    def _attribute(
        self,
        inputs: torch.Tensor,
        target: TargetSpec,
        baselines: torch.Tensor | None = None,
        n_samples: int = 50,
        stdevs: float = 0.0,
        seed: int | None = 0,
        internal_batch_size: int | None = 64,
    ) -> torch.Tensor:
        inputs = inputs.detach()
        baselines = torch.zeros_like(inputs[:1]) if baselines is None else torch.as_tensor(baselines).to(inputs)
        if baselines.shape[1:] != inputs.shape[1:]:
            raise ValueError(f"baselines must be (K, {tuple(inputs.shape[1:])}), got {tuple(baselines.shape)}.")
        with torch.no_grad():
            targets = resolve_targets(self.model(inputs), target)
        generator = torch.Generator(device=inputs.device)
        if seed is not None:
            generator.manual_seed(seed)
        batch = len(inputs)
        total = n_samples * batch
        image = torch.arange(batch, device=inputs.device).repeat(n_samples)
        chosen = torch.randint(len(baselines), (total,), generator=generator, device=inputs.device)
        alphas = torch.rand(total, generator=generator, device=inputs.device, dtype=inputs.dtype)
        shape = (-1,) + (1,) * (inputs.ndim - 1)

        def points(index: torch.Tensor):
            x, b = inputs[image[index]], baselines[chosen[index]]
            on_path = b + alphas[index].view(shape) * (x - b)
            if stdevs:
                on_path = on_path + stdevs * torch.randn(on_path.shape, generator=generator, device=inputs.device,
                                                         dtype=inputs.dtype)
            return on_path, image[index], x - b

        accumulated, _ = accumulated_path_gradients(
            self.model, inputs, total, internal_batch_size, points, targets)
        return accumulated / n_samples
