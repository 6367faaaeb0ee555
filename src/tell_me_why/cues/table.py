"""Pixel-cue tables for image files, and the file provenance of a fastai learner's rows.

``compute_feature_score_table`` decodes every image once (in parallel threads: Pillow releases the GIL while
decoding), groups a batch by image size and computes every requested cue on the whole group at once. Images are
streamed in batches, so memory stays bounded however many paths are given. Cues of your own are registered by
name (``register_feature_score``) or loaded from ``module:function`` (``load_feature_scores``, ``tmw run --cues``).
"""

from __future__ import annotations

import importlib
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._utils.devices import available_cpus
from .._utils.files import PATH_COLUMN
from .decoding import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, decode_image
from .definitions import BUILTIN_CUES, ORIGINAL_SCORE_NAMES, CueFunction, ImageBatch, PixelCue

__all__ = [
    "ErrorPolicy",
    "PATH_COLUMN",
    "ORIGINAL_SCORE_NAMES",
    "ImageBatch",
    "ImageDecodeError",
    "PixelCue",
    "available_feature_scores",
    "describe_feature_scores",
    "register_feature_score",
    "unregister_feature_score",
    "load_feature_scores",
    "compute_feature_score_table",
]

ErrorPolicy = Literal["raise", "nan", "skip", "previous"]
_POLICIES = ("raise", "nan", "skip")
_WARN_LIST_LIMIT = 10
# Cues of larger images are computed on a copy shrunk by an integer factor: memory stays bounded (a few hundred
# MB per image in flight) and the cues, averages over the image, barely change.
CUE_MAX_PIXELS = 2048 * 2048

_REGISTRY: dict[str, PixelCue] = {cue.name: cue for cue in BUILTIN_CUES}
_BUILTIN_NAMES = frozenset(_REGISTRY)


def available_feature_scores() -> dict[str, list[str]]:
    """Registered score names grouped by category (intensity, color, spatial, texture, frequency, ...)."""
    grouped: dict[str, list[str]] = {}
    for cue in _REGISTRY.values():
        grouped.setdefault(cue.category, []).append(cue.name)
    return grouped


def describe_feature_scores(names: Iterable[str], extra: Iterable[PixelCue] = ()) -> pd.DataFrame:
    """``label`` (what the report and figures show), ``category`` and ``description`` of each name, indexed by
    name: from ``extra`` cues (e.g. from :func:`load_feature_scores`), else the registry; a column that is no known cue
    keeps its name as label and an empty category."""
    known = {**_REGISTRY, **{cue.name: cue for cue in extra}}
    rows = {name: (known[name].label, known[name].category, known[name].description) if name in known
            else (name, "", "") for name in names}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["label", "category", "description"])


def _check_user_cue(name: str, fn: CueFunction) -> None:
    if not isinstance(name, str) or not name.strip() or name == PATH_COLUMN:
        raise ValueError(f"A feature score needs a non-empty name other than {PATH_COLUMN!r}, got {name!r}.")
    if not callable(fn):
        raise TypeError(f"fn for feature score {name!r} must be callable, got {type(fn).__name__}.")
    if name in _BUILTIN_NAMES:
        raise ValueError(f"{name!r} is a built-in feature score and cannot be replaced; choose another name.")


def register_feature_score(
    name: str, fn: CueFunction, category: str = "custom", *, description: str = "", label: str = "",
    overwrite: bool = False,
) -> None:
    """Add a score computed on a decoded batch.

    ``fn(batch)`` receives an :class:`ImageBatch` of same-size images (``batch.grey`` (B, H, W) and
    ``batch.rgb`` (B, 3, H, W), float32 in [0, 1]) and returns B values (a tensor, array or list).
    ``label`` is what the report and figures show (default: the name). Built-in names cannot be replaced; a user
    name can with ``overwrite=True``.
    """
    _check_user_cue(name, fn)
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"Feature score {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = PixelCue(name, fn, category, description, label)


def unregister_feature_score(name: str) -> None:
    """Remove a user-registered score."""
    if name in _BUILTIN_NAMES:
        raise ValueError(f"{name!r} is a built-in feature score and cannot be removed.")
    if name not in _REGISTRY:
        raise KeyError(f"No user feature score named {name!r}.")
    del _REGISTRY[name]


def load_feature_scores(specs: str | Sequence[str]) -> list[PixelCue]:
    """Cues of your own from ``"module:function"`` specs (a list, or one string separated by commas), unregistered.

    Each function takes an :class:`ImageBatch` and returns one value per image (as for
    :func:`register_feature_score`); its name is the column's name, the first line of its docstring the
    description, and its category ``"custom"``. A malformed spec, a module that cannot be imported, a missing
    function or a name taken by a built-in cue is a one-line ``ValueError`` naming it.
    """
    if isinstance(specs, str):
        specs = specs.split(",")
    cues: list[PixelCue] = []
    for spec in (s.strip() for s in specs):
        module_name, _, function_name = spec.partition(":")
        if not module_name.strip() or not function_name.strip() or ":" in function_name:
            raise ValueError(f"Cue {spec!r} must be written module:function (e.g. my_cues:leaf_area).")
        module_name, function_name = module_name.strip(), function_name.strip()
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # any failure of the user's module is reported as one line naming it
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"Cannot import module {module_name!r} of cue {spec!r}: {reason}.") from error
        fn = getattr(module, function_name, None)
        if fn is None:
            raise ValueError(f"Module {module_name!r} has no function {function_name!r} (cue {spec!r}).")
        try:
            _check_user_cue(function_name, fn)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Cue {spec!r}: {error}") from None
        if any(cue.name == function_name for cue in cues):
            raise ValueError(f"Two cues are named {function_name!r}; their functions need different names.")
        doc = (getattr(fn, "__doc__", None) or "").strip()
        cues.append(PixelCue(function_name, fn, "custom", doc.splitlines()[0] if doc else spec))
    return cues


def _resolve_score_names(score_names: Sequence[str | PixelCue] | None) -> list[PixelCue]:
    if score_names is None:
        return list(_REGISTRY.values())
    if isinstance(score_names, str):
        raise TypeError(f"score_names must be a list of names, not the string {score_names!r}.")
    items = list(score_names)
    unknown = [item for item in items if not isinstance(item, PixelCue) and item not in _REGISTRY]
    if unknown:
        raise KeyError(f"Unknown feature scores {unknown}; available: {sorted(_REGISTRY)}.")
    cues = [item if isinstance(item, PixelCue) else _REGISTRY[item] for item in items]
    names = [cue.name for cue in cues]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Feature scores requested more than once: {duplicates}.")
    return cues


def _resolve_policy(on_error: str) -> str:
    if on_error == "previous":
        warnings.warn(
            "on_error='previous' is deprecated: it copied a neighbour's score onto an unreadable image. "
            "It now means on_error='nan'; pass 'nan', 'skip' or 'raise'.",
            FutureWarning,
            stacklevel=3,
        )
        return "nan"
    if on_error not in _POLICIES:
        raise ValueError(f"on_error must be one of {list(_POLICIES)} (or the deprecated 'previous'), got {on_error!r}.")
    return on_error


def _as_path_list(image_paths: Iterable[str | Path]) -> list[str]:
    if isinstance(image_paths, (str, Path)):
        raise TypeError("image_paths must be a list of paths, not a single path; wrap it in a list.")
    return [str(path) for path in image_paths]


def _score_group(cues: list[PixelCue], images: list[DecodedImage], paths: list[str]) -> np.ndarray:
    """Scores (len(images), len(cues)) for images of one size and bit depth."""
    batch = ImageBatch(images, paths)
    out = np.empty((len(images), len(cues)))
    for column, cue in enumerate(cues):
        values = cue.fn(batch)
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if values.shape != (len(images),):
            raise ValueError(
                f"Feature score {cue.name!r} returned shape {values.shape} for a batch of {len(images)} images; "
                f"it must return one value per image."
            )
        out[:, column] = values
    return out


def _score_chunk(
    cues: list[PixelCue], paths: list[str], max_pixels: int | None
) -> tuple[np.ndarray, list[tuple[int, ImageDecodeError]]]:
    """Decode and score a chunk of paths (run in a worker thread): scores (n, k) and the unreadable offsets."""
    scores = np.full((len(paths), len(cues)), np.nan)
    errors: list[tuple[int, ImageDecodeError]] = []
    groups: dict[tuple[tuple[int, int], int], list[tuple[int, DecodedImage]]] = {}
    for offset, path in enumerate(paths):
        try:
            image = decode_image(path, max_pixels=max_pixels, reduce_above=CUE_MAX_PIXELS)
        except ImageDecodeError as error:
            errors.append((offset, error))
            continue
        groups.setdefault((image.shape, image.max_value), []).append((offset, image))
    for members in groups.values():
        offsets = [offset for offset, _ in members]
        scores[offsets] = _score_group(cues, [image for _, image in members], [paths[o] for o in offsets])
    return scores, errors


def _scored_chunks(
    cues: list[PixelCue], paths: list[str], chunk_size: int, pool: ThreadPoolExecutor, in_flight: int,
    max_pixels: int | None,
) -> Iterator[tuple[int, np.ndarray, list[tuple[int, ImageDecodeError]]]]:
    """Yield ``(start, scores, errors)`` per chunk in input order, keeping at most ``in_flight`` chunks alive."""
    starts = iter(range(0, len(paths), chunk_size))
    pending: deque[tuple[int, Future]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append((start, pool.submit(_score_chunk, cues, paths[start : start + chunk_size], max_pixels)))

    for _ in range(in_flight):
        submit_next()
    while pending:
        start, future = pending.popleft()
        submit_next()
        yield (start, *future.result())


def _warn_unreadable(failures: list[tuple[str, str]], action: str) -> None:
    listed = "\n".join(f"  {path}: {reason}" for path, reason in failures[:_WARN_LIST_LIMIT])
    more = f"\n  ... and {len(failures) - _WARN_LIST_LIMIT} more" if len(failures) > _WARN_LIST_LIMIT else ""
    warnings.warn(f"{len(failures)} unreadable image(s) {action}:\n{listed}{more}", UserWarning, stacklevel=3)


def compute_feature_score_table(
    image_paths: Iterable[str | Path],
    score_names: Sequence[str | PixelCue] | None = None,
    on_error: ErrorPolicy = "raise",
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> pd.DataFrame:
    """Score every image: a DataFrame with ``Source_File_Path`` then one float column per score, in input order.

    Parameters
    ----------
    image_paths
        Image files in any format Pillow reads (PNG, JPEG, WebP, GIF, BMP, TIFF, ...).
    score_names
        Names from :func:`available_feature_scores` (default: every registered score), in column order; a
        :class:`PixelCue` (e.g. from :func:`load_feature_scores`) is computed without being registered.
    on_error
        What to do with an unreadable image: ``"raise"`` (an :class:`ImageDecodeError` naming the file),
        ``"nan"`` (a row of NaN) or ``"skip"`` (the row is dropped); both list the files in a warning.
        ``"previous"`` is deprecated and means ``"nan"``.
    batch_size
        Images a worker decodes and scores together; same-size images in it are scored as one tensor. Memory
        grows with ``batch_size * num_workers``, not with the number of paths.
    num_workers
        Worker threads (default: the number of CPUs, at most 8). Pillow and torch release the GIL, so they
        decode and score in parallel.
    progress
        Show a progress bar.
    max_pixels
        Larger images are unreadable (handled by ``on_error``), refused from their header before any pixel is
        decoded. Images above 4.2 million pixels (2048 x 2048) are scored on a copy shrunk by an integer factor
        (box filter), so memory stays bounded whatever the files.
    """
    cues = _resolve_score_names(score_names)
    policy = _resolve_policy(on_error)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    workers = num_workers if num_workers is not None else min(8, available_cpus())
    if workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
    paths = _as_path_list(image_paths)

    scores = np.full((len(paths), len(cues)), np.nan)
    readable = np.ones(len(paths), dtype=bool)
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(paths), desc="Pixel cues", unit="img", disable=not progress
    ) as bar:
        for start, chunk_scores, errors in _scored_chunks(cues, paths, batch_size, pool, 2 * workers, max_pixels):
            if errors and policy == "raise":
                raise errors[0][1]
            scores[start : start + len(chunk_scores)] = chunk_scores
            for offset, error in errors:
                readable[start + offset] = False
                failures.append((paths[start + offset], str(error.__cause__ or error)))
            bar.update(len(chunk_scores))

    if failures:
        _warn_unreadable(failures, "dropped" if policy == "skip" else "scored NaN")
    table = pd.DataFrame(scores, columns=[cue.name for cue in cues])
    table.insert(0, PATH_COLUMN, paths)
    if policy == "skip":
        table = table[readable].reset_index(drop=True)
    return table
