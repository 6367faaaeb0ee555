"""The responsibility landscape: random box partitions, their 14 mutants, responsibility credited per mutant.

All iterations advance together, one refinement level per round, and every mutant of a round (all boxes of all
iterations) is classified in one batched pass. Random split points are drawn in a fixed order, so the result does
not depend on the batch size. Iteration maps are each normalised by their maximum and averaged, which cannot
underflow (the reference multiplied them: at 100 iterations 73 % of pixels came out exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .occlusion import Occluder
from .settings import CausalSettings

__all__ = ["Landscape", "responsibility_landscape", "SUBSETS"]

# The 14 non-empty proper subsets of the 4 children of a split, as a (14, 4) 0/1 matrix.
SUBSETS = np.array([[(code >> bit) & 1 for bit in range(4)] for code in range(1, 15)], dtype=np.float32)
_SUBSET_SIZES = SUBSETS.sum(1)


@dataclass
class _Node:
    """A box to refine, with the pixels kept visible around it."""

    iteration: int
    static: torch.Tensor  # (H, W) bool
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive)
    depth: int


@dataclass
class Landscape:
    """The combined map (H, W), per-iteration maps, and counts of the search."""

    responsibility: np.ndarray
    iteration_maps: np.ndarray
    passing: int
    failing: int
    max_depth: int
    rounds: int
    budget_exhausted: bool


def _split_point(low: int, high: int, settings: CausalSettings, rng: np.random.Generator) -> int:
    """A split strictly inside (low, high): every child is non-empty."""
    interior = high - low - 1  # number of admissible split positions low+1 .. high-1
    if settings.distribution == "betabinom":
        offset = int(rng.binomial(interior - 1, rng.beta(settings.distribution_alpha, settings.distribution_beta)))
    else:
        offset = int(rng.integers(0, interior))
    return low + 1 + offset


def _children(box, settings, rng) -> list[tuple[int, int, int, int]]:
    top, left, bottom, right = box
    row, col = _split_point(top, bottom, settings, rng), _split_point(left, right, settings, rng)
    return [(top, left, row, col), (top, col, row, right), (row, left, bottom, col), (row, col, bottom, right)]


def _box_mask(box, shape) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    return mask


def _refinable(node: _Node, settings: CausalSettings) -> bool:
    top, left, bottom, right = node.box
    height, width = bottom - top, right - left
    return node.depth < settings.tree_depth and height >= 2 and width >= 2 and height * width >= settings.min_box_area


def responsibility_landscape(occluder: Occluder, shape: tuple[int, int], settings: CausalSettings) -> Landscape:
    """Compute the landscape of ``occluder.target`` over an image of ``shape`` (H, W)."""
    rng = np.random.default_rng(settings.seed)
    maps = np.zeros((settings.iterations, *shape))
    nothing = torch.zeros(shape, dtype=torch.bool)
    frontier = [_Node(i, nothing, (0, 0, shape[0], shape[1]), 0) for i in range(settings.iterations)]
    passing = failing = max_depth = rounds = 0
    budget_exhausted = False
    subsets = torch.from_numpy(SUBSETS)
    while frontier:
        frontier = [node for node in frontier if _refinable(node, settings)]
        if not frontier:
            break
        if settings.max_forward_passes is not None:
            remaining = settings.max_forward_passes - occluder.predictor.forward_passes
            if remaining < 14:
                budget_exhausted = True
                break
            frontier = frontier[: remaining // 14]
        children = [_children(node.box, settings, rng) for node in frontier]
        child_masks = torch.stack([torch.stack([_box_mask(c, shape) for c in kids]) for kids in children])
        # Mutant masks (nodes, 14, H, W): the node's visible pixels plus the chosen children.
        flat_children = child_masks.view(len(frontier), 4, -1).float()
        shown = (subsets @ flat_children).view(len(frontier), 14, *shape) > 0
        mutants = shown | torch.stack([node.static for node in frontier])[:, None]
        passed = occluder.passes(mutants.view(-1, *shape)).reshape(len(frontier), 14)
        rounds += 1
        passing += int(passed.sum())
        failing += int((~passed).sum())
        next_frontier = []
        for node, kids, node_children, node_passed in zip(frontier, children, child_masks, passed):
            if not node_passed.any():
                continue
            max_depth = max(max_depth, node.depth + 1)
            credit = (SUBSETS[node_passed] / _SUBSET_SIZES[node_passed, None]).sum(0)  # per child
            for child, amount in zip(kids, credit):
                top, left, bottom, right = child
                maps[node.iteration, top:bottom, left:right] += amount
            areas = [sum((kids[c][2] - kids[c][0]) * (kids[c][3] - kids[c][1]) for c in np.flatnonzero(SUBSETS[m]))
                     for m in range(14)]
            order = [m for m in np.argsort(areas, kind="stable") if node_passed[m]]
            keep = order if settings.queue_len == "all" else order[: settings.queue_len]
            for m in keep:
                chosen = np.flatnonzero(SUBSETS[m])
                for c in chosen:
                    others = node.static.clone()
                    for o in chosen:
                        if o != c:
                            others |= node_children[o]
                    next_frontier.append(_Node(node.iteration, others, kids[c], node.depth + 1))
        frontier = next_frontier
    peaks = maps.reshape(len(maps), -1).max(1)
    normalised = maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]
    return Landscape(normalised.mean(0), maps, passing, failing, max_depth, rounds, budget_exhausted)
