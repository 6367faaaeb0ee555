"""A binary image dataset in the forms users have: a folder per class, a CSV of path,label, or file names with a
labelling rule. Validated before any work: exactly two classes, enough images, unreadable files listed and
skipped or fatal (the user's choice). Also the embedded demo data (scikit-image's ``lfw_subset``: 100 faces and
100 non-faces, real photos shipped inside its wheel).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

__all__ = [
    "LabelledImages",
    "DataSourceError",
    "from_folder",
    "from_csv",
    "from_filename_rule",
    "LABEL_RULES",
    "IMAGE_SUFFIXES",
    "MIN_IMAGES_PER_CLASS",
    "write_lfw_subset",
    "folder_dataloaders",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MIN_IMAGES_PER_CLASS = 5
_LISTED = 10


class DataSourceError(ValueError):
    """The data cannot be used as given; the message says what was found and what to do."""


def _pets_rule(path: Path) -> str:
    """The Oxford-IIIT Pets convention: cat breeds start with an upper-case letter, dog breeds do not."""
    return "cat" if path.name[:1].isupper() else "dog"


LABEL_RULES: dict[str, Callable[[Path], str]] = {"pets": _pets_rule}


@dataclass
class LabelledImages:
    """Image paths with one of exactly two class labels; ``skipped`` lists unreadable files and why."""

    paths: list[Path]
    labels: list[str]
    source: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"path": [str(p) for p in self.paths], "label": self.labels})

    def dataloaders(self, size: int | tuple[int, int] = 64, bs: int = 16, valid_pct: float = 0.2, seed: int = 42,
                    grey: bool = False, num_workers: int = 0, device=None):
        """fastai ``DataLoaders`` (images in [0, 1], resized to ``size``); ``seed`` fixes the random split and the
        order in which the training images are shuffled."""
        from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, PILImage, PILImageBW, RandomSplitter, Resize

        label_of = dict(zip(self.paths, self.labels))
        block = DataBlock(
            blocks=(ImageBlock(cls=PILImageBW if grey else PILImage), CategoryBlock(vocab=list(self.classes))),
            get_items=lambda _: list(self.paths),
            get_y=lambda path: label_of[path],
            splitter=RandomSplitter(valid_pct=valid_pct, seed=seed),
            item_tfms=Resize(size),
        )
        loaders = block.dataloaders(self.source, bs=bs, num_workers=num_workers, device=device)
        # fastai seeds each loader's shuffling from the global `random` state when the loader is made, which no
        # one has seeded yet: the same settings would train on a different order in every process.
        for index, loader in enumerate(loaders.loaders):
            loader.rng = random.Random(seed + index)
        return loaders


def _unreadable_reason(path: Path) -> str | None:
    """Why Pillow cannot read ``path`` (header and structure check, no full decode), or None."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _listing(items: list[tuple[Path, str]]) -> str:
    lines = [f"  {path}: {reason}" for path, reason in items[:_LISTED]]
    if len(items) > _LISTED:
        lines.append(f"  ... and {len(items) - _LISTED} more")
    return "\n".join(lines)


def _validated(paths: list[Path], labels: list[str], source: str, on_unreadable: str,
               min_per_class: int) -> LabelledImages:
    if on_unreadable not in ("skip", "raise"):
        raise ValueError(f"on_unreadable must be 'skip' or 'raise', got {on_unreadable!r}.")
    classes = Counter(labels)
    if len(classes) != 2:
        found = ", ".join(f"{name!r} ({count})" for name, count in sorted(classes.items())) or "none"
        raise DataSourceError(f"Tell Me Why explains binary classifiers: {source} must have exactly two classes; "
                              f"found {len(classes)}: {found}.")
    bad = [(path, reason) for path in paths if (reason := _unreadable_reason(path)) is not None]
    if bad and on_unreadable == "raise":
        raise DataSourceError(f"{len(bad)} unreadable image(s) in {source}:\n{_listing(bad)}\n"
                              f"Fix or remove them, or choose to skip unreadable files.")
    bad_paths = {path for path, _ in bad}
    kept = [(p, label) for p, label in zip(paths, labels) if p not in bad_paths]
    counts = Counter(label for _, label in kept)
    small = {name: counts.get(name, 0) for name in classes if counts.get(name, 0) < min_per_class}
    if small:
        raise DataSourceError(f"Too few readable images in {source}: {small} (at least {min_per_class} per class "
                              f"are needed to train and validate).")
    return LabelledImages([p for p, _ in kept], [label for _, label in kept], source, bad)


def _image_files(root: Path, recursive: bool) -> list[Path]:
    pattern = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def from_folder(root: str | Path, on_unreadable: str = "skip",
                min_per_class: int = MIN_IMAGES_PER_CLASS) -> LabelledImages:
    """``root/<class>/...`` (images anywhere below each class folder); the folder name is the label."""
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"{root} is not a folder.")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _image_files(folder, recursive=True):
            paths.append(path)
            labels.append(folder.name)
    if not paths:
        raise DataSourceError(f"No images found in class subfolders of {root}: expected {root}/<class>/<image> "
                              f"(image suffixes: {sorted(IMAGE_SUFFIXES)}).")
    return _validated(paths, labels, str(root), on_unreadable, min_per_class)


def from_csv(csv_path: str | Path, path_column: str = "path", label_column: str = "label",
             on_unreadable: str = "skip", min_per_class: int = MIN_IMAGES_PER_CLASS) -> LabelledImages:
    """A CSV with one row per image: ``path`` (absolute, or relative to the CSV's folder) and ``label``."""
    csv_path = Path(csv_path)
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except FileNotFoundError as error:
        raise DataSourceError(f"CSV file {csv_path} does not exist.") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataSourceError(f"Cannot parse {csv_path} as CSV: {error}") from error
    missing = [c for c in (path_column, label_column) if c not in table.columns]
    if missing:
        raise DataSourceError(f"{csv_path} has no column(s) {missing}; its columns are {list(table.columns)}. "
                              f"Name them {path_column!r} and {label_column!r} or say which columns to use.")
    empty = table.index[(table[path_column].str.strip() == "") | (table[label_column].str.strip() == "")]
    if len(empty):
        raise DataSourceError(f"{csv_path}: rows {[int(i) + 2 for i in empty[:_LISTED]]} (line numbers) have an "
                              f"empty path or label.")
    paths = [Path(p) if Path(p).is_absolute() else csv_path.parent / p for p in table[path_column]]
    return _validated(paths, table[label_column].str.strip().tolist(), str(csv_path), on_unreadable, min_per_class)


def from_filename_rule(root: str | Path, rule: str | Callable[[Path], str] = "pets", on_unreadable: str = "skip",
                       min_per_class: int = MIN_IMAGES_PER_CLASS) -> LabelledImages:
    """Images directly in ``root``, labelled by ``rule(path)`` (a callable, or a name from ``LABEL_RULES``)."""
    root = Path(root)
    if isinstance(rule, str):
        if rule not in LABEL_RULES:
            raise DataSourceError(f"Unknown labelling rule {rule!r}; available: {sorted(LABEL_RULES)}.")
        rule = LABEL_RULES[rule]
    paths = _image_files(root, recursive=False) if root.is_dir() else []
    if not paths:
        raise DataSourceError(f"No images found directly in {root}.")
    return _validated(paths, [str(rule(p)) for p in paths], str(root), on_unreadable, min_per_class)


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
    (the folder is read and validated by :func:`from_folder`; unreadable files fail)."""
    return from_folder(root, on_unreadable="raise").dataloaders(
        size=size, bs=bs, valid_pct=valid_pct, seed=seed, grey=grey, num_workers=num_workers, device=device
    )
