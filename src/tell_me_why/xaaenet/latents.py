"""Latent vectors of a dataset split, in the dataloader's item order, their Parquet table, and the file behind
each row of a learner's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders, TfmdDL

from .._utils.classifier import eval_mode
from .._utils.files import PATH_COLUMN, write_parquet

__all__ = [
    "LatentSplit",
    "extract_latents",
    "split_dataloader",
    "latent_table",
    "write_latent_table",
    "map_learner_predictions",
    "mapping",
]


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
    """Run ``model`` in eval mode over ``dl`` and stack ``z`` and targets in item order (every module's mode is
    restored afterwards)."""
    z_parts, y_parts = [], []
    with eval_mode(model):
        for xb, yb in dl:
            model(xb)
            z_parts.append(model.z.detach().float().cpu())
            y_parts.append(yb.detach().cpu().view(-1))
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
    return write_parquet(table, path)


def _split_name(ds_idx: int) -> str:
    return {0: "Train", 1: "Valid"}.get(ds_idx, f"Dataset {ds_idx}")


def _unshuffled_loader(dls, ds_idx: int):
    """Every item of split ``ds_idx`` in dataset order, without augmentation, shuffling or dropped batches."""
    if ds_idx in (0, 1):
        return split_dataloader(dls, "train" if ds_idx == 0 else "valid")
    return dls[ds_idx].new(shuffle=False, drop_last=False)


@torch.no_grad()
def map_learner_predictions(
    learn: Any, ds_idxs: Sequence[int] = (0, 1), include_predictions: bool = False
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Model inputs and a provenance table whose row ``i`` is the file behind input ``i``.

    Each split is read in dataset order without shuffling, dropped batches or augmentation (the original read
    the shuffled training loader and paired its rows with another shuffle's order). Columns: ``Set``,
    ``Original_Dataset_Index``, ``Source_File_Path`` and, with ``include_predictions``, ``Real_Target_ID``,
    ``Predicted_Class_ID``, ``Predicted_Class_Name`` and ``Correct_Prediction``.
    """
    vocab = getattr(learn.dls, "vocab", None)
    model = learn.model
    was_training = model.training
    model.eval()
    inputs, frames = [], []
    try:
        for ds_idx in ds_idxs:
            dl = _unshuffled_loader(learn.dls, ds_idx)
            split_inputs, predicted, real = [], [], []
            for xb, yb in dl:
                split_inputs.append(xb.detach().cpu().as_subclass(torch.Tensor))
                if include_predictions:
                    predicted.append(model(xb).detach().cpu().argmax(-1))
                    real.append(yb.detach().cpu().view(-1))
            items = list(dl.items)
            frame = pd.DataFrame(
                {
                    "Set": _split_name(ds_idx),
                    "Original_Dataset_Index": np.arange(len(items)),
                    PATH_COLUMN: [str(item) for item in items],
                }
            )
            if include_predictions:
                real_ids = torch.cat(real).numpy().astype(np.int64)
                predicted_ids = torch.cat(predicted).numpy().astype(np.int64)
                frame["Real_Target_ID"] = real_ids
                frame["Predicted_Class_ID"] = predicted_ids
                if vocab is not None:
                    frame["Predicted_Class_Name"] = [str(vocab[i]) for i in predicted_ids]
                frame["Correct_Prediction"] = real_ids == predicted_ids
            inputs.extend(split_inputs)
            frames.append(frame)
    finally:
        model.train(was_training)
    return torch.cat(inputs), pd.concat(frames, ignore_index=True)


# The original's name for map_learner_predictions.
mapping = map_learner_predictions
