"""Integrated Gradients with Gauss-Legendre (default) or Riemann quadrature, batched over images and steps."""

from __future__ import annotations

import numpy as np
import torch

from .base import Attribution, TargetSpec, accumulated_path_gradients, resolve_targets, target_scores

__all__ = ["IntegratedGradients", "quadrature", "QUADRATURE_METHODS"]

QUADRATURE_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (alphas in [0, 1]) and weights of the path integral from the baseline (0) to the input (1)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return (nodes + 1) / 2, weights / 2
    if method == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError("The trapezoid rule needs n_steps >= 2.")
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n_steps), weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(f"method must be one of {QUADRATURE_METHODS}, got {method!r}.")
    return (np.arange(n_steps) + offsets[method]) / n_steps, np.full(n_steps, 1.0 / n_steps)


class IntegratedGradients(Attribution):
    """``(x - b) * sum_k w_k grad F(b + a_k (x - b))`` over quadrature nodes ``a_k`` with weights ``w_k``.

    ``internal_batch_size`` (default 64; ``None``: all at once) caps how many interpolated images go through the
    model at once, so memory does not grow with ``n_steps`` x batch; the result does not depend on it.
    ``return_convergence_delta=True`` also returns the completeness residual ``sum(attributions) - (F(x) - F(b))``
    per image.
    """

    def _attribute(
        self,
        inputs: torch.Tensor,
        target: TargetSpec,
        baselines: torch.Tensor | float | None = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = 64,
        return_convergence_delta: bool = False,
    ):
        inputs = inputs.detach()
        if baselines is None:
            baselines = torch.zeros_like(inputs)
        else:
            baselines = torch.as_tensor(baselines).to(inputs).expand_as(inputs)
        alphas, weights = quadrature(method, n_steps)
        batch = len(inputs)
        targets = None
        if target is None or return_convergence_delta:  # the predicted class needs a pass on the inputs
            with torch.no_grad():
                end = self.model(inputs)
            targets = resolve_targets(end, target)
        # Every (step, image) pair, step-major; chunked by internal_batch_size.
        alphas_t = torch.as_tensor(alphas, dtype=inputs.dtype, device=inputs.device)
        weights_t = torch.as_tensor(weights, dtype=inputs.dtype, device=inputs.device)
        difference = inputs - baselines
        shape = (-1,) + (1,) * (inputs.ndim - 1)

        def points(index: torch.Tensor):
            step, image = index // batch, index % batch
            return baselines[image] + alphas_t[step].view(shape) * difference[image], image, weights_t[step].view(shape)

        accumulated, targets = accumulated_path_gradients(
            self.model, inputs, n_steps * batch, internal_batch_size, points, targets, target)
        attributions = difference * accumulated
        if not return_convergence_delta:
            return attributions
        with torch.no_grad():
            start_scores = target_scores(self.model(baselines), targets)
            end_scores = target_scores(end, targets)
        delta = attributions.reshape(batch, -1).sum(1) - (end_scores - start_scores)
        return attributions, delta
