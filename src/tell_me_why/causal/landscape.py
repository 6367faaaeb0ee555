"""The responsibility landscape: random box partitions, their 14 mutants, responsibility credited per mutant.

The iterations of a block advance together, one refinement level per round, and every mutant of a round (all
boxes of all iterations of the block) is classified in one batched pass. Each iteration draws its split points
from its own random stream, so the result depends neither on the batch size nor on the blocks. Iteration maps are
each normalised by their maximum and averaged, which cannot underflow (the reference multiplied them: at 100
iterations 73 % of pixels came out exactly 0). A child earns responsibility from a passing mutant only where it is
critical (see ``_critical_credit``). By default iterations run until the map has converged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr

from .occlusion import Occluder
from .settings import CausalSettings

__all__ = ["Landscape", "responsibility_landscape", "map_agreement", "SUBSETS"]

# The 14 non-empty proper subsets of the 4 children of a split, as a (14, 4) 0/1 matrix.
SUBSETS = np.array([[(code >> bit) & 1 for bit in range(4)] for code in range(1, 15)], dtype=np.float32)
_SUBSET_SIZES = SUBSETS.sum(1)
_MEMBERS = SUBSETS.astype(bool)
# _WITHOUT[m, c]: the index of mutant m with child c hidden as well (-1: that leaves nothing visible, or c is
# not in m).
_WITHOUT = np.array([[(code ^ (1 << c)) - 1 if (code >> c) & 1 and code != 1 << c else -1 for c in range(4)]
                     for code in range(1, 15)])
# Adaptive iterations: the first convergence check after this many iterations, then one every few.
_FIRST_CHECK = 4
_CHECK_EVERY = 2


@dataclass
class _Node:
    """A box to refine, with the pixels kept visible around it."""

    iteration: int
    static: torch.Tensor  # (H, W) bool
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive)
    depth: int
    static_passes: bool = False  # the kept-visible pixels alone are the target (only when queue_len > 1)


@dataclass
class Landscape:
    """The combined map (H, W), per-iteration maps, counts of the search, the number of iterations run and the
    rank correlation of the combined map before and after each adaptive block."""

    responsibility: np.ndarray
    iteration_maps: np.ndarray
    passing: int
    failing: int
    max_depth: int
    rounds: int
    budget_exhausted: bool
    iterations: int = 0
    agreement: list[float] = field(default_factory=list)


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


def _critical_credit(node_passed: np.ndarray, static_passes: bool = False) -> np.ndarray:
    """Responsibility earned by each of the 4 children from one node's 14 mutants.

    A child earns 1/k from a passing mutant of k visible children only when it is critical there: hiding it too
    makes the mutant fail. The empty mutant (only the kept-visible pixels) fails unless ``static_passes``: with
    ``queue_len=1`` the refined mutant is the smallest passing one, so it always fails. ReX credits every visible
    child of a passing mutant, so a child that merely sits beside the evidence earns as much as the evidence does.
    """
    smaller_passes = np.where(_WITHOUT >= 0, node_passed[np.maximum(_WITHOUT, 0)], static_passes)
    critical = _MEMBERS & node_passed[:, None] & ~smaller_passes
    return (critical / _SUBSET_SIZES[:, None]).sum(0)


def _iteration_block(occluder: Occluder, shape: tuple[int, int], settings: CausalSettings,
                     iterations: list[int], rngs: list[np.random.Generator], maps: np.ndarray,
                     counts: dict[str, int], started: set[int]) -> bool:
    """Run the given iterations to the end, adding their credit to ``maps`` and the iterations that ran at least
    one round to ``started``; False when the work budget ran out."""
    exhausted = False
    nothing = torch.zeros(shape, dtype=torch.bool)
    frontier = [_Node(i, nothing, (0, 0, shape[0], shape[1]), 0) for i in iterations]
    subsets = torch.from_numpy(SUBSETS)
    while frontier:
        frontier = [node for node in frontier if _refinable(node, settings)]
        if not frontier:
            break
        if settings.max_forward_passes is not None:
            remaining = settings.max_forward_passes - occluder.predictor.forward_passes
            if remaining < 14 * len(frontier):
                exhausted = True
                frontier = frontier[: remaining // 14]
                if not frontier:
                    return False
        started.update(node.iteration for node in frontier)
        children = [_children(node.box, settings, rngs[node.iteration]) for node in frontier]
        child_masks = torch.stack([torch.stack([_box_mask(c, shape) for c in kids]) for kids in children])
        # Mutant masks (nodes, 14, H, W): the node's visible pixels plus the chosen children.
        flat_children = child_masks.view(len(frontier), 4, -1).float()
        shown = (subsets @ flat_children).view(len(frontier), 14, *shape) > 0
        mutants = shown | torch.stack([node.static for node in frontier])[:, None]
        passed = occluder.passes(mutants.view(-1, *shape)).reshape(len(frontier), 14)
        counts["rounds"] += 1
        counts["passing"] += int(passed.sum())
        counts["failing"] += int((~passed).sum())
        next_frontier = []
        for node, kids, node_children, node_passed in zip(frontier, children, child_masks, passed):
            if not node_passed.any():
                continue
            counts["max_depth"] = max(counts["max_depth"], node.depth + 1)
            for child, amount in zip(kids, _critical_credit(node_passed, node.static_passes)):
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
                    # The child's kept-visible pixels are mutant m without it: tested above (or only the static).
                    without = _WITHOUT[m, c]
                    static_passes = bool(node_passed[without]) if without >= 0 else node.static_passes
                    next_frontier.append(_Node(node.iteration, others, kids[c], node.depth + 1, static_passes))
        frontier = next_frontier
    return not exhausted


def _normalised_mean(maps: np.ndarray) -> np.ndarray:
    """Average of the maps, each divided by its own maximum (a map without credit stays zero)."""
    peaks = maps.reshape(len(maps), -1).max(1)
    return (maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]).mean(0)


def map_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 1.0 for identical maps, 0.0 when either is constant otherwise."""
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel())[0])


def responsibility_landscape(occluder: Occluder, shape: tuple[int, int], settings: CausalSettings) -> Landscape:
    """Compute the landscape of ``occluder.target`` over an image of ``shape`` (H, W).

    With ``iterations="auto"`` iterations run in small blocks until the combined map stops changing: the rank
    correlation between the map before and after a block reaches ``convergence`` (at most ``max_iterations``).
    Successive maps share their earlier iterations, so the criterion asks that a block barely move the running
    map, not that a block agree with it on its own.
    Each iteration draws its partitions from its own random stream, so iteration i is the same whatever the
    blocks, the batch size or the stopping point.
    """
    adaptive = settings.iterations == "auto"
    limit = settings.max_iterations if adaptive else int(settings.iterations)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(limit)]
    maps = np.zeros((limit, *shape))
    counts = {"passing": 0, "failing": 0, "max_depth": 0, "rounds": 0}
    blocks = [list(range(limit))]
    if adaptive:
        first = min(_FIRST_CHECK, limit)
        blocks = [list(range(first))] + [list(range(i, min(i + _CHECK_EVERY, limit)))
                                         for i in range(first, limit, _CHECK_EVERY)]
    agreement, combined, started = [], np.zeros(shape), set()
    budget_exhausted = False
    for block in blocks:
        if not _iteration_block(occluder, shape, settings, block, rngs, maps, counts, started):
            budget_exhausted = True  # an iteration cut short still contributes what it found
            break
        previous, combined = combined, _normalised_mean(maps[: block[-1] + 1])
        if adaptive and block[-1] + 1 > first:
            agreement.append(map_agreement(previous, combined))
            if agreement[-1] >= settings.convergence:
                break
    maps = maps[sorted(started)]  # iterations the budget never reached do not dilute the map
    responsibility = _normalised_mean(maps) if len(maps) else np.zeros(shape)
    return Landscape(responsibility, maps, counts["passing"], counts["failing"], counts["max_depth"],
                     counts["rounds"], budget_exhausted, iterations=len(maps), agreement=agreement)
