"""Tasks with a planted, known cause, for tests, benchmarks and your own checks of an explanation.

- `planted_evidence_images` and `SmallCNN`: positive images contain one small bright square at a random place;
  both classes carry bright bars as distractors and noise. An explanation of a positive image must point at the
  square.
- `write_planted_cue_dataset`: a folder per class whose class is decided by one known cue (a bright square, or
  brightness): a model must learn it and the cue statistics must find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = [
    "PlantedEvidence",
    "planted_evidence_images",
    "SmallCNN",
    "train_small_cnn",
    "train_classifier",
    "write_planted_cue_dataset",
    "PLANTED_CUES",
]

PLANTED_CUES = ("square", "brightness")


@dataclass
class PlantedEvidence:
    """Images (N, 1, S, S) in [0, 1], labels (N,) (1 = square present) and the square's box per image
    (top, left, bottom, right; -1 for negatives)."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: np.ndarray

    def square_mask(self, index: int) -> np.ndarray:
        top, left, bottom, right = self.boxes[index]
        mask = np.zeros(self.images.shape[-2:], dtype=bool)
        if top >= 0:
            mask[top:bottom, left:right] = True
        return mask


def planted_evidence_images(
    n: int, size: int = 64, seed: int = 0, bars: int = 2, square_sides: tuple[int, int] = (6, 10),
    bar_length: int = 16,
) -> PlantedEvidence:
    """``n`` images of ``size`` px, half positive: a bright square (side drawn in ``square_sides``) at a random
    place; ``bars`` bright bars (1 x ``bar_length`` px, random orientation) in every image; Gaussian noise.
    The same sizes at every image size keep the task the same (a CNN trained at 64 px works at 224 px)."""
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(0.15, 0.05, (n, size, size)), 0, 1)
    labels = np.arange(n) % 2
    boxes = np.full((n, 4), -1, dtype=np.int64)
    for i in range(n):
        for _ in range(bars):
            row, col = rng.integers(0, size - bar_length, 2)
            if rng.random() < 0.5:
                images[i, row, col : col + bar_length] = 0.9
            else:
                images[i, row : row + bar_length, col] = 0.9
        if labels[i]:
            side = int(rng.integers(square_sides[0], square_sides[1] + 1))
            top, left = rng.integers(0, size - side, 2)
            images[i, top : top + side, left : left + side] = 0.95
            boxes[i] = (top, left, top + side, left + side)
    return PlantedEvidence(torch.from_numpy(images).float()[:, None], torch.from_numpy(labels), boxes)


class SmallCNN(nn.Module):
    """Three conv blocks and a global max pool: a detector of a local pattern anywhere in the image."""

    def __init__(self, channels: int = 1, width: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


def train_small_cnn(data: PlantedEvidence, epochs: int = 4, seed: int = 0, lr: float = 3e-3,
                    batch_size: int = 32) -> SmallCNN:
    """Train :class:`SmallCNN` on ``data`` with Adam and cross-entropy; returns it in eval mode."""
    with torch.random.fork_rng():  # initial weights from the seed; the caller's random state untouched
        torch.manual_seed(seed)
        model = SmallCNN(channels=data.images.shape[1])
    return train_classifier(model, data, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size)


def train_classifier(model: nn.Module, data: PlantedEvidence, epochs: int = 4, seed: int = 0, lr: float = 3e-3,
                     batch_size: int = 32) -> nn.Module:
    """Train any 2-logit ``model`` on ``data`` with Adam and cross-entropy (batches in a seeded order); returns it
    in eval mode."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.labels), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(data.images[index]), data.labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(path)


def write_planted_cue_dataset(
    root: str | Path,
    n_per_class: int = 40,
    size: int | tuple[int, int] = 64,
    cue: str = "square",
    seed: int = 0,
    class_names: tuple[str, str] = ("absent", "present"),
    channels: int = 3,
) -> Path:
    """Write a binary dataset whose class is decided by one planted cue.

    Every image is smooth random colour noise. ``cue="square"``: images of the second class carry a bright
    square (a quarter of the side) at a random place. ``cue="brightness"``: images of the second class are
    brighter on average. Returns ``root``; images are ``root/<class>/<class>_NNN.png``.
    """
    if cue not in PLANTED_CUES:
        raise ValueError(f"cue must be one of {PLANTED_CUES}, got {cue!r}.")
    height, width = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    root = Path(root)
    for label_index, label in enumerate(class_names):
        for i in range(n_per_class):
            coarse = rng.uniform(0.15, 0.55, size=(max(2, height // 8), max(2, width // 8), channels))
            background = np.asarray(
                Image.fromarray((coarse * 255).astype(np.uint8).squeeze()).resize((width, height), Image.BILINEAR)
            ).astype(np.float64) / 255.0
            image = background.reshape(height, width, channels) + rng.normal(0, 0.03, (height, width, channels))
            if label_index == 1 and cue == "square":
                side = max(4, min(height, width) // 4)
                top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
                image[top : top + side, left : left + side] = 0.95
            if label_index == 1 and cue == "brightness":
                image = image + 0.3
            _save_png(image.squeeze(), root / label / f"{label}_{i:03d}.png")
    return root
