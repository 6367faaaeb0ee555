"""Shapley value sampling over coalitions of pixel groups (patches or superpixels), not single pixels."""

from __future__ import annotations

import numpy as np
import torch

from .base import Attribution, TargetSpec, resolve_targets, target_scores

__all__ = ["ShapleyValueSampling", "patch_groups", "superpixel_groups"]


def patch_groups(height: int, width: int, patch: int) -> torch.Tensor:
    """(H, W) group index of square patches of side ``patch``."""
    rows = torch.arange(height) // patch
    cols = torch.arange(width) // patch
    return rows[:, None] * ((width + patch - 1) // patch) + cols[None, :]


def superpixel_groups(image: torch.Tensor, segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """(H, W) SLIC superpixel labels of one image (C, H, W) (scikit-image)."""
    from skimage.segmentation import slic

    array = image.detach().cpu().float().numpy()
    array = (array - array.min()) / max(float(array.max() - array.min()), 1e-12)
    labels = slic(np.moveaxis(array, 0, -1), n_segments=segments, compactness=compactness,
                  channel_axis=-1, start_label=0)
    return torch.from_numpy(labels).long()


class ShapleyValueSampling(Attribution):
    """Shapley values of pixel groups estimated from ``n_permutations`` random orders: groups are revealed one by
    one over the baseline and each is credited the change of the target score. Each order costs groups + 1
    forward passes, run in batches of ``batch_size``. Exact efficiency: the group values of every order sum to
    F(x) - F(baseline). Returns per-pixel maps (B, C, H, W) where every pixel carries its group's value."""

    def _attribute(
        self,
        inputs: torch.Tensor,
        target: TargetSpec,
        groups: torch.Tensor | str | int = 8,
        baselines: float | torch.Tensor = 0.0,
        n_permutations: int = 25,
        seed: int | None = 0,
        batch_size: int = 64,
    ) -> torch.Tensor:
        inputs = inputs.detach()
        with torch.no_grad():
            targets = resolve_targets(self.model(inputs), target)
        baseline = torch.as_tensor(baselines, dtype=inputs.dtype).expand_as(inputs)
        rng = np.random.default_rng(seed)
        maps = []
        for index, image in enumerate(inputs):
            if isinstance(groups, str) and groups == "superpixels":
                labels = superpixel_groups(image)
            elif isinstance(groups, int):
                labels = patch_groups(*image.shape[-2:], groups)
            else:
                labels = torch.as_tensor(groups).long()
            labels = torch.unique(labels, return_inverse=True)[1]
            count = int(labels.max()) + 1
            one_hot = torch.nn.functional.one_hot(labels.flatten(), count).T.view(count, *labels.shape).bool()
            values = torch.zeros(count, dtype=torch.float64)
            for _ in range(n_permutations):
                order = torch.from_numpy(rng.permutation(count))
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
