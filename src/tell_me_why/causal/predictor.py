"""Class probabilities from any classifier, in batches, counting forward passes and model calls."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch

from .._utils.classifier import class_probabilities, eval_mode
from .._utils.devices import module_device

__all__ = ["Predictor"]

_PROBABILITY_TOLERANCE = 1e-4
# batch_size="auto": on a CPU, about this many pixels per model call (measured fastest for small CNNs: larger
# batches spill the caches, e.g. 16 images at 64 px, 1 at 224 px); on an accelerator, this many images.
_CPU_PIXELS_PER_CALL = 65536
_ACCELERATOR_BATCH = 256


class Predictor:
    """Wrap an ``nn.Module`` or a callable so that ``predictor(images) -> probabilities (N, C)``.

    The model may return logits or probabilities (``output="auto"`` tells them apart: rows in [0, 1] that sum to
    1 are probabilities), with a single logit per image (a sigmoid binary head: class 1 has probability
    sigmoid(logit)), two logits, or many classes. Images go through the model in chunks of ``batch_size``;
    ``forward_passes`` counts images and ``model_calls`` counts calls.
    """

    def __init__(self, model: torch.nn.Module | Callable, batch_size: int = 256, output: str = "auto") -> None:
        if output not in ("auto", "logits", "probabilities"):
            raise ValueError(f"output must be 'auto', 'logits' or 'probabilities', got {output!r}.")
        if not callable(model):
            raise TypeError(f"model must be an nn.Module or a callable, got {type(model).__name__}.")
        self.model = model
        self.batch_size = batch_size
        self.output = output
        self.forward_passes = 0
        self.model_calls = 0
        self._is_probability: bool | None = None
        self.device = module_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu")

    def _to_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        raw = torch.as_tensor(raw).float()
        if raw.ndim == 1:
            raw = raw[:, None]
        if raw.ndim != 2:
            raise ValueError(f"The model must return (N, classes) scores, got shape {tuple(raw.shape)}.")
        if self._is_probability is None:  # decided once, on the first outputs seen, so that chunks agree
            looks_like_probabilities = bool(
                raw.min() >= 0 and raw.max() <= 1
                and (raw.shape[1] == 1
                     or torch.allclose(raw.sum(1), torch.ones(len(raw), device=raw.device),
                                       atol=_PROBABILITY_TOLERANCE))
            )
            self._is_probability = self.output == "probabilities" or (
                self.output == "auto" and looks_like_probabilities
            )
        return class_probabilities(raw, already_probabilities=self._is_probability)

    def chunk_size(self, image_shape) -> int:
        """Images per model call for images of ``image_shape`` (H, W)."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        if self.device.type != "cpu":
            return _ACCELERATOR_BATCH
        return max(1, min(_ACCELERATOR_BATCH, _CPU_PIXELS_PER_CALL // int(image_shape[0] * image_shape[1])))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, C) on the CPU for images (N, C, H, W)."""
        outputs = []
        # Every module's own mode comes back afterwards (a frozen BatchNorm inside a training model stays frozen).
        with eval_mode(self.model) if isinstance(self.model, torch.nn.Module) else nullcontext():
            step = self.chunk_size(images.shape[-2:])
            for start in range(0, len(images), step):
                chunk = images[start : start + step].to(self.device)
                outputs.append(self._to_probabilities(self.model(chunk)).cpu())
                self.forward_passes += len(chunk)
                self.model_calls += 1
        return torch.cat(outputs) if outputs else torch.zeros(0, 2)
