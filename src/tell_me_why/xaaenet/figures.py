"""Figures of the latent space drawn during training: t-SNE after phases 1-2, supervised PLS after phase 3."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .._utils.plotting import CLASS_A_COLOR, CLASS_B_COLOR, figure_style, finish_figure

__all__ = ["save_latent_tsne_figure", "save_latent_pls_figure", "MIN_POINTS_FOR_FIGURE"]

logger = logging.getLogger(__name__)

# t-SNE and a 2-component PLS say nothing useful below this many points.
MIN_POINTS_FOR_FIGURE = 5


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _subsample(n: int, max_points: int, random_state: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, max_points, replace=False))


def _scatter_by_class(
    ax, xy: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] | None, class_a: int = 1
) -> None:
    """Scatter points coloured by class; class index ``class_a`` gets the class-A colour."""
    size = 30 if len(xy) < 500 else 10
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color="#555555", alpha=0.7, linewidths=0)
        return
    names = list(class_names) if class_names is not None else [str(c) for c in sorted(set(labels.tolist()))]
    colours = [CLASS_A_COLOR if index == class_a else CLASS_B_COLOR for index in range(len(names))]
    for index, name in enumerate(names):
        chosen = labels == index
        ax.scatter(
            xy[chosen, 0], xy[chosen, 1], s=size, color=colours[index], alpha=0.75, linewidths=0,
            label=f"{name} (n={int(chosen.sum())})",
        )
    ax.legend(loc="best", markerscale=1.5)


def save_latent_tsne_figure(
    z,
    save_path: str | Path,
    phase: str,
    encoding_dims: int | None = None,
    max_points: int = 5000,
    perplexity: float = 30,
    random_state: int = 42,
    show: bool | None = None,
    targets=None,
    class_names: Sequence[str] | None = None,
    target_class: str | None = None,
) -> Path | None:
    """Project ``z`` to 2-D with t-SNE and save a PNG, points coloured by class when ``targets`` are given.

    ``target_class`` (class A, default the second class) gets the same colour as in the PLS figure.

    The perplexity is clipped to what the number of points allows; with fewer than 5 points the figure is
    skipped (logged) and ``None`` is returned.
    """
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    z_np = _as_numpy(z).astype(np.float64)
    keep = _subsample(len(z_np), max_points, random_state)
    z_np = z_np[keep]
    labels = _as_numpy(targets).reshape(-1)[keep] if targets is not None else None
    n = len(z_np)
    if n < MIN_POINTS_FOR_FIGURE:
        logger.info("t-SNE figure skipped (%s): %d validation points, at least %d needed.", phase, n,
                    MIN_POINTS_FOR_FIGURE)
        return None
    used_perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=used_perplexity, init="pca", random_state=random_state).fit_transform(z_np)
    with figure_style():
        fig, ax = plt.subplots(figsize=(7, 6))
        class_a = list(class_names).index(target_class) if class_names and target_class in class_names else 1
        _scatter_by_class(ax, xy, labels, class_names, class_a)
        ax.set_title(f"Latent space after the {phase} phase (t-SNE)")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.text(
            0.01, 0.01, f"{encoding_dims or z_np.shape[1]}-D z, {n} images, perplexity {used_perplexity:.0f}",
            transform=ax.transAxes, fontsize=8, color="#666666",
        )
        return finish_figure(fig, save_path, show)


def save_latent_pls_figure(
    z,
    targets,
    save_path: str | Path,
    class_names: Sequence[str] | None = None,
    target_class: str | None = None,
    phase: str = "",
    encoding_dims: int | None = None,
    max_points: int = 10000,
    random_state: int = 42,
    show: bool | None = None,
) -> Path | None:
    """Supervised 2-component PLS of ``z`` against the binary target, saved as a PNG.

    PLS 1 is oriented so that positive values point toward ``target_class`` (class A; default: the second
    class). Points are coloured by class and an arrow shows the class-A direction. Skipped (``None``) with
    fewer than 5 points or a single class.
    """
    import matplotlib.pyplot as plt
    from sklearn.cross_decomposition import PLSRegression

    z_np = _as_numpy(z).astype(np.float64)
    labels = _as_numpy(targets).reshape(-1).astype(int)
    names = list(class_names) if class_names is not None else ["0", "1"]
    if len(names) != 2:
        raise ValueError(f"save_latent_pls_figure needs exactly two classes, got {names}.")
    if target_class is not None and target_class not in names:
        raise ValueError(f"target_class {target_class!r} is not one of the classes {names}.")
    positive = names.index(target_class) if target_class is not None else 1
    keep = _subsample(len(z_np), max_points, random_state)
    z_np, labels = z_np[keep], labels[keep]
    is_a = (labels == positive).astype(np.float64)
    if len(z_np) < MIN_POINTS_FOR_FIGURE or is_a.min() == is_a.max():
        logger.info("PLS figure skipped (%s): needs at least %d points from both classes.", phase,
                    MIN_POINTS_FOR_FIGURE)
        return None
    pls = PLSRegression(n_components=2, scale=False).fit(z_np, is_a)
    scores = pls.transform(z_np)
    # Anchor the sign: class A must have the larger mean PLS-1 score.
    if scores[is_a == 1, 0].mean() < scores[is_a == 0, 0].mean():
        scores[:, 0] *= -1
    r_axis = float(np.corrcoef(scores[:, 0], is_a)[0, 1])
    # Colour index 1 is class A in _scatter_by_class.
    ordered_names = [names[1 - positive], names[positive]]
    with figure_style():
        fig, ax = plt.subplots(figsize=(7, 6))
        _scatter_by_class(ax, scores, is_a.astype(int), ordered_names)
        centre = scores.mean(axis=0)
        head = centre[0] + 0.7 * (scores[:, 0].max() - centre[0])
        ax.annotate(
            "", xy=(head, centre[1]), xytext=(centre[0], centre[1]),
            arrowprops=dict(arrowstyle="-|>", color="black", lw=2),
        )
        ax.annotate(f"toward {names[positive]}", xy=(head, centre[1]), xytext=(0, 6), textcoords="offset points",
                    ha="right", va="bottom", fontsize=10)
        title = f"Decision direction in latent space (PLS){f' after the {phase} phase' if phase else ''}"
        ax.set_title(title)
        ax.set_xlabel(f"PLS 1 (toward {names[positive]}; in-sample r = {r_axis:.2f})")
        ax.set_ylabel("PLS 2")
        ax.text(
            0.01, 0.01, f"{encoding_dims or z_np.shape[1]}-D z, {len(z_np)} images (validation)",
            transform=ax.transAxes, fontsize=8, color="#666666",
        )
        return finish_figure(fig, save_path, show)
