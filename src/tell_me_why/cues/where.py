"""Where the decision axis lives in the image: each pixel's value correlated with the axis score, over images.

A global saliency that needs no gradient and no model call: the axis scores are the held-out scores of
:func:`~tell_me_why.cues.axis.fit_decision_axis`, and a pixel counts when its correlation beats a family-wise
permutation threshold (the largest |r| over all pixels for shuffled scores), so a control with no cause shows
any pixel at all with probability at most ``alpha``, whatever the number of pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._utils.plotting import figure_style, finish_figure
from .._utils.stats import columnwise_correlation

__all__ = ["PixelAxisMap", "pixel_axis_map"]


@dataclass
class PixelAxisMap:
    """Per-pixel Pearson r (H, W) between brightness (the channel mean) and the axis score, toward class A.

    ``threshold`` is the |r| that the largest |r| of shuffled scores exceeds with probability ``alpha``
    (``permutations`` shuffles); ``significant`` marks the pixels above it. ``mean_image`` (H, W) is the images'
    mean brightness, to draw the map on.
    """

    correlation: np.ndarray
    threshold: float
    alpha: float
    permutations: int
    n_images: int
    mean_image: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        return np.abs(self.correlation) > self.threshold

    def plot(self, class_a: str = "class A", class_b: str = "class B", save_path: str | Path | None = None,
             show: bool | None = None):
        """The mean image with the significant correlations over it (red: brighter goes with ``class_a``)."""
        import matplotlib.pyplot as plt

        with figure_style():
            fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
            axes[0].imshow(self.mean_image, cmap="gray")
            axes[0].set_title(f"mean of {self.n_images} images")
            limit = max(float(np.abs(self.correlation).max()), 1e-6)
            axes[1].imshow(self.mean_image, cmap="gray")
            shown = np.where(self.significant, self.correlation, np.nan)
            heat = axes[1].imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.85)
            count = int(self.significant.sum())
            axes[1].set_title(f"{count} pixel(s) with |r| > {self.threshold:.2f}" if count
                              else f"no pixel beats |r| = {self.threshold:.2f}")
            colourbar = fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04)
            colourbar.set_label(f"r: brighter with {class_a} (red) or {class_b} (blue)")
            for ax in axes:
                ax.axis("off")
            fig.suptitle(f"Where brightness goes with the decision axis (family-wise p < {self.alpha:g}, "
                         f"{self.permutations} permutations)")
            fig.tight_layout()
        return finish_figure(fig, save_path, show, close=save_path is not None)


def pixel_axis_map(images: np.ndarray, scores: np.ndarray, permutations: int = 199, alpha: float = 0.05,
                   seed: int = 0) -> PixelAxisMap:
    """Correlate each pixel's brightness with the axis ``scores`` over ``images``.

    Parameters
    ----------
    images
        (N, H, W) or (N, C, H, W) array of the same size (channels are averaged into brightness).
    scores
        (N,) axis score of each image (positive: toward class A).
    permutations, alpha, seed
        The family-wise threshold: the ``1 - alpha`` quantile of the largest |r| over pixels when the scores are
        shuffled ``permutations`` times.
    """
    images = np.asarray(images, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if images.ndim == 4:
        images = images.mean(1)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {images.shape}.")
    if len(images) != len(scores):
        raise ValueError(f"{len(images)} images but {len(scores)} axis scores.")
    if np.ptp(scores) == 0:
        raise ValueError("the axis scores are all equal: there is no axis to map.")
    if len(images) < 4:
        raise ValueError(f"a pixel map needs at least 4 images, got {len(images)}.")
    if not 0 < alpha < 1 or permutations < 1:
        raise ValueError(f"alpha must be in (0, 1) and permutations >= 1, got {alpha} and {permutations}.")
    n, height, width = images.shape
    pixels = images.reshape(n, -1)
    correlation = columnwise_correlation(pixels, scores)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(scores) for _ in range(permutations)], axis=1)  # (N, permutations)
    centred = pixels - pixels.mean(0)
    norms = np.sqrt((centred**2).sum(0))
    norms[norms == 0] = np.inf  # a constant pixel correlates with nothing
    shuffled = (shuffled - shuffled.mean(0)) / np.sqrt(((shuffled - shuffled.mean(0)) ** 2).sum(0))
    largest = np.abs((centred / norms).T @ shuffled).max(0)  # the largest |r| over pixels, per shuffle
    # The exact permutation quantile: the ceil((1 - alpha)(B + 1))-th of the B shuffles and the observed map.
    rank = int(np.ceil((1 - alpha) * (permutations + 1)))
    threshold = float(np.sort(largest)[rank - 1]) if rank <= permutations else float("inf")
    return PixelAxisMap(correlation.reshape(height, width), threshold, alpha, permutations, n,
                        images.mean(0))
