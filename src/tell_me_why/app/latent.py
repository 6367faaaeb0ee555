"""A run's latent explanations, which only its xAAEnet can give: the decision axis decoded into images, latent
counterfactuals and neighbours in latent space. The explain step writes them to ``explanations/latent`` for the
report; ``tmw explain --out RUN --methods counterfactual`` writes them again, or for images of your own."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .._utils.files import atomic_path, write_json
from .explain_images import known_labels

if TYPE_CHECKING:
    from .pipeline import Run

__all__ = ["LATENT_METHOD", "LATENT_FOLDER", "SUMMARY_FILE", "explain_latents"]

# The name that asks ``tmw explain`` for these explanations (beside the registered attribution methods).
LATENT_METHOD = "counterfactual"

LATENT_FOLDER = Path("explanations") / "latent"
SUMMARY_FILE = "latent.json"
# Validation images drawn (counterfactuals, traversals, neighbours); the numbers cover every validation image.
SHOWN = 4
# At most this many of your own images are drawn (counterfactuals.csv lists them all).
MAX_DRAWN = 12
NEIGHBOURS = 3
STEPS = 7

logger = logging.getLogger(__name__)


def _interleaved(decided: torch.Tensor, n: int) -> list[int]:
    """``n`` indices taking the decided classes in turn, so that both directions of the move are shown."""
    groups = [torch.nonzero(decided == c).flatten().tolist() for c in (0, 1)]
    order = [i for pair in zip(*groups) for i in pair] + groups[0][len(groups[1]):] + groups[1][len(groups[0]):]
    return order[:n]


def _reference(run: Run):
    """The training images' latent vectors (``latents.parquet``) as the reference set of the neighbours."""
    from ..xaaenet.latents import LatentSplit

    table = pd.read_parquet(run.dir / "latents.parquet")
    train = table[table["split"] == "train"].reset_index(drop=True)
    z = train[[c for c in train.columns if c.startswith("z_")]].to_numpy(np.float32)
    return LatentSplit(z, train["target"].to_numpy(np.int64), train["path"].tolist())


def _caption(path: Path, decided: int, vocab: Sequence[str], true: str | None) -> str:
    # One short line each: the captions sit over thumbnails about 20 characters wide.
    name = path.name if len(path.name) <= 22 else path.name[:10] + "..." + path.name[-9:]
    known = f"\ntrue {true}" if true is not None else ""
    return f"{name}{known}\ngiven {vocab[decided]}"


def explain_latents(run: Run, paths: Sequence[Path] | None = None, save: Path | None = None) -> Path:
    """Write the latent explanations of the run's model and return their folder.

    Without ``paths``: every validation image is measured (flip rate of the decoded counterfactuals, SSIM of the
    reconstructions) and a few are drawn. With ``paths``: those images instead. Either way the class means of the
    validation images are traversed. ``save`` defaults to ``<run>/explanations/latent``. Files: ``latent.json``
    (the numbers), ``counterfactuals.csv`` (one row per image), ``traversal_class_means.png``,
    ``traversal_images.png``, ``counterfactuals.png`` and ``neighbours.png``.
    """
    from ..xaaenet.latent_explanations import (
        latent_counterfactual,
        latent_neighbours,
        traverse_class_means,
        traverse_decision_axis,
    )
    from ..xaaenet.latent_figures import save_axis_traversal_figure, save_counterfactual_figure, save_neighbour_figure

    model = run.model().eval()
    vocab = [str(v) for v in run.dataloaders().vocab]
    class_a = vocab.index(run.class_a)
    save = Path(save) if save is not None else run.dir / LATENT_FOLDER
    save.mkdir(parents=True, exist_ok=True)
    valid_paths, valid_inputs, valid_targets, _ = run.validation_predictions()
    own = paths is not None
    if own:
        paths = [Path(p) for p in paths]
        inputs = run.inputs(paths)
        table = pd.read_csv(run.dir / "data.csv")
        truth = known_labels(paths, vocab, dict(zip(map(Path, table["path"]), table["label"].astype(str))))
    else:
        paths, inputs = list(valid_paths), valid_inputs
        truth = [vocab[int(t)] for t in valid_targets]
    measured = latent_counterfactual(model, inputs)
    means = traverse_class_means(model, valid_inputs, valid_targets, steps=STEPS, class_a=class_a)
    span = float(means.positions[-1])  # the images' traversals go as far as the class means'
    save_axis_traversal_figure(means, [f"mean of {vocab[c]}" for c in (0, 1)], vocab,
                               save / "traversal_class_means.png")

    decided = measured.original_class
    drawn = list(range(min(len(paths), MAX_DRAWN))) if own else _interleaved(decided, SHOWN)
    if len(paths) > len(drawn):
        logger.info("latent explanations: %d of %d images drawn; counterfactuals.csv lists every one", len(drawn),
                    len(paths))
    captions = [_caption(paths[i], int(decided[i]), vocab, truth[i]) for i in drawn]
    shown = inputs[drawn]
    save_axis_traversal_figure(traverse_decision_axis(model, shown, steps=STEPS, span=span, class_a=class_a),
                               captions, vocab, save / "traversal_images.png",
                               title="Each image moved along the decision axis")
    save_counterfactual_figure(measured.select(drawn), captions, vocab, save / "counterfactuals.png",
                               class_a=class_a)

    reference = _reference(run)
    k = min(NEIGHBOURS, *(int((reference.targets == c).sum()) for c in (0, 1)))
    if k >= 1:
        neighbours = latent_neighbours(reference, shown, k=k, model=model, class_a=class_a)
        needed = sorted({int(i) for group in (neighbours.same, neighbours.other, *neighbours.typical.values())
                         for i in np.ravel(group)})
        loaded = run.inputs([Path(reference.items[i]) for i in needed])
        save_neighbour_figure(shown, neighbours, dict(zip(needed, loaded)), captions, vocab,
                              save / "neighbours.png", class_a=class_a)
    else:
        logger.info("latent explanations: no neighbours drawn, a class has no training image")

    rows = pd.DataFrame({
        "path": [str(p) for p in paths],
        "true": truth,
        "given": [vocab[int(c)] for c in measured.original_class],
        "toward": [vocab[int(c)] for c in measured.target_class],
        "distance_sd": measured.distance.numpy(),
        "probability_toward": measured.probability.numpy(),
        "critic_score": measured.critic_score.numpy(),
        "critic_score_original": measured.critic_score_original.numpy(),
        "decoded_read_as": [vocab[int(c)] for c in measured.decoded_class],
        "flipped": measured.flipped.numpy(),
        "reconstruction_ssim": measured.reconstruction_ssim.numpy(),
    })
    with atomic_path(save / "counterfactuals.csv") as tmp:
        rows.to_csv(tmp, index=False)
    summary = {**measured.summary(), "class_a": vocab[class_a], "other_class": vocab[1 - class_a], "span_sd": span,
               "steps": STEPS, "drawn": [str(paths[i]) for i in drawn],
               "flip_rate_toward": {vocab[c]: measured.flip_rate_toward(c) for c in (0, 1)},
               "class_mean_read_back": {vocab[c]: means.decoded_probability[c].tolist() for c in (0, 1)},
               "positions_sd": means.positions.tolist()}
    write_json(save / SUMMARY_FILE, summary)
    logger.info("latent explanations: %.0f%% of %d decoded counterfactuals flip the decision; reconstruction SSIM "
                "%.2f", 100 * measured.flip_rate, len(paths), summary["reconstruction_ssim"])
    return save
