"""A binary image dataset in the forms users have: a folder per class, a CSV of path,label, or file names with a
labelling rule. Validated before any work: exactly two classes, enough images, unreadable files listed and
skipped or fatal (the user's choice). Also the embedded demo data (scikit-image's ``lfw_subset``: 100 faces and
100 non-faces, real photos shipped inside its wheel).
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .._utils.devices import available_cpus
from .._utils.files import atomic_path
from ..cues.decoding import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

__all__ = [
    "LabelledImages",
    "DataSourceError",
    "from_folder",
    "from_csv",
    "from_filename_rule",
    "LABEL_RULES",
    "IMAGE_SUFFIXES",
    "MIN_IMAGES_PER_CLASS",
    "DEFAULT_MAX_PIXELS",
    "RUN_MARKER",
    "write_lfw_subset",
    "folder_dataloaders",
    "seed_loaders",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MIN_IMAGES_PER_CLASS = 5
_LISTED = 10
# A folder holding this file is a tmw run directory: its figures are never data.
RUN_MARKER = "run_state.json"
# The model reads images shrunk (by an integer factor) to at most this many times its input's pixels: memory
# stays bounded for huge files, and the resize to the input size still starts from ample resolution.
_MODEL_OVERSAMPLING = 16
# The data step decodes every file fully, but keeps at most this many pixels of each while checking it.
_CHECK_PIXELS = 1024 * 1024

logger = logging.getLogger(__name__)


class DataSourceError(ValueError):
    """The data cannot be used as given; the message says what was found and what to do."""


def _pets_rule(path: Path) -> str:
    """The Oxford-IIIT Pets convention: cat breeds start with an upper-case letter, dog breeds do not."""
    return "cat" if path.name[:1].isupper() else "dog"


LABEL_RULES: dict[str, Callable[[Path], str]] = {"pets": _pets_rule}


@dataclass
class LabelledImages:
    """Image paths with one of exactly two class labels; ``skipped`` lists unreadable files and why; ``grey`` says
    whether every readable image is grey (``DecodedImage.is_grey``; ``None`` when the images were not checked)."""

    paths: list[Path]
    labels: list[str]
    source: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    grey: bool | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"path": [str(p) for p in self.paths], "label": self.labels})

    def dataloaders(self, size: int | tuple[int, int] = 64, bs: int = 16, valid_pct: float = 0.2, seed: int = 42,
                    grey: bool = False, num_workers: int = 0, device=None,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """fastai ``DataLoaders`` (images in [0, 1], resized to ``size``); ``seed`` fixes the random split and the
        order in which the training images are shuffled. Images are read by the package's decoder (the cues'), and
        one above ``max_pixels`` is an error naming it."""
        from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, RandomSplitter, Resize

        label_of = dict(zip(self.paths, self.labels))
        height, width = (size, size) if isinstance(size, int) else size
        image_type = decoded_image_type(grey, _MODEL_OVERSAMPLING * height * width, max_pixels)
        block = DataBlock(
            blocks=(ImageBlock(cls=image_type), CategoryBlock(vocab=list(self.classes))),
            get_items=lambda _: list(self.paths),
            get_y=lambda path: label_of[path],
            splitter=RandomSplitter(valid_pct=valid_pct, seed=seed),
            item_tfms=Resize(size),
        )
        loaders = block.dataloaders(self.source, bs=bs, num_workers=num_workers, device=device)
        # fastai seeds each loader's shuffling from the global `random` state when the loader is made, which no
        # one has seeded yet: the same settings would train on a different order in every process.
        seed_loaders(loaders.loaders, seed)
        return loaders


def seed_loaders(loaders: Sequence, seed: int) -> None:
    """Give each data loader its own shuffling generator, seeded from ``seed`` and its rank (``seed + index``)."""
    for index, loader in enumerate(loaders):
        loader.rng = random.Random(seed + index)


def decoded_image_type(grey: bool, reduce_above: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """A fastai image type whose files are read by the package's own decoder (the one the pixel cues use), so
    that the model and the cues see the same pixels: 16-bit images scaled to 8 bits instead of clipped to white,
    grey as the cues' luma, large images shrunk by an integer factor to at most ``reduce_above`` pixels while
    they are read, images above ``max_pixels`` refused."""
    from fastai.vision.all import PILImage, PILImageBW

    base = PILImageBW if grey else PILImage

    class DecodedImage(base):
        @classmethod
        def create(cls, fn, **kwargs):
            if isinstance(fn, (str, Path)):
                decoded = decode_image(fn, max_pixels=max_pixels, reduce_above=reduce_above)
                return cls(Image.fromarray(decoded.to_uint8(1 if grey else 3)))
            return super().create(fn, **kwargs)

    DecodedImage.__name__ = DecodedImage.__qualname__ = f"Decoded{base.__name__}"
    return DecodedImage


def _checked(paths: Sequence[Path], max_pixels: int | None) -> list[str | bool]:
    """Every file decoded once, in threads (Pillow decodes without the GIL): for each, why it cannot be read, or
    whether it is grey (read while its pixels are at hand, so that no image is decoded twice for it)."""

    def check(path: Path) -> str | bool:
        try:  # the whole file is read and decoded; the pixels kept are shrunk (memory stays small)
            decoded = decode_image(path, max_pixels=max_pixels, reduce_above=_CHECK_PIXELS)
        except ImageDecodeError as error:
            return str(error.__cause__ or error)
        # A box filter shrinks each plane alike, so a grey image (R = G = B) stays grey: no grey image is taken for
        # a colour one. The converse is not exact: in an image above _CHECK_PIXELS, colour too faint or too sparse
        # to survive the averaging and the rounding to integers (a few coloured pixels, or a tint under one level)
        # reads as grey. Checking at full size would hold the whole image in memory; the model reads it shrunk
        # further still (_MODEL_OVERSAMPLING), where such colour is as faint or fainter.
        return decoded.is_grey

    workers = min(4, available_cpus())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(check, paths), total=len(paths), desc="Checking images", unit="img",
                         disable=len(paths) < 500))


def _listing(items: list[tuple[Path, str]]) -> str:
    lines = [f"  {path}: {reason}" for path, reason in items[:_LISTED]]
    if len(items) > _LISTED:
        lines.append(f"  ... and {len(items) - _LISTED} more")
    return "\n".join(lines)


def _validated(paths: list[Path], labels: list[str], source: str, on_unreadable: str,
               min_per_class: int, max_pixels: int | None, class_a: str | None) -> LabelledImages:
    if on_unreadable not in ("skip", "raise"):
        raise ValueError(f"on_unreadable must be 'skip' or 'raise', got {on_unreadable!r}.")
    classes = Counter(labels)
    if len(classes) != 2:
        found = ", ".join(f"{name!r} ({count})" for name, count in sorted(classes.items())) or "none"
        raise DataSourceError(f"Tell Me Why explains binary classifiers: {source} must have exactly two classes; "
                              f"found {len(classes)}: {found}.")
    if class_a is not None and class_a not in classes:  # before any image is decoded
        raise DataSourceError(f"--class-a {class_a!r} is not one of the classes {sorted(classes)} found in {source}.")
    checks = _checked(paths, max_pixels)
    bad = [(path, why) for path, why in zip(paths, checks) if isinstance(why, str)]
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
    grey = all(check for check in checks if not isinstance(check, str))
    return LabelledImages([p for p, _ in kept], [label for _, label in kept], source, bad, grey)


def _is_excluded(folder: Path, excluded: set[Path]) -> bool:
    return folder.resolve() in excluded or (folder / RUN_MARKER).is_file()


def _image_files(root: Path, recursive: bool, exclude: Sequence[Path] = ()) -> list[Path]:
    """Image files in ``root`` (and below it when ``recursive``), leaving out the folders in ``exclude`` and every
    tmw run directory (a folder holding ``run_state.json``): a run written inside its data must not become data."""
    excluded = {Path(p).resolve() for p in exclude}
    if _is_excluded(root, excluded):
        return []
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if recursive and not _is_excluded(Path(folder) / d, excluded))
        found += [Path(folder) / name for name in files if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def from_folder(root: str | Path, on_unreadable: str = "skip", min_per_class: int = MIN_IMAGES_PER_CLASS,
                exclude: Sequence[Path] = (), max_pixels: int | None = DEFAULT_MAX_PIXELS,
                class_a: str | None = None) -> LabelledImages:
    """``root/<class>/...`` (images anywhere below each class folder); the folder name is the label. Folders in
    ``exclude`` and tmw run directories are left out; images above ``max_pixels`` count as unreadable; ``class_a``,
    when given, must be one of the classes (checked before any image is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"{root} is not a folder.")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _image_files(folder, recursive=True, exclude=exclude):
            paths.append(path)
            labels.append(folder.name)
    if not paths:
        raise DataSourceError(f"No images found in class subfolders of {root}: expected {root}/<class>/<image> "
                              f"(image suffixes: {sorted(IMAGE_SUFFIXES)}).")
    return _validated(paths, labels, str(root), on_unreadable, min_per_class, max_pixels, class_a)


def from_csv(csv_path: str | Path, path_column: str = "path", label_column: str = "label",
             on_unreadable: str = "skip", min_per_class: int = MIN_IMAGES_PER_CLASS,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, class_a: str | None = None) -> LabelledImages:
    """A CSV with one row per image: ``path`` (absolute, or relative to the CSV's folder) and ``label``.

    A file listed twice with the same label is kept once (with a warning); with two labels it is an error naming
    the rows, since it would otherwise land in training and validation, or mislead the class counts.
    """
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
    labels = table[label_column].str.strip().tolist()
    rows: dict[Path, list[int]] = {}
    for row, path in enumerate(paths):
        rows.setdefault(path.resolve(), []).append(row)
    repeated = {path: found for path, found in rows.items() if len(found) > 1}
    conflicting = {path: found for path, found in repeated.items() if len({labels[r] for r in found}) > 1}
    if conflicting:
        listed = "\n".join(f"  {path}: lines {[r + 2 for r in found]} say {sorted({labels[r] for r in found})}"
                           for path, found in list(conflicting.items())[:_LISTED])
        raise DataSourceError(f"{csv_path} gives {len(conflicting)} image(s) two labels:\n{listed}\nKeep one row "
                              f"per image.")
    if repeated:
        logger.warning("%s lists %d image(s) more than once with the same label (e.g. %s, lines %s); each is kept "
                       "once.", csv_path, len(repeated), *next((p, [r + 2 for r in f]) for p, f in repeated.items()))
        first = sorted(found[0] for found in rows.values())
        paths, labels = [paths[r] for r in first], [labels[r] for r in first]
    return _validated(paths, labels, str(csv_path), on_unreadable, min_per_class, max_pixels, class_a)


def from_filename_rule(root: str | Path, rule: str | Callable[[Path], str] = "pets", on_unreadable: str = "skip",
                       min_per_class: int = MIN_IMAGES_PER_CLASS, exclude: Sequence[Path] = (),
                       max_pixels: int | None = DEFAULT_MAX_PIXELS, class_a: str | None = None) -> LabelledImages:
    """Images directly in ``root``, labelled by ``rule(path)`` (a callable, or a name from ``LABEL_RULES``)."""
    root = Path(root)
    if isinstance(rule, str):
        if rule not in LABEL_RULES:
            raise DataSourceError(f"Unknown labelling rule {rule!r}; available: {sorted(LABEL_RULES)}.")
        rule = LABEL_RULES[rule]
    paths = _image_files(root, recursive=False, exclude=exclude) if root.is_dir() else []
    if not paths:
        raise DataSourceError(f"No images found directly in {root}.")
    labels = [str(rule(p)) for p in paths]
    return _validated(paths, labels, str(root), on_unreadable, min_per_class, max_pixels, class_a)


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
        with atomic_path(path) as tmp:  # a file left half written by a killed run would be reused
            pil.save(tmp, format="PNG")
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
