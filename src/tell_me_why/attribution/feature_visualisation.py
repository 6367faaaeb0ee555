"""What does a unit respond to? Activation maximisation and DeepDream, via forward hooks.

Both optimise the *image* by gradient ascent (``torch.autograd.grad`` with respect to the image only: the model's
parameters and their ``.grad`` are untouched), with transformation robustness (random jitter, scale and small
rotations each step) and regularisers (L2 and total variation) so that the result is an image rather than
adversarial noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._utils.devices import module_device
from .base import eval_mode

__all__ = ["ActivationMaximisation", "DeepDream"]


def _capture(layer: nn.Module, store: list):
    def keep(_module, _inputs, output):
        store.append(output)

    return layer.register_forward_hook(keep)


def _random_transform(images: torch.Tensor, generator: torch.Generator, jitter: int, scale: float,
                      degrees: float) -> torch.Tensor:
    """Jitter (roll), scale and rotate a batch with one random affine map (differentiable). ``generator`` is a CPU
    generator whatever the images' device: it only draws the map's numbers."""
    if jitter:
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        images = torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    factor = 1.0 + (2 * torch.rand((), generator=generator).item() - 1) * scale
    angle = math.radians((2 * torch.rand((), generator=generator).item() - 1) * degrees)
    theta = torch.tensor([[math.cos(angle) / factor, -math.sin(angle) / factor, 0.0],
                          [math.sin(angle) / factor, math.cos(angle) / factor, 0.0]],
                         dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def _total_variation(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()


class ActivationMaximisation:
    """Synthesise an image that maximises ``layer``'s activation: the mean of channel ``unit`` for a 4-D
    activation, or output ``unit`` (e.g. a class logit) for a 2-D one.

    The image is parameterised as ``sigmoid(p)`` so that it stays in [0, 1]."""

    def __init__(self, model: nn.Module, layer: nn.Module, unit: int) -> None:
        self.model, self.layer, self.unit = model, layer, unit

    def _objective(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.ndim == 4:
            return activation[:, self.unit].mean()
        return activation.reshape(len(activation), -1)[:, self.unit].mean()

    def generate(
        self,
        shape: tuple[int, ...] = (1, 3, 64, 64),
        steps: int = 128,
        lr: float = 0.05,
        jitter: int = 4,
        scale: float = 0.05,
        degrees: float = 5.0,
        l2: float = 1e-3,
        tv: float = 0.05,
        seed: int = 0,
    ) -> tuple[torch.Tensor, list[float]]:
        """The image (in [0, 1], on the model's device) and the objective per step."""
        generator = torch.Generator().manual_seed(seed)  # drawn on the CPU: a seed gives the same start everywhere
        parameters = (0.1 * torch.randn(shape, generator=generator)).to(module_device(self.model)).requires_grad_(True)
        optimiser = torch.optim.Adam([parameters], lr=lr)
        history = []
        captured: list[torch.Tensor] = []
        handle = _capture(self.layer, captured)
        try:
            with eval_mode(self.model), torch.enable_grad():
                for _ in range(steps):
                    captured.clear()
                    image = torch.sigmoid(parameters)
                    self.model(_random_transform(image, generator, jitter, scale, degrees))
                    objective = self._objective(captured[-1])
                    loss = -objective + l2 * (image - 0.5).pow(2).mean() + tv * _total_variation(image)
                    (gradient,) = torch.autograd.grad(loss, parameters)
                    parameters.grad = gradient
                    optimiser.step()
                    history.append(objective.item())
        finally:
            handle.remove()
        return torch.sigmoid(parameters).detach(), history


class DeepDream:
    """Amplify what ``layer`` sees in an image: gradient ascent on the mean squared activation over
    ``octaves`` scales (coarse to fine), with jitter; pixel values stay in the image's range."""

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model, self.layer = model, layer

    def dream(self, image: torch.Tensor, octaves: int = 3, octave_scale: float = 1.4, steps: int = 10,
              lr: float = 0.02, jitter: int = 4, seed: int = 0) -> torch.Tensor:
        """The dreamed version of ``image`` (B, C, H, W), on the model's device like ``image``."""
        generator = torch.Generator().manual_seed(seed)
        low, high = float(image.min()), float(image.max())
        size = image.shape[-2:]
        sizes = [tuple(max(8, int(s / octave_scale**k)) for s in size) for k in range(octaves)][::-1]
        detail = torch.zeros_like(image)
        captured: list[torch.Tensor] = []
        handle = _capture(self.layer, captured)
        try:
            with eval_mode(self.model), torch.enable_grad():
                for octave_size in sizes:
                    base = F.interpolate(image, size=octave_size, mode="bilinear", align_corners=False)
                    dreamed = base + F.interpolate(detail, size=octave_size, mode="bilinear", align_corners=False)
                    for _ in range(steps):
                        dreamed = dreamed.detach().requires_grad_(True)
                        captured.clear()
                        self.model(_random_transform(dreamed, generator, jitter, 0.0, 0.0))
                        objective = captured[-1].pow(2).mean()
                        (gradient,) = torch.autograd.grad(objective, dreamed)
                        dreamed = (dreamed + lr * gradient / gradient.abs().mean().clamp_min(1e-12)).clamp(low, high)
                    detail = F.interpolate(dreamed.detach() - base, size=size, mode="bilinear", align_corners=False)
        finally:
            handle.remove()
        return (image + detail).clamp(low, high).detach()
