"""Figures of the latent explanations: decision-axis traversals, latent counterfactuals, neighbours in latent space.

Decoded images are drawn on one fixed [0, 1] scale (never stretched image by image), since a change of brightness
along the axis is part of what they show; differences use one symmetric colour scale per figure, so that a small
change looks small.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from .._utils.plotting import CLASS_A_COLOR, CLASS_B_COLOR, display_array, figure_style, finish_figure
from .latent_explanations import AxisTraversal, LatentCounterfactuals, LatentNeighbours

__all__ = ["save_axis_traversal_figure", "save_counterfactual_figure", "save_neighbour_figure"]

CHANGE_CMAP = "RdBu_r"  # red: brighter in the moved image, blue: darker


def _bare(ax) -> None:
    """No ticks and no grid, but room for titles and labels (``axis("off")`` would hide the row labels)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _show(ax, image: Tensor, border: str | None = None) -> None:
    shown = display_array(image, scale=False)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0.0, vmax=1.0)
    _bare(ax)
    if border is not None:
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(border)
            spine.set_linewidth(2.5)


def _change(ax, difference: Tensor, limit: float):
    """Signed change of brightness (the channel mean of the difference), on a symmetric colour scale."""
    image = ax.imshow(difference.detach().float().mean(0).numpy(), cmap=CHANGE_CMAP, vmin=-limit, vmax=limit)
    _bare(ax)
    return image


def _limit(differences: Tensor) -> float:
    """One colour scale for every difference map of a figure; the 99th percentile keeps one speck from
    washing the rest out."""
    values = differences.detach().float().mean(-3).abs().flatten().numpy()
    return max(float(np.percentile(values, 99)) if values.size else 0.0, 1e-3)


def _skip_note(uses_skips: bool, what: str) -> str:
    if uses_skips:
        return (f"The decoder has skip connections: {what} decoded with the skip activations of the original image, "
                f"which hold its layout in place (and can hold a change back).")
    return "The decoder has no skip connections: every image is decoded from z alone."


def _caption(fig, text: str) -> None:
    """A grey note under the figure, wrapped to its width (a longer line would widen the saved picture)."""
    width = int(fig.get_figwidth() * 14)  # characters of 8-point text per figure width
    lines = [textwrap.fill(paragraph, width) for paragraph in text.split("\n")]
    fig.supxlabel("\n".join(lines), fontsize=8, color="#555555")


def _class_colour(index: int, class_a: int) -> str:
    return CLASS_A_COLOR if index == class_a else CLASS_B_COLOR


def save_axis_traversal_figure(
    traversal: AxisTraversal,
    row_labels: Sequence[str],
    class_names: Sequence[str],
    save_path: str | Path,
    title: str | None = None,
    show: bool | None = None,
) -> Path | None:
    """Each row of ``traversal`` as two strips: the decoded frames along the axis, and under them what would change
    (``decoded(z + t w) - decoded(z)``); the first column is ``z`` itself decoded.

    ``row_labels`` name the rows (a file name, "mean of <class>"); ``class_names`` are the two classes in index
    order. Columns are places on the axis, shared by every row, titled with the classifier's probability of class
    A there; under each frame, the model's probability of class A for the decoded image, read back.
    """
    import matplotlib.pyplot as plt

    rows, steps = traversal.decoded.shape[:2]
    if len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} traversal rows.")
    class_a = traversal.axis.class_a
    name_a, name_b = class_names[class_a], class_names[1 - class_a]
    limit = _limit(traversal.changes)
    start = traversal.axis.position(traversal.z)
    with figure_style():
        fig, axes = plt.subplots(2 * rows, steps + 1, figsize=(1.25 * (steps + 1) + 1.6, 2.6 * rows + 1.4),
                                 squeeze=False, layout="constrained")
        for row in range(rows):
            frames, changes = axes[2 * row], axes[2 * row + 1]
            _show(frames[0], traversal.reconstruction[row])
            frames[0].set_ylabel(row_labels[row], fontsize=9)
            frames[0].set_xlabel(f"decoded z\n({start[row]:+.1f} SD)", fontsize=7)
            changes[0].set_ylabel("what would\nchange", fontsize=8)
            _bare(changes[0])
            for col in range(steps):
                _show(frames[col + 1], traversal.decoded[row, col])
                frames[col + 1].set_xlabel(f"read back {traversal.decoded_probability[row, col]:.2f}", fontsize=7)
                image = _change(changes[col + 1], traversal.changes[row, col], limit)
        for col in range(steps):
            p = float(traversal.probability[0, col])
            axes[0, col + 1].set_title(f"{traversal.positions[col]:+.1f} SD\np({name_a}) {p:.2f}", fontsize=8,
                                       color=CLASS_A_COLOR if p > 0.5 else CLASS_B_COLOR)
        fig.colorbar(image, ax=axes[1::2, :].ravel().tolist(), shrink=0.8, aspect=30,
                     label="change (red: brighter)")
        fig.suptitle(title or f"The decision axis in pixels: from {name_b} (left) to {name_a} (right)")
        _caption(fig, f"Columns move z to the same place on the axis, in prior SDs from the decision boundary "
                      f"(negative: {name_b}'s side). p({name_a}): the classifier at that z; read back: the model on "
                      f"the decoded image.\n" + _skip_note(traversal.uses_skips, "every frame is"))
    return finish_figure(fig, save_path, show)


def save_counterfactual_figure(
    counterfactuals: LatentCounterfactuals,
    captions: Sequence[str],
    class_names: Sequence[str],
    save_path: str | Path,
    class_a: int = 1,
    show: bool | None = None,
) -> Path | None:
    """One row per image: the image, its decoded ``z`` (with SSIM against the image), the decoded counterfactual
    (how far ``z`` moved, the critic's score, whether the model reads it as the other class) and what changed."""
    import matplotlib.pyplot as plt

    cf = counterfactuals
    rows = len(cf.images)
    if len(captions) != rows:
        raise ValueError(f"{len(captions)} captions for {rows} counterfactuals.")
    limit = _limit(cf.difference)
    with figure_style():
        fig, axes = plt.subplots(rows, 4, figsize=(9.2, 2.45 * rows + 1.0), squeeze=False, layout="constrained")
        for row in range(rows):
            original, target = int(cf.original_class[row]), int(cf.target_class[row])
            _show(axes[row, 0], cf.images[row], border=_class_colour(original, class_a))
            axes[row, 0].set_title(captions[row], fontsize=8)
            _show(axes[row, 1], cf.reconstruction[row])
            axes[row, 1].set_title(f"decoded z\nSSIM {cf.reconstruction_ssim[row]:.2f}", fontsize=8)
            flipped = bool(cf.flipped[row])
            _show(axes[row, 2], cf.counterfactual[row], border=_class_colour(target, class_a))
            axes[row, 2].set_title(f"toward {class_names[target]}: {'flipped' if flipped else 'NOT flipped'}\n"
                                   f"|dz| {cf.distance[row]:.1f} SD, critic {cf.critic_score[row]:.2f} "
                                   f"({cf.critic_score_original[row]:.2f})", fontsize=8,
                                   color="#222222" if flipped else "#8a1c1c")
            image = _change(axes[row, 3], cf.difference[row], limit)
            axes[row, 3].set_title("counterfactual\nminus decoded z", fontsize=8)
        fig.colorbar(image, ax=axes[:, 3].tolist(), shrink=0.8, aspect=30, label="change (red: brighter)")
        fig.suptitle(f"Latent counterfactuals: the smallest move of z that flips the decision ({cf.method})")
        _caption(fig, f"{int(cf.flipped.sum())} of {rows} flipped: the model, reading the decoded counterfactual "
                      f"back, gives it the other class. |dz|: the move in prior SDs; critic: its probability that "
                      f"the moved z comes from the prior (the original z's in brackets). Borders: the class decided. "
                      + _skip_note(cf.uses_skips, "each counterfactual is"))
    return finish_figure(fig, save_path, show)


def save_neighbour_figure(
    images: Tensor,
    neighbours: LatentNeighbours,
    reference_images: Mapping[int, Tensor] | Tensor,
    captions: Sequence[str],
    class_names: Sequence[str],
    save_path: str | Path,
    class_a: int = 1,
    show: bool | None = None,
) -> Path | None:
    """Explanation by example: each image beside its nearest reference images in latent space, of the class it is
    given and of the other class, then each class's most typical reference images along the axis.

    ``reference_images[i]`` is reference image ``i`` (the index of ``neighbours``), a tensor (C, H, W) in [0, 1].
    """
    import matplotlib.pyplot as plt

    rows, k = neighbours.same.shape
    if len(images) != rows or len(captions) != rows:
        raise ValueError(f"{len(images)} images and {len(captions)} captions for {rows} rows of neighbours.")
    with figure_style():
        # One grid: the explained images' rows, then a row of each class's typical images (the other class left,
        # class A right), so every thumbnail has the same size.
        fig, axes = plt.subplots(rows + 1, 2 * k + 1, figsize=(1.45 * (2 * k + 1) + 0.4, 1.8 * (rows + 1) + 1.0),
                                 squeeze=False, layout="constrained")
        for row in range(rows):
            decided = int(neighbours.query_class[row])
            _show(axes[row, 0], images[row], border=_class_colour(decided, class_a))
            axes[row, 0].set_title(captions[row], fontsize=8)
            for kind, offset, shown_class in (("same", 1, decided), ("other", k + 1, 1 - decided)):
                indices, distances = getattr(neighbours, kind)[row], getattr(neighbours, f"{kind}_distance")[row]
                for j, (index, distance) in enumerate(zip(indices, distances)):
                    ax = axes[row, offset + j]
                    _show(ax, reference_images[int(index)], border=_class_colour(shown_class, class_a))
                    ax.set_xlabel(f"{distance:.1f} SD away", fontsize=7)
                    if j == 0:
                        ax.set_title(f"nearest {class_names[shown_class]}", fontsize=8, loc="left")
        typical = axes[rows]
        _bare(typical[0])
        typical[0].text(0.5, 0.5, "most typical\nalong the axis", ha="center", va="center", fontsize=9,
                        transform=typical[0].transAxes)
        for offset, c in ((1, 1 - class_a), (k + 1, class_a)):
            for j, (index, position) in enumerate(zip(neighbours.typical[c], neighbours.typical_position[c])):
                ax = typical[offset + j]
                _show(ax, reference_images[int(index)], border=_class_colour(c, class_a))
                ax.set_xlabel(f"{position:+.1f} SD", fontsize=7)
                if j == 0:
                    ax.set_title(f"most typical {class_names[c]}", fontsize=8, loc="left")
        fig.suptitle("Explanation by example: the nearest training images in latent space")
        _caption(fig, f"Top rows: each image, its nearest training images of the class it is given, then of the "
                      f"other class (Euclidean distance in z, prior SDs).\nLast row: the training images deepest on "
                      f"their class's side of the decision boundary (SD toward {class_names[class_a]}). Borders: the "
                      f"class given or labelled.")
    return finish_figure(fig, save_path, show)
