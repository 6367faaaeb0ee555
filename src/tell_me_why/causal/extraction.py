"""Explanations read off a responsibility landscape: minimal sufficient, spatial, multiple and contrastive.

Every search ranks pixels by responsibility and looks for the smallest prefix of the ranking that passes a test.
Instead of the reference's linear scan (one forward pass per chunk of pixels, N/chunk in all), a batched
coarse-to-fine search classifies ``search_candidates`` evenly spaced prefix sizes at once, keeps the interval
where the test first passes, and repeats until the interval is one chunk wide: about
``candidates * log_candidates(N / chunk)`` passes in a handful of batched model calls.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np
import torch

from ..metrics.curves import relevance_order
from .occlusion import Occluder
from .settings import CausalSettings

__all__ = ["pixel_ranking", "prefix_masks", "first_passing_prefix", "minimal_sufficient", "spatial_explanation",
           "contrastive_explanation", "spotlight_explanations", "dice", "separate_by"]

SEARCH_METHOD = "batched coarse-to-fine prefix search"


def pixel_ranking(responsibility: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Flat pixel indices by decreasing responsibility; ties by a 3x3-smoothed map, then by index."""
    order = relevance_order(responsibility, ties="smoothed")
    if allowed is not None:
        order = order[allowed.ravel()[order]]
    return order


def prefix_masks(order: np.ndarray, sizes: list[int], shape: tuple[int, int]) -> torch.Tensor:
    ranks = np.empty(int(np.prod(shape)), dtype=np.int64)
    ranks[:] = np.iinfo(np.int64).max
    ranks[order] = np.arange(len(order))
    ranks_t = torch.from_numpy(ranks).view(shape)
    return torch.stack([ranks_t < k for k in sizes])


def first_passing_prefix(
    n: int, test: Callable[[list[int]], np.ndarray], settings: CausalSettings
) -> int | None:
    """Smallest prefix size in 1..n (to ``chunk_size``) that passes ``test``; None when even n fails."""
    low, high = 0, n  # low is known to fail (nothing shown); high is checked first
    if not test([n])[0]:
        return None
    while high - low > settings.chunk_size:
        sizes = np.unique(np.linspace(low, high, settings.search_candidates + 2).round().astype(int)[1:-1])
        sizes = [int(s) for s in sizes if low < s < high]
        if not sizes:
            break
        passed = test(sizes)
        hits = np.flatnonzero(passed)
        if len(hits):
            first = hits[0]
            high = sizes[first]
            low = sizes[first - 1] if first > 0 else low
        else:
            low = sizes[-1]
    return high


def _sufficiency_test(occluder: Occluder, order, shape, min_confidence: float):
    def test(sizes: list[int]) -> np.ndarray:
        return occluder.passes(prefix_masks(order, sizes, shape), min_confidence)

    return test


def minimal_sufficient(
    occluder: Occluder, responsibility: np.ndarray, settings: CausalSettings, min_confidence: float,
    allowed: np.ndarray | None = None,
) -> np.ndarray | None:
    """The smallest top-responsibility pixel set classified as the target on its own (None if there is none)."""
    order = pixel_ranking(responsibility, allowed)
    size = first_passing_prefix(len(order), _sufficiency_test(occluder, order, responsibility.shape, min_confidence),
                                settings)
    if size is None:
        return None
    return prefix_masks(order, [size], responsibility.shape)[0].numpy()


def _disk(shape, centre, radius) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _grown_disk(occluder, shape, centre, radius, settings, min_confidence, expansions: int | None) -> np.ndarray | None:
    """The first disk around ``centre`` (radius growing by ``spatial_eta``) that is sufficient on its own."""
    limit = np.hypot(*shape)
    radii = [float(radius)]
    while radii[-1] < limit and (expansions is None or len(radii) <= expansions):
        radii.append(radii[-1] * (1 + settings.spatial_eta))
    disks = np.stack([_disk(shape, centre, r) for r in radii])
    passed = occluder.passes(torch.from_numpy(disks), min_confidence)
    hits = np.flatnonzero(passed)
    return disks[hits[0]] if len(hits) else None


def spatial_explanation(occluder, responsibility, settings, min_confidence, centre=None, expansions=None):
    """Grow a disk from the map's maximum until it suffices, then the minimal sufficient set inside it."""
    shape = responsibility.shape
    if centre is None:
        centre = np.unravel_index(pixel_ranking(responsibility)[0], shape)
    disk = _grown_disk(occluder, shape, centre, settings.spatial_radius, settings, min_confidence, expansions)
    if disk is None:
        return None
    return minimal_sufficient(occluder, responsibility, settings, min_confidence, allowed=disk)


def contrastive_explanation(occluder, responsibility, settings, min_confidence) -> np.ndarray | None:
    """The smallest top-ranked set that is sufficient (shown alone: the target) and necessary (hidden: not)."""
    order = pixel_ranking(responsibility)
    shape = responsibility.shape

    def test(sizes: list[int]) -> np.ndarray:
        masks = prefix_masks(order, sizes, shape)
        sufficient = occluder.passes(masks, min_confidence)
        removed_still_target = occluder.passes(masks, 0.0, invert=True)
        return sufficient & ~removed_still_target

    size = first_passing_prefix(len(order), test, settings)
    return None if size is None else prefix_masks(order, [size], shape)[0].numpy()


def spotlight_explanations(occluder, responsibility, settings, min_confidence, rng) -> list[np.ndarray]:
    """The spatial explanation from the maximum, then searches from random centres among responsible pixels."""
    found = []
    first = spatial_explanation(occluder, responsibility, settings, min_confidence)
    if first is not None:
        found.append(first)
    candidates = np.flatnonzero(responsibility.ravel() > 0)
    for _ in range(settings.spotlights - 1):
        if not len(candidates):
            break
        centre = np.unravel_index(rng.choice(candidates), responsibility.shape)
        mask = spatial_explanation(occluder, responsibility, settings, min_confidence, centre=centre,
                                   expansions=settings.spotlight_expansions)
        if mask is not None and not any(np.array_equal(mask, other) for other in found):
            found.append(mask)
    return found


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def separate_by(masks: list[np.ndarray], overlap: float) -> list[int]:
    """Indices of the largest set of masks whose pairwise Dice overlap is at most ``overlap`` (earliest first)."""
    n = len(masks)
    compatible = np.array([[i == j or dice(masks[i], masks[j]) <= overlap for j in range(n)] for i in range(n)])
    if n <= 14:  # exact: at most 2**14 subsets
        for size in range(n, 0, -1):
            for subset in combinations(range(n), size):
                if compatible[np.ix_(subset, subset)].all():
                    return list(subset)
        return []
    chosen: list[int] = []  # greedy above that
    for i in range(n):
        if all(compatible[i, j] for j in chosen):
            chosen.append(i)
    return chosen
