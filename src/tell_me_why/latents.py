"""Latent vectors of a dataset split, in the dataloader's item order, and their Parquet table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders, TfmdDL

from .checkpoints import atomic_path

__all__ = ["LatentSplit", "extract_latents", "split_dataloader", "latent_table", "write_latent_table"]


@dataclass
class LatentSplit:
    """``z`` (N, D), integer targets (N,) and the item (usually the image path) of each row."""

    z: np.ndarray
    targets: np.ndarray
    items: list


def split_dataloader(dls: DataLoaders, split: str) -> TfmdDL:
    """An unshuffled dataloader over every item of ``split`` ("train" or "valid") with validation transforms.

    The training dataloader shuffles, drops the last batch and applies augmentation; latent extraction needs
    none of that, so the training items go through ``dls.test_dl`` (validation-time transforms, labels kept).
    """
    if split == "valid":
        return dls.valid
    if split == "train":
        return dls.test_dl(list(dls.train_ds.items), with_labels=True)
    raise ValueError(f"split must be 'train' or 'valid', got {split!r}.")


@torch.no_grad()
def extract_latents(model: torch.nn.Module, dl: TfmdDL) -> LatentSplit:
    """Run ``model`` in eval mode over ``dl`` (decoder off) and stack ``z`` and targets in item order."""
    was_training, was_decoding = model.training, getattr(model, "decode", True)
    model.eval()
    model.decode = False
    z_parts, y_parts = [], []
    try:
        for xb, yb in dl:
            model(xb)
            z_parts.append(model.z.detach().float().cpu())
            y_parts.append(yb.detach().cpu().view(-1))
    finally:
        model.train(was_training)
        model.decode = was_decoding
    items = list(getattr(dl, "items", range(sum(len(p) for p in z_parts))))
    z = torch.cat(z_parts).numpy() if z_parts else np.zeros((0, getattr(model, "encoding_dims", 0)), np.float32)
    targets = torch.cat(y_parts).numpy().astype(np.int64) if y_parts else np.zeros(0, np.int64)
    return LatentSplit(z, targets, items[: len(z)])


def latent_table(splits: dict[str, LatentSplit], vocab) -> pd.DataFrame:
    """Rows ``path, split, label, target, z_0 .. z_{D-1}`` for each split, in item order."""
    frames = []
    for split, data in splits.items():
        frame = pd.DataFrame(
            {
                "path": [str(item) for item in data.items],
                "split": split,
                "label": [str(vocab[t]) for t in data.targets],
                "target": data.targets,
            }
        )
        z_frame = pd.DataFrame(data.z, columns=[f"z_{i}" for i in range(data.z.shape[1])])
        frames.append(pd.concat([frame, z_frame], axis=1))
    return pd.concat(frames, ignore_index=True)


def write_latent_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the latent table as Parquet, atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return Path(path)
