"""Three-phase xAAEnet training on fastai: adversarial, then denoising autoencoder, then classifier."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import set_seed

from .callbacks import (
    AddGaussianNoise,
    BatchGradientAccumulation,
    BestWeightsCheckpoint,
    CorruptionCallback,
    GetLatentSpace,
    LatentCriticStep,
    LossAttrMetric,
    PriorGapMetric,
    RandomMasking,
    UnfreezeFcCritAdaptative,
)
from .checkpoints import load_weights, save_weights, write_json
from .latent_figures import save_latent_pls_figure, save_latent_tsne_figure
from .latents import extract_latents, latent_table, split_dataloader, write_latent_table
from .model_aae import AAE
from .user_encoder import EncoderWithAAEBlocks

__all__ = [
    "ExplainableModel",
    "AddGaussianNoise",
    "RandomMasking",
    "CorruptionCallback",
    "UnfreezeFcCritAdaptative",
    "GetLatentSpace",
    "LossAttrMetric",
    "BatchGradientAccumulation",
    "save_latent_tsne_figure",
    "save_latent_pls_figure",
    "train_xaaenet",
    "STATE_FILE",
]

ExplainableModel = AAE | EncoderWithAAEBlocks

# Records which phases finished and where their weights are, for `resume=True`.
STATE_FILE = "xaaenet_state.json"
CLASSIFIER_MONITORS = ("classif_loss", "accuracy", "valid_loss", "recons_loss")
_PHASE_GROUPS = {
    "autoencoder": {"encoder", "latent", "decoder"},
    "classifier": {"encoder", "latent", "decoder", "classifier"},
}


class _AdversarialLoss:
    def __init__(self, model: ExplainableModel):
        self.model = model

    def __call__(self, pred, *yb):
        return self.model.aae_loss_func(pred, *yb)


class _DenoisingLoss:
    def __init__(self, model: ExplainableModel, corruption: CorruptionCallback, recons_weight: float, adv_weight: float):
        self.model, self.corruption = model, corruption
        self.recons_weight, self.adv_weight = recons_weight, adv_weight

    def __call__(self, pred, *yb):
        return self.model.denoising_ae_loss_func(self.corruption.clean, self.recons_weight, self.adv_weight, pred, yb)


class _ClassifierLoss:
    def __init__(self, model: ExplainableModel, recons_weight: float, class_weight: float, adv_weight: float):
        self.model = model
        self.weights = dict(ADV_WEIGHT=adv_weight, RECONS_WEIGHT=recons_weight, CLASS_WEIGHT=class_weight)

    def __call__(self, pred, *yb):
        return self.model.classif_loss_func(pred, *yb, **self.weights)


@dataclass
class _Phase:
    """One training phase: what it optimises, how, and what decides its best epoch."""

    number: int
    key: str
    fname: str
    epochs: int
    learner: Learner
    fit: Callable[[list[Callback]], None]
    monitor: str
    lower_is_better: bool
    patience: int
    callbacks: list[Callback] = field(default_factory=list)


def _lower_is_better(monitor: str) -> bool:
    return "loss" in monitor or "error" in monitor or "gap" in monitor


def _check_inputs(model, dls: DataLoaders, pls_target_class: str | None, classif_monitor: str) -> None:
    if classif_monitor not in CLASSIFIER_MONITORS:
        raise ValueError(f"classif_monitor={classif_monitor!r} is not one of {list(CLASSIFIER_MONITORS)}.")
    if not isinstance(model, EncoderWithAAEBlocks):
        raise TypeError(
            f"model must be an AAE or EncoderWithAAEBlocks (see add_xaae_blocks), got {type(model).__name__}."
        )
    vocab = [str(v) for v in getattr(dls, "vocab", [])]
    if len(vocab) != 2:
        raise ValueError(f"train_xaaenet needs a binary task; the dataloaders have the classes {vocab}.")
    if pls_target_class is not None and str(pls_target_class) not in vocab:
        raise ValueError(f"pls_target_class={pls_target_class!r} is not one of the classes {vocab}.")
    if len(dls.valid_ds) == 0:
        raise ValueError("The dataloaders have no validation images; give the DataBlock a splitter with valid_pct > 0.")
    xb = dls.valid.one_batch()[0]
    low, high = float(xb.min()), float(xb.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"Images must be in [0, 1] (the decoder and its loss assume it); a validation batch spans "
            f"[{low:.3g}, {high:.3g}]. Remove Normalize from batch_tfms: AAE normalises its encoder input itself."
        )


def _phase_summary(phase: _Phase, learner: Learner, seconds: float, best: BestWeightsCheckpoint | None) -> dict:
    names = learner.recorder.metric_names[1:-1]
    values = [[float(v) for v in row] for row in learner.recorder.values]
    summary = {
        "phase": phase.key,
        "epochs_run": len(values),
        "seconds": round(seconds, 2),
        "monitor": phase.monitor,
        "best_epoch": None if best is None else best.best_epoch,
        "best_value": None if best is None else best.best,
        "metric_names": names,
        "values": values,
    }
    last = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values[-1])) if values else "no epoch run"
    best_text = f"best {phase.monitor} {best.best:.4g} at epoch {best.best_epoch}; " if best and best.best is not None else ""
    print(f"Phase {phase.number}/3 {phase.key}: {len(values)} epoch(s) in {seconds:.1f} s; {best_text}last: {last}")
    return summary


def _run_phase(phase: _Phase, models_dir: Path, state: dict, resume: bool, shared_cbs: list[Callback]) -> dict:
    model = phase.learner.model
    checkpoint = models_dir / f"{phase.fname}.safetensors"
    done = state["phases"].get(phase.key)
    if resume and done is not None and checkpoint.is_file():
        load_weights(model, checkpoint)
        print(f"Phase {phase.number}/3 {phase.key}: finished in an earlier run, weights loaded from {checkpoint}")
        return {**done, "resumed": True}
    start = time.perf_counter()
    best = None
    if phase.epochs > 0:
        comp = np.less if phase.lower_is_better else np.greater
        best = BestWeightsCheckpoint(checkpoint, phase.monitor, phase.lower_is_better, {"phase": phase.key})
        early = EarlyStoppingCallback(monitor=phase.monitor, comp=comp, min_delta=1e-4, patience=phase.patience)
        phase.fit([best, early, *phase.callbacks, *shared_cbs])
        load_weights(model, checkpoint)
    else:
        save_weights(model, checkpoint, {"phase": phase.key, "epoch": "none"})
    summary = _phase_summary(phase, phase.learner, time.perf_counter() - start, best)
    summary["checkpoint"] = str(checkpoint)
    state["phases"][phase.key] = summary
    write_json(models_dir / STATE_FILE, state)
    return summary


def _validation_latents(model, dls: DataLoaders):
    data = extract_latents(model, dls.valid)
    return data.z, data.targets


def train_xaaenet(
    model: ExplainableModel,
    dls: DataLoaders,
    epochs_adv: int = 35,
    epochs_ae: int = 50,
    epochs_classif: int = 30,
    ae_recons_weight: float = 0.4,
    ae_adv_weight: float = 0.6,
    classif_recons_weight: float = 0.599,
    classif_class_weight: float = 0.001,
    classif_adv_weight: float = 0.4,
    lr_max: float = 1e-4,
    lr_max_factor: float = 3.0,
    mask_ratio: float = 0.2,
    patch_size: int = 16,
    noise_std: float = 0.05,
    adv_low_threshold: float = 0.65,
    adv_high_threshold: float = 0.8,
    grad_accum: int = 4,
    patience: int = 10,
    models_dir: str | Path = "models",
    adv_fname: str = "xaaenet_adv",
    ae_fname: str = "xaaenet_ae",
    classif_fname: str = "xaaenet_classif",
    save_tsne: bool = True,
    tsne_max_points: int = 5000,
    tsne_perplexity: float = 30,
    save_pls: bool = True,
    pls_target_class: str | None = None,
    pls_max_points: int = 10000,
    extract_latent: bool = True,
    latent_path: str | Path | None = None,
    show_latent_figures: bool | None = None,
    *,
    freeze_encoder: bool | None = None,
    classif_monitor: str = "classif_loss",
    critic_in_later_phases: bool = False,
    resume: bool = False,
    seed: int | None = None,
    cbs: Sequence[Callback] = (),
) -> Learner:
    """Train an explainable xAAEnet model: adversarial, then denoising autoencoder, then classifier.

    Phase 1 trains the latent GAN alone (the decoder is not run), alternating generator and critic epochs with
    `UnfreezeFcCritAdaptative`; its best epoch has ``z`` closest to N(0, I) (``prior_gap``). Phase 2 trains the
    encoder, latent head and decoder to rebuild clean images from corrupted ones (one-cycle schedule), the
    generator term keeping ``z`` near the prior while the critic takes its own steps; its best epoch has the lowest validation reconstruction loss. Phase 3 adds
    the classifier; its best epoch is chosen on ``classif_monitor`` (validation cross-entropy by default, or
    ``"accuracy"``). Each phase writes its best weights to ``models_dir/<fname>.safetensors`` and reloads them
    strictly before the next phase.

    Parameters
    ----------
    model
        `AAE` or `EncoderWithAAEBlocks`.
    dls
        fastai ``DataLoaders`` with ``(ImageBlock, CategoryBlock)``, two classes, images in [0, 1].
    lr_max, lr_max_factor
        Largest learning rate (decoder, latent, critic and classifier); the encoder uses
        ``lr_max / lr_max_factor``. Used by every phase (phase 2 peaks at it).
    grad_accum
        Step the optimizer once every ``grad_accum`` batches.
    adv_low_threshold, adv_high_threshold
        Band of the critic's validation loss (``ln 2`` at chance) that drives the generator/critic switch.
    models_dir, adv_fname, ae_fname, classif_fname
        Where checkpoints, figures, the latent table and the run state go.
    save_tsne, save_pls, show_latent_figures
        Figures after phases 1-2 (t-SNE) and 3 (PLS); shown inline in a notebook unless ``False``.
    pls_target_class
        Class A of the PLS figure (default: the second class of ``dls.vocab``).
    extract_latent, latent_path
        Write a Parquet table ``path, split, label, target, z_0..`` for the train and validation items, in the
        dataloaders' item order, to ``latent_path`` (default ``models_dir/<classif_fname>_latent.parquet``).
    freeze_encoder
        Override the model's ``freeze_encoder`` (a frozen encoder stays frozen through every phase).
    critic_in_later_phases
        Give the critic one step of its own loss after each training batch of phases 2 and 3 (`LatentCriticStep`).
        The default ``False`` keeps the critic exactly as phase 1 left it: a fixed regulariser, which keeps short
        runs stable but can be fooled in long ones.
    classif_monitor
        Validation value that picks phase 3's checkpoint: ``"classif_loss"`` (cross-entropy) or ``"accuracy"``.
    resume
        Skip the phases that an earlier run with the same ``models_dir`` finished, loading their weights.
    seed
        Seed Python, NumPy and torch for a reproducible run.
    cbs
        Extra fastai callbacks added to every phase.

    Returns
    -------
    The phase-3 ``Learner``; ``learn.xaaenet_history`` lists each phase's epochs, times and metrics and
    ``learn.latent_path`` the Parquet table (or ``None``).
    """
    _check_inputs(model, dls, pls_target_class, classif_monitor)
    if seed is not None:
        set_seed(seed, reproducible=True)
    if freeze_encoder is not None:
        model.freeze_encoder = freeze_encoder
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    state_path = models_dir / STATE_FILE
    state = {"phases": {}}
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
    vocab = [str(v) for v in dls.vocab]
    lr = slice(lr_max / lr_max_factor, lr_max)
    shared_cbs = ([BatchGradientAccumulation(grad_accum)] if grad_accum > 1 else []) + list(cbs)

    def learner(loss_func, metrics, extra_cbs=()) -> Learner:
        groups = model.parameter_groups()
        heads = [p for name, params in groups.items() if name != "encoder" for p in params]
        return Learner(
            dls, model, loss_func=loss_func, metrics=metrics, cbs=list(extra_cbs),
            splitter=lambda m: [groups["encoder"], heads], path=models_dir, model_dir=".",
        )

    def figure_after(phase_key: str, fname: str) -> None:
        encoding_dims = model.encoding_dims
        if phase_key != "classifier" and save_tsne:
            z, y = _validation_latents(model, dls)
            save_latent_tsne_figure(
                z, models_dir / f"tsne_{fname}.png", phase=phase_key, encoding_dims=encoding_dims,
                max_points=tsne_max_points, perplexity=tsne_perplexity, show=show_latent_figures,
                targets=y, class_names=vocab, target_class=pls_target_class,
            )
        if phase_key == "classifier" and save_pls:
            z, y = _validation_latents(model, dls)
            save_latent_pls_figure(
                z, y, models_dir / f"pls_{fname}.png", class_names=vocab, target_class=pls_target_class,
                phase=phase_key, encoding_dims=encoding_dims, max_points=pls_max_points, show=show_latent_figures,
            )

    history = []
    # Phase 1: latent GAN only. The decoder output is unused, so it is not computed.
    model.decode = False
    switch = UnfreezeFcCritAdaptative(low_threshold=adv_low_threshold, high_threshold=adv_high_threshold)
    learn = learner(_AdversarialLoss(model), [LossAttrMetric("gen_loss"), LossAttrMetric("crit_loss"), PriorGapMetric()])
    phase = _Phase(1, "adversarial", adv_fname, epochs_adv, learn, lambda c: learn.fit(epochs_adv, lr=lr, cbs=c),
                   "prior_gap", True, patience, [switch])
    history.append(_run_phase(phase, models_dir, state, resume, shared_cbs))
    if not history[-1].get("resumed"):
        history[-1]["modes"] = list(switch.modes)  # generator/critic mode of each epoch
    model.decode, model.gen_train = True, True
    figure_after("adversarial", adv_fname)

    # Phase 2: denoising autoencoder. The critic is out of the main optimizer from here on (its own step only).
    model.set_trainable_groups(_PHASE_GROUPS["autoencoder"])
    corruption = CorruptionCallback([AddGaussianNoise(std=noise_std), RandomMasking(mask_ratio, patch_size)])
    learn = learner(
        _DenoisingLoss(model, corruption, ae_recons_weight, ae_adv_weight),
        [LossAttrMetric("recons_loss"), LossAttrMetric("gen_loss"), LossAttrMetric("crit_loss")],
        [corruption],
    )
    phase = _Phase(2, "autoencoder", ae_fname, epochs_ae, learn,
                   lambda c: learn.fit_one_cycle(epochs_ae, lr_max=lr, cbs=c), "recons_loss", True, patience,
                   [LatentCriticStep(lr_max)] if critic_in_later_phases else [])
    history.append(_run_phase(phase, models_dir, state, resume, shared_cbs))
    figure_after("autoencoder", ae_fname)

    # Phase 3: classifier on z, with reconstruction and adversarial terms kept.
    model.set_trainable_groups(_PHASE_GROUPS["classifier"])
    learn = learner(
        _ClassifierLoss(model, classif_recons_weight, classif_class_weight, classif_adv_weight),
        [LossAttrMetric("classif_loss"), accuracy, LossAttrMetric("recons_loss"), LossAttrMetric("gen_loss")],
    )
    phase = _Phase(3, "classifier", classif_fname, epochs_classif, learn,
                   lambda c: learn.fit(epochs_classif, lr=lr, cbs=c), classif_monitor,
                   _lower_is_better(classif_monitor), patience,
                   [LatentCriticStep(lr_max)] if critic_in_later_phases else [])
    history.append(_run_phase(phase, models_dir, state, resume, shared_cbs))
    figure_after("classifier", classif_fname)

    learn.xaaenet_history = history
    learn.latent_path = None
    if extract_latent:
        path = Path(latent_path) if latent_path is not None else models_dir / f"{classif_fname}_latent.parquet"
        splits = {split: extract_latents(model, split_dataloader(dls, split)) for split in ("train", "valid")}
        learn.latent_path = write_latent_table(latent_table(splits, vocab), path)
        print(f"Latent vectors of {sum(len(s.z) for s in splits.values())} images written to {learn.latent_path}")
    return learn
