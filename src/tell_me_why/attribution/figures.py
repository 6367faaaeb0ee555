"""Maps over their images: one overlay, or every method side by side."""

from __future__ import annotations

import textwrap

import numpy as np
import torch

from .._utils.images import pixel_relevance
from .._utils.plotting import display_array, figure_style, finish_figure

__all__ = ["plot_overlay", "plot_method_comparison"]


def plot_overlay(image: torch.Tensor, attribution: torch.Tensor, ax=None, title: str | None = None,
                 signed: bool = False, alpha: float = 0.55, colorbar: bool = True):
    """One map over its image (|map| in 'inferno', or signed in a diverging map), with a colour bar of the map's
    values unless ``colorbar=False``; returns the axes."""
    import matplotlib.pyplot as plt

    relevance = pixel_relevance(attribution[None] if attribution.ndim == 3 else attribution,
                                image.shape[-2:])[0].cpu().numpy()
    with figure_style():
        if ax is None:
            _, ax = plt.subplots(figsize=(4, 4))
        shown = display_array(image)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        if signed:
            limit = max(float(np.abs(relevance).max()), 1e-12)
            heat = ax.imshow(relevance, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha)
        else:
            heat = ax.imshow(np.abs(relevance), cmap="inferno", alpha=alpha)
        if colorbar:
            ax.figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(title or "")
        ax.axis("off")
    return ax


def plot_method_comparison(image: torch.Tensor, maps: dict[str, torch.Tensor], save_path=None, show=None,
                           title: str | None = None, notes: dict[str, str] | None = None):
    """The image and one overlay per method, side by side; saved (PNG) and closed when ``save_path`` is given.
    ``notes`` (method -> text) are printed under that method's overlay, e.g. why its map is blank."""
    import matplotlib.pyplot as plt

    with figure_style():
        fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.2 * (len(maps) + 1), 3.4), squeeze=False)
        shown = display_array(image)
        axes[0, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[0, 0].set_title("image")
        axes[0, 0].axis("off")
        for ax, (name, attribution) in zip(axes[0, 1:], maps.items()):
            plot_overlay(image, attribution, ax=ax, title=name)
            if notes and notes.get(name):
                ax.text(0.5, -0.04, textwrap.fill(notes[name], 44), transform=ax.transAxes, ha="center", va="top",
                        fontsize=7)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    finish_figure(fig, save_path, show, close=save_path is not None)
    return fig
