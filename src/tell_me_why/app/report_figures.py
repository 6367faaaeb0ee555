"""Figures of the run report: sample images, loss curves, confusion matrix, randomisation curve, explanation
gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._utils.images import pixel_relevance
from .._utils.plotting import display_array, figure_style, finish_figure

__all__ = ["save_samples", "save_loss_curves", "save_confusion_matrix", "save_randomisation_curve", "save_gallery"]


def save_samples(paths_by_class: dict[str, list[str]], save_path: Path, per_class: int = 6) -> Path:
    """A row of sample images per class."""
    import matplotlib.pyplot as plt
    from PIL import Image

    with figure_style():
        fig, axes = plt.subplots(len(paths_by_class), per_class, figsize=(1.6 * per_class, 1.8 * len(paths_by_class)),
                                 squeeze=False)
        for row, (name, paths) in enumerate(paths_by_class.items()):
            for col in range(per_class):
                ax = axes[row, col]
                ax.axis("off")
                if col < len(paths):
                    with Image.open(paths[col]) as image:
                        ax.imshow(np.asarray(image.convert("RGB")))
                if col == 0:
                    ax.set_title(name, loc="left", fontsize=11)
        fig.tight_layout()
    return finish_figure(fig, save_path, show=False)


def save_loss_curves(history: list[dict], save_path: Path) -> Path:
    """Training and validation losses (and accuracy when recorded) per epoch, one panel per phase."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with figure_style():
        fig, axes = plt.subplots(1, len(history), figsize=(4.5 * len(history), 3.4), squeeze=False)
        for ax, phase in zip(axes[0], history):
            values = np.array(phase["values"], dtype=float) if phase["values"] else np.zeros((0, 0))
            names = ["train_loss", "valid_loss", *phase["metric_names"]][: values.shape[1] if values.size else 0]
            epochs = np.arange(1, len(values) + 1)
            for index, name in enumerate(names):
                if name in ("train_loss", "valid_loss", "accuracy"):
                    ax.plot(epochs, values[:, index], marker="o", label=name)
            losses = values[:, :2] if values.size else values
            if losses.size and (losses > 0).all() and losses.max() > 20 * losses.min():
                ax.set_yscale("log")  # a first-epoch spike would otherwise flatten every later epoch
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{phase['phase']} ({phase['seconds']:.0f} s)")
            ax.set_xlabel("epoch")
            if phase.get("best_epoch") is not None and len(values):
                # The weights the phase passed on: with early stopping, not necessarily the last epoch's.
                ax.axvline(phase["best_epoch"] + 1, color="#888888", linestyle="--", linewidth=1, label="kept epoch")
            if len(values):
                ax.legend(fontsize=8)
            else:  # a phase of 0 epochs: nothing to draw
                ax.text(0.5, 0.5, "skipped (0 epochs)", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
    return finish_figure(fig, save_path, show=False)


def save_confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: list[str], save_path: Path) -> Path:
    import matplotlib.pyplot as plt

    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(true, predicted):
        matrix[int(t), int(p)] += 1
    with figure_style():
        fig, ax = plt.subplots(figsize=(3.8, 3.4))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=12,
                    color="white" if count > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.grid(False)
        ax.set_title(f"Validation accuracy {np.trace(matrix) / max(matrix.sum(), 1):.1%}")
        fig.tight_layout()
    return finish_figure(fig, save_path, show=False)


def save_randomisation_curve(steps: list[dict], save_path: Path, method: str = "Grad-CAM",
                             labelled_ticks: int = 8) -> Path:
    """Cascading randomisation as a curve: rank correlation and SSIM of the maps with the original ones against
    the number of layers randomised from the output down (``steps``: dicts with layer, spearman, ssim)."""
    import matplotlib.pyplot as plt

    depth = np.arange(1, len(steps) + 1)
    with figure_style():
        fig, ax = plt.subplots(figsize=(9, 3.6))
        ax.plot(depth, [s["spearman"] for s in steps], marker="o", markersize=3, label="Spearman rank correlation")
        ax.plot(depth, [s["ssim"] for s in steps], marker="o", markersize=3, label="SSIM")
        ax.axhline(0, color="#999", linewidth=0.8)
        shown = np.unique(np.linspace(0, len(steps) - 1, min(labelled_ticks, len(steps))).round().astype(int))
        ax.set_xticks(depth[shown], [steps[i]["layer"] for i in shown], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("randomised down to this layer (from the output)")
        ax.set_ylabel("similarity to the original maps")
        ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
        ax.set_title(f"Cascading randomisation of {method}: the maps should stop resembling the original")
        ax.legend(frameon=False, fontsize=9)
        fig.tight_layout()
    return finish_figure(fig, save_path, show=False)


def save_gallery(images: torch.Tensor, maps: dict[str, torch.Tensor], captions: list[str], save_path: Path) -> Path:
    """One row per image: the image, then each method's map over it."""
    import matplotlib.pyplot as plt

    with figure_style():
        columns = len(maps) + 1
        fig, axes = plt.subplots(len(images), columns, figsize=(2.6 * columns, 2.8 * len(images)), squeeze=False)
        for row, image in enumerate(images):
            shown = display_array(image)
            axes[row, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            axes[row, 0].set_title(captions[row], fontsize=8)
            for col, (name, method_maps) in enumerate(maps.items(), start=1):
                relevance = np.abs(pixel_relevance(method_maps[row : row + 1], image.shape[-2:])[0].numpy())
                axes[row, col].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
                axes[row, col].imshow(relevance, cmap="inferno", alpha=0.55)
                if row == 0:
                    axes[row, col].set_title(name, fontsize=10)
                if np.ptp(relevance) == 0:  # a blank map must not pass for a picture of the evidence
                    axes[row, col].text(0.5, 0.5, "blank map:\nevery pixel\nequally relevant", ha="center",
                                        va="center", fontsize=8, color="white", transform=axes[row, col].transAxes,
                                        bbox={"facecolor": "black", "alpha": 0.6, "pad": 3})
            for ax in axes[row]:
                ax.axis("off")
        fig.tight_layout()
    return finish_figure(fig, save_path, show=False)

