"""The result of a causal explanation: map, masks, target, confidence, settings, statistics, metrics and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils.plotting import display_array, figure_style, finish_figure
from ..metrics import deletion_insertion, responsibility_entropy, robustness
from .extraction import dice, separate_by
from .occlusion import Occluder

__all__ = ["CausalExplanation"]

_EXPLANATION_COLOURS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _resized(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map resized (nearest for masks, bilinear for maps) to the displayed image's size."""
    if values.shape == shape:
        return values
    tensor = torch.from_numpy(values.astype(np.float32))[None, None]
    mode = "nearest" if values.dtype == bool else "bilinear"
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = torch.nn.functional.interpolate(tensor, size=shape, mode=mode, **kwargs)[0, 0].numpy()
    return out > 0.5 if values.dtype == bool else out


@dataclass
class CausalExplanation:
    """A responsibility map and the explanations read off it, for one image and one target class.

    ``responsibility`` (H, W) in [0, 1]; ``explanation`` the minimal sufficient pixel mask (H, W) bool (None when
    no pixel set suffices, e.g. when the model predicts the target on a fully masked image); ``explanations``
    all masks of a multiple-explanation search; ``contrastive`` the sufficient-and-necessary mask.
    """

    image: torch.Tensor
    responsibility: np.ndarray
    target: int
    confidence: float
    explanation: np.ndarray | None
    explanations: list[np.ndarray] = field(default_factory=list)
    contrastive: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    _occluder: Occluder | None = field(default=None, repr=False)
    _metrics: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def note(self) -> str | None:
        """Why the map is empty, or against what it was explained when the mask alone was the target; else None."""
        return self.stats.get("note") or self.stats.get("fallback")

    @property
    def area(self) -> float:
        return float(self.explanation.mean()) if self.explanation is not None else 0.0

    def metrics(self, robustness_samples: int | None = None) -> dict[str, Any]:
        """Area, responsibility entropy, insertion/deletion AUC (curves from zero pixels, x in [0, 1]) and
        robustness over ``robustness_samples`` noisy copies (default: the settings' value)."""
        samples = robustness_samples or self.settings.get("robustness_samples", 20)
        if self._metrics is not None and self._metrics["robustness_samples"] == samples:
            return self._metrics
        if self._occluder is None:
            raise RuntimeError("Metrics need the model: compute them before storing, or explain again.")
        entropy, entropy_normalised = responsibility_entropy(self.responsibility)
        occluder = self._occluder
        predictor = occluder.predictor
        curves = deletion_insertion(
            predictor, self.image[None], torch.from_numpy(self.responsibility)[None], target=self.target,
            steps=self.settings.get("curve_steps", 50), baseline=occluder.fill[None], ties="smoothed",
            output="probabilities", batch_size=2 * predictor.chunk_size(self.responsibility.shape))
        insertion_auc, deletion_auc = float(curves.insertion_auc[0]), float(curves.deletion_auc[0])
        metrics = {
            "area": self.area,
            "entropy": entropy,
            "entropy_normalised": entropy_normalised,
            "insertion_auc": insertion_auc,
            "deletion_auc": deletion_auc,
            "insertion_auc_normalised": float(curves.normalised(curves.insertion_auc)[0]),
            "deletion_auc_normalised": float(curves.normalised(curves.deletion_auc)[0]),
            "robustness": (robustness(predictor, self.image, self.explanation, self.target, samples,
                                      self.settings.get("seed"))
                           if self.explanation is not None else float("nan")),
            "robustness_samples": samples,
            "curves": {"fractions": curves.fractions.tolist(), "insertion_curve": curves.insertion[0].tolist(),
                       "deletion_curve": curves.deletion[0].tolist()},
        }
        self._metrics = metrics
        return metrics

    def separate_by(self, overlap: float) -> list[np.ndarray]:
        """The largest set of explanations whose pairwise Dice overlap is at most ``overlap``."""
        masks = self.explanations or ([self.explanation] if self.explanation is not None else [])
        return [masks[i] for i in separate_by(masks, overlap)]

    def overlap(self) -> np.ndarray:
        """Pairwise Dice overlaps of the multiple explanations."""
        masks = self.explanations
        return np.array([[dice(a, b) for b in masks] for a in masks])

    # -- plots ------------------------------------------------------------------------------------------------

    def _image_axes(self, ax, image: torch.Tensor | None):
        """A figure and axes (new unless ``ax``) showing the display image, with axis lines off; and the image."""
        import matplotlib.pyplot as plt

        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 5))
        shown = display_array(self.image if image is None else image)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.axis("off")
        ax.grid(False)
        return fig, ax, shown

    def plot_overlay(self, ax=None, image: torch.Tensor | None = None, save_path: str | Path | None = None,
                     show: bool | None = None):
        """The image with everything outside the minimal explanation dimmed and the explanation outlined.

        ``image``: a display version of the input (e.g. before normalisation, any size); the mask is resized to it.
        """
        with figure_style():
            fig, ax, shown = self._image_axes(ax, image)
            if self.explanation is not None:
                mask = _resized(self.explanation, shown.shape[:2])
                ax.imshow(np.where(mask, np.nan, 0.0), cmap="gray", alpha=0.6, vmin=0, vmax=1)
                ax.contour(mask, levels=[0.5], colors=[_EXPLANATION_COLOURS[0]], linewidths=1.5)
                ax.set_title(f"Minimal sufficient explanation ({100 * self.area:.1f} % of pixels)")
            else:
                ax.set_title("No sufficient pixel set (nothing to explain)")
        return self._finish(fig, ax, save_path, show)

    def plot_heatmap(self, ax=None, image: torch.Tensor | None = None, save_path=None, show=None):
        """The responsibility map over the image."""
        with figure_style():
            fig, ax, shown = self._image_axes(ax, image)
            heat = ax.imshow(_resized(self.responsibility, shown.shape[:2]), cmap="inferno", alpha=0.6, vmin=0,
                             vmax=max(float(self.responsibility.max()), 1e-12))
            fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04, label="responsibility")
            ax.set_title(f"Responsibility for class {self.target} (p = {self.confidence:.2f})")
        return self._finish(fig, ax, save_path, show)

    def plot_surface(self, save_path=None, show=None):
        """The responsibility landscape as a 3-D surface."""
        import matplotlib.pyplot as plt

        with figure_style():
            fig = plt.figure(figsize=(6, 5))
            ax = fig.add_subplot(projection="3d")
            rows, cols = np.mgrid[: self.responsibility.shape[0], : self.responsibility.shape[1]]
            ax.plot_surface(cols, rows, self.responsibility, cmap="inferno", linewidth=0, antialiased=True)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            ax.set_zlabel("responsibility")
            ax.invert_yaxis()
            ax.set_title(f"Responsibility landscape, class {self.target}")
        return self._finish(fig, ax, save_path, show)

    def plot_multiple(self, ax=None, image: torch.Tensor | None = None, save_path=None, show=None):
        """Every explanation of a multiple-explanation search, one colour each."""
        with figure_style():
            fig, ax, shown = self._image_axes(ax, image)
            masks = self.explanations or ([self.explanation] if self.explanation is not None else [])
            for index, mask in enumerate(masks):
                colour = _EXPLANATION_COLOURS[index % len(_EXPLANATION_COLOURS)]
                ax.contour(_resized(mask, shown.shape[:2]), levels=[0.5], colors=[colour], linewidths=1.5)
            ax.set_title(f"{len(masks)} explanation(s)")
        return self._finish(fig, ax, save_path, show)

    @staticmethod
    def _finish(fig, ax, save_path, show):
        if save_path is not None or show is not None:
            finish_figure(fig, save_path, show, close=save_path is not None)
        return ax
