"""Shapley value sampling over coalitions of pixel groups (patches or superpixels), not single pixels."""

from __future__ import annotations

import numpy as np
import torch

from .base import Attribution, TargetSpec, resolve_targets, target_scores

__all__ = ["ShapleyValueSampling", "grid_groups", "patch_groups", "superpixel_groups"]


def patch_groups(height: int, width: int, patch: int | tuple[int, int]) -> torch.Tensor:
    """(H, W) group index of patches of ``patch`` px (a side, or (rows, columns))."""
    patch_height, patch_width = (patch, patch) if isinstance(patch, int) else patch
    if patch_height < 1 or patch_width < 1:
        raise ValueError(f"patch must be at least 1 px, got {patch}.")
    rows = torch.arange(height) // patch_height
    cols = torch.arange(width) // patch_width
    return rows[:, None] * (-(-width // patch_width)) + cols[None, :]


def grid_groups(height: int, width: int, cells: int = 8) -> torch.Tensor:
    """(H, W) group index of a ``cells`` x ``cells`` grid: the cost of Shapley sampling (one forward pass per
    group and order) then does not grow with the image size."""
    if cells < 1:
        raise ValueError(f"grid cells must be at least 1, got {cells}.")
    return patch_groups(height, width, (-(-height // cells), -(-width // cells)))


def superpixel_groups(image: torch.Tensor, segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """(H, W) SLIC superpixel labels of one image (C, H, W) (scikit-image), on the CPU like the other label maps
    (:class:`ShapleyValueSampling` moves them to the images' device)."""
    from skimage.segmentation import slic

    array = image.detach().cpu().float().numpy()
    array = (array - array.min()) / max(float(array.max() - array.min()), 1e-12)
    labels = slic(np.moveaxis(array, 0, -1), n_segments=segments, compactness=compactness,
                  channel_axis=-1, start_label=0)
    return torch.from_numpy(labels).long()


def _group_labels(image: torch.Tensor, groups: torch.Tensor | str | int, grid_cells: int) -> torch.Tensor:
    size = tuple(image.shape[-2:])
    if isinstance(groups, str):
        if groups == "grid":
            return grid_groups(*size, grid_cells)
        if groups == "superpixels":
            return superpixel_groups(image)
        raise ValueError(f"groups={groups!r}: use 'grid', 'superpixels', a patch side in px or an (H, W) label map.")
    if isinstance(groups, int):
        return patch_groups(*size, groups)
    labels = torch.as_tensor(groups).long()
    if tuple(labels.shape) != size:
        raise ValueError(f"groups label map has shape {tuple(labels.shape)}; the images are {size}.")
    return labels


class ShapleyValueSampling(Attribution):
    """Shapley values of pixel groups estimated from ``n_permutations`` random orders: groups are revealed one by
    one over the baseline and each is credited the change of the target score. Each order costs groups + 1
    forward passes, run in batches of ``batch_size``. Exact efficiency: the group values of every order sum to
    F(x) - F(baseline). Returns per-pixel maps (B, C, H, W) where every pixel carries its group's value.

    ``groups``: ``"grid"`` (default: a ``grid_cells`` x ``grid_cells`` grid, whatever the image size), an int
    (square patches of that many px), ``"superpixels"`` (SLIC) or an (H, W) label map shared by all images."""

    def _attribute(
        self,
        inputs: torch.Tensor,
        target: TargetSpec,
        groups: torch.Tensor | str | int = "grid",
        grid_cells: int = 8,
        baselines: float | torch.Tensor = 0.0,
        n_permutations: int = 25,
        seed: int | None = 0,
        batch_size: int = 64,
    ) -> torch.Tensor:
        inputs = inputs.detach()
        with torch.no_grad():
            targets = resolve_targets(self.model(inputs), target)
        baseline = torch.as_tensor(baselines).to(inputs).expand_as(inputs)
        rng = np.random.default_rng(seed)
        maps = []
        for index, image in enumerate(inputs):
            labels = _group_labels(image, groups, grid_cells).to(inputs.device)
            labels = torch.unique(labels, return_inverse=True)[1]
            count = int(labels.max()) + 1
            one_hot = torch.nn.functional.one_hot(labels.flatten(), count).T.view(count, *labels.shape).bool()
            values = torch.zeros(count, dtype=torch.float64, device=inputs.device)
            for _ in range(n_permutations):
                order = torch.from_numpy(rng.permutation(count)).to(inputs.device)
                revealed = torch.cumsum(one_hot[order].int(), 0).bool()  # after 1, 2, ... groups
                masks = torch.cat([torch.zeros_like(revealed[:1]), revealed])
                scores = []
                for start in range(0, len(masks), batch_size):
                    part = masks[start : start + batch_size, None]
                    batch = torch.where(part, image, baseline[index])
                    with torch.no_grad():
                        out = self.model(batch)
                    scores.append(target_scores(out, targets[index].expand(len(batch))).double())
                scores = torch.cat(scores)
                values[order] += scores[1:] - scores[:-1]
            values /= n_permutations
            maps.append(values[labels].to(inputs.dtype).expand_as(image))
        return torch.stack(maps)
