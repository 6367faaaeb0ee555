"""Small image datasets written to disk (folder per class) and fastai dataloaders over such folders.

- `write_lfw_subset`: scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, real photos shipped inside the
  scikit-image wheel), the embedded default dataset of the demo.
- `write_planted_cue_dataset`: synthetic images whose class is decided by one known cue, for tests and
  benchmarks (an explanation must find the cue; a model must learn it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_lfw_subset", "write_planted_cue_dataset", "folder_dataloaders", "PLANTED_CUES"]

PLANTED_CUES = ("square", "brightness")


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(path)


def write_lfw_subset(root: str | Path, size: int = 64) -> Path:
    """Write scikit-image's ``lfw_subset`` as ``root/face/*.png`` and ``root/non_face/*.png`` at ``size`` px.

    The 25x25 grey originals are upscaled (bicubic) and kept grey. Existing files are reused.
    """
    from skimage.data import lfw_subset

    root = Path(root)
    images = lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces then 100 non-faces
    for index, image in enumerate(images):
        label = "face" if index < 100 else "non_face"
        path = root / label / f"{label}_{index % 100:03d}.png"
        if path.exists():
            continue
        pil = Image.fromarray((image * 255).round().astype(np.uint8)).resize((size, size), Image.BICUBIC)
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.save(path)
    return root


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


def folder_dataloaders(
    root: str | Path,
    size: int | tuple[int, int] = 64,
    bs: int = 16,
    valid_pct: float = 0.2,
    seed: int = 42,
    grey: bool = False,
    num_workers: int = 0,
    device=None,
):
    """fastai ``DataLoaders`` over ``root/<class>/*`` images, resized to ``size``, pixel values in [0, 1]
    (the folder is read and validated by :func:`tell_me_why.data_sources.from_folder`; unreadable files fail)."""
    from .data_sources import from_folder

    return from_folder(root, on_unreadable="raise").dataloaders(
        size=size, bs=bs, valid_pct=valid_pct, seed=seed, grey=grey, num_workers=num_workers, device=device
    )
