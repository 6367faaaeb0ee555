"""Three-phase xAAEnet training on fastai: adversarial, then denoising autoencoder, then classifier."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import set_seed

from .._utils.classifier import eval_mode
from .._utils.files import load_weights, save_weights, write_json
from .._utils.settings import Settings, SettingsError, check_choice, check_int
from .._utils.stats import better_than_chance
from .callbacks import (
    AddGaussianNoise,
    BatchGradientAccumulation,
    BestWeightsCheckpoint,
    CorruptionCallback,
    LatentCriticStep,
    LossAttrMetric,
    PriorGapMetric,
    RandomMasking,
    UnfreezeFcCritAdaptative,
)
from .figures import save_latent_pls_figure, save_latent_tsne_figure
from .latents import extract_latents, latent_table, split_dataloader, write_latent_table
from .model import EncoderWithAAEBlocks, ExplainableModel
from .resume import EpochCheckpoint, ResumeAt, random_states, read_epoch_checkpoint, restore_random_states

__all__ = ["train_xaaenet", "TrainSettings", "STATE_FILE", "CLASSIFIER_MONITORS"]

logger = logging.getLogger(__name__)

# Records which phases finished and where their weights are, for `resume=True`.
STATE_FILE = "xaaenet_state.json"
CLASSIFIER_MONITORS = ("classif_loss", "accuracy", "valid_loss", "recons_loss")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Every setting of :func:`train_xaaenet` (its keyword arguments, with the same defaults), validated when made;
    TOML-loadable with ``TrainSettings.from_toml``. See :func:`train_xaaenet` for their meaning."""

    epochs_adv: int = 35
    epochs_ae: int = 50
    epochs_classif: int = 30
    ae_recons_weight: float = 0.4
    ae_adv_weight: float = 0.6
    classif_recons_weight: float = 0.599
    # The original 0.001 leaves short runs at chance: see "Loss weights" in docs/xaaenet.md.
    classif_class_weight: float = 0.1
    classif_adv_weight: float = 0.4
    lr_max: float = 1e-4
    lr_max_factor: float = 3.0
    mask_ratio: float = 0.2
    patch_size: int = 16
    noise_std: float = 0.05
    adv_low_threshold: float = 0.65
    adv_high_threshold: float = 0.8
    grad_accum: int = 4
    patience: int = 10
    models_dir: str | Path = "models"
    adv_fname: str = "xaaenet_adv"
    ae_fname: str = "xaaenet_ae"
    classif_fname: str = "xaaenet_classif"
    save_tsne: bool = True
    tsne_max_points: int = 5000
    tsne_perplexity: float = 30
    save_pls: bool = True
    pls_target_class: str | int | None = None  # a class of dls.vocab (compared as text)
    pls_max_points: int = 10000
    extract_latent: bool = True
    latent_path: str | Path | None = None
    show_latent_figures: bool | None = None
    freeze_encoder: bool | None = None
    classif_monitor: str = "classif_loss"
    critic_in_later_phases: bool = False
    resume: bool = False
    seed: int | None = None

    _label = "training setting"

    def __post_init__(self) -> None:
        self.check_types()
        for name in ("epochs_adv", "epochs_ae", "epochs_classif", "patience"):
            check_int(self, name, minimum=0)
        for name in ("patch_size", "grad_accum", "tsne_max_points", "pls_max_points"):
            check_int(self, name, minimum=1)
        if self.seed is not None:
            check_int(self, "seed", minimum=0)
        for name in ("ae_recons_weight", "ae_adv_weight", "classif_recons_weight", "classif_class_weight",
                     "classif_adv_weight", "noise_std"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        for name in ("lr_max", "lr_max_factor", "tsne_perplexity"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise SettingsError(f"mask_ratio must be in [0, 1], got {self.mask_ratio!r}.")
        if self.adv_low_threshold >= self.adv_high_threshold:
            raise SettingsError(f"adv_low_threshold ({self.adv_low_threshold}) must be below adv_high_threshold "
                                f"({self.adv_high_threshold}).")
        check_choice(self, "classif_monitor", CLASSIFIER_MONITORS)
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
    def __init__(self, model: ExplainableModel, corruption: CorruptionCallback, recons_weight: float,
                 adv_weight: float):
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
    fit: Callable[[int, list[Callback]], None]  # (epochs to run, callbacks)
    monitor: str
    lower_is_better: bool
    patience: int
    callbacks: list[Callback] = field(default_factory=list)
    extra_summary: Callable[[], dict] | None = None


def _lower_is_better(monitor: str) -> bool:
    return "loss" in monitor or "error" in monitor or "gap" in monitor


def _check_inputs(model, dls: DataLoaders, pls_target_class: str | int | None) -> None:
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
    if phase.epochs == 0:
        # The learner never fitted, so its recorder has no metric names yet (fastai sets them in before_fit).
        logger.info("Phase %d/3 %s: skipped (0 epochs); the weights pass on unchanged", phase.number, phase.key)
        return {"phase": phase.key, "epochs_run": 0, "epochs_planned": 0, "skipped": True, "stopped_early": False,
                "seconds": round(seconds, 2), "monitor": phase.monitor, "best_epoch": None, "best_value": None,
                "metric_names": [], "values": []}
    names = learner.recorder.metric_names[1:-1]
    values = [[float(v) for v in row] for row in learner.recorder.values]
    # Early stopping ends the fit before its last epoch (the recorder holds every epoch, resumed ones included).
    stopped_early = len(values) < phase.epochs
    summary = {
        "phase": phase.key,
        "epochs_run": len(values),
        "epochs_planned": phase.epochs,
        "skipped": False,
        "stopped_early": stopped_early,
        "seconds": round(seconds, 2),
        "monitor": phase.monitor,
        "best_epoch": None if best is None else best.best_epoch,
        "best_value": None if best is None else best.best,
        "metric_names": names,
        "values": values,
    }
    last = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values[-1])) if values else "no epoch run"
    stop_text = (f"stopped early (no better {phase.monitor} in {phase.patience} epoch(s)); " if stopped_early
                 else "")
    # Counted from 1 here, as in the report's loss curves (best_epoch in the summary counts from 0, as fastai does).
    kept_text = (f"kept epoch {best.best_epoch + 1} of {len(values)} ({phase.monitor} {best.best:.4g}); "
                 if best and best.best is not None else "")
    logger.info("Phase %d/3 %s: %d of %d epoch(s) in %.1f s; %s%slast: %s", phase.number, phase.key, len(values),
                phase.epochs, seconds, stop_text, kept_text, last)
    return summary


def _continue_from(phase: _Phase, progress: Path, model) -> ResumeAt | None:
    """The callback that continues ``phase`` after its last saved epoch, with the model's weights of that epoch
    loaded; ``None`` when there is nothing to continue."""
    if not progress.is_file():
        return None
    saved, tensors = read_epoch_checkpoint(progress)
    if saved["phase"] != phase.key or saved["epoch"] + 1 >= phase.epochs:
        return None
    weights = {key.removeprefix("model/"): value for key, value in tensors.items() if key.startswith("model/")}
    model.load_state_dict(weights, strict=True)
    logger.info("Phase %d/3 %s: continuing after epoch %d of an interrupted run", phase.number, phase.key,
                saved["epoch"])
    return ResumeAt(saved, tensors, phase.epochs)


def _run_phase(phase: _Phase, models_dir: Path, state: dict, resume: bool, shared_cbs: list[Callback]) -> dict:
    model = phase.learner.model
    loaders = phase.learner.dls.loaders
    checkpoint = models_dir / f"{phase.fname}.safetensors"
    progress = models_dir / f"{phase.fname}.resume.safetensors"
    done = state["phases"].get(phase.key)
    if resume and done is not None and checkpoint.is_file():
        progress.unlink(missing_ok=True)  # left when a stop fell between the phase's end and this clean-up
        load_weights(model, checkpoint)
        if phase.key in state.get("random_states", {}):  # later phases then draw what they drew the first time
            restore_random_states(state["random_states"][phase.key], loaders)
        logger.info("Phase %d/3 %s: finished in an earlier run, weights loaded from %s", phase.number, phase.key,
                    checkpoint)
        return {**done, "resumed": True}
    start = time.perf_counter()
    best = None
    if phase.epochs > 0:
        comp = np.less if phase.lower_is_better else np.greater
        best = BestWeightsCheckpoint(checkpoint, phase.monitor, phase.lower_is_better, {"phase": phase.key})
        early = EarlyStoppingCallback(monitor=phase.monitor, comp=comp, min_delta=1e-4, patience=phase.patience)
        callbacks = [best, early, *phase.callbacks, *shared_cbs, EpochCheckpoint(progress, phase.key, phase.epochs)]
        continuation = _continue_from(phase, progress, model) if resume else None
        if continuation is None:
            phase.fit(phase.epochs, callbacks)
        else:
            # fastai's progress bar cannot start at a later epoch: the epochs' rows go to the log instead.
            bars = [cb for cb in phase.learner.cbs if isinstance(cb, ProgressCallback)]
            recorder = phase.learner.recorder
            phase.learner.logger = lambda row: logger.info("Phase %d/3 %s: %s", phase.number, phase.key, ", ".join(
                f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                for name, value in zip(recorder.metric_names, row)))
            try:
                with phase.learner.removed_cbs(bars):
                    phase.fit(phase.epochs - continuation.offset, [*callbacks, continuation])
            finally:
                phase.learner.logger = print
        load_weights(model, checkpoint)
    else:
        save_weights(model, checkpoint, {"phase": phase.key, "epoch": "none"})
    summary = _phase_summary(phase, phase.learner, time.perf_counter() - start, best)
    summary["checkpoint"] = str(checkpoint)
    if phase.extra_summary is not None:
        summary.update(phase.extra_summary())
    state["phases"][phase.key] = summary
    state.setdefault("random_states", {})[phase.key] = random_states(loaders)
    write_json(models_dir / STATE_FILE, state)
    progress.unlink(missing_ok=True)
    return summary


# Settings that only say where figures and tables go or how they look: a resumed run may change them.
_PRESENTATION = {"resume", "show_latent_figures", "save_tsne", "save_pls", "tsne_max_points", "tsne_perplexity",
                 "pls_max_points", "pls_target_class", "extract_latent", "latent_path", "models_dir"}


def _training_defining(settings: TrainSettings) -> dict:
    return {key: value for key, value in settings.as_dict().items() if key not in _PRESENTATION}


def _check_same_training(saved: dict | None, settings: TrainSettings) -> None:
    """Resuming continues the same training: a setting that shapes it must not have changed."""
    if saved is None:
        return
    changed = sorted(key for key, value in _training_defining(settings).items() if saved.get(key) != value)
    if changed:
        raise ValueError(f"resume=True continues the training in this models_dir, which ran with other settings "
                         f"(differing: {changed}); use the same settings, another models_dir, or resume=False.")


# train_xaaenet's keyword defaults are TrainSettings' defaults: one place for each.
_DEFAULT = TrainSettings()


@torch.no_grad()
def _chance_verdict(model: ExplainableModel, dls: DataLoaders) -> dict:
    """`better_than_chance` of the model's validation predictions, logged as a warning when it is not."""
    predicted, targets = [], []
    with eval_mode(model):
        for xb, yb in dls.valid:
            predicted.append(model(xb).argmax(1).cpu())
            targets.append(yb.view(-1).cpu())
    verdict = better_than_chance(torch.cat(targets).numpy(), torch.cat(predicted).numpy())
    if not verdict["better_than_chance"]:
        logger.warning(
            "The classifier is NOT better than chance after the classifier phase: validation accuracy %.1f%% on %d "
            "images against %.1f%% for always answering the majority class (binomial p = %.3f). Its latent space "
            "explains nothing about the task: train longer (epochs_classif), raise classif_class_weight or lr_max, "
            "or check the labels.", 100 * verdict["accuracy"], verdict["images"], 100 * verdict["majority_rate"],
            verdict["p_value"])
    return verdict


def _validation_latents(model, dls: DataLoaders):
    data = extract_latents(model, dls.valid)
    return data.z, data.targets


def train_xaaenet(
    model: ExplainableModel,
    dls: DataLoaders,
    epochs_adv: int = _DEFAULT.epochs_adv,
    epochs_ae: int = _DEFAULT.epochs_ae,
    epochs_classif: int = _DEFAULT.epochs_classif,
    ae_recons_weight: float = _DEFAULT.ae_recons_weight,
    ae_adv_weight: float = _DEFAULT.ae_adv_weight,
    classif_recons_weight: float = _DEFAULT.classif_recons_weight,
    classif_class_weight: float = _DEFAULT.classif_class_weight,
    classif_adv_weight: float = _DEFAULT.classif_adv_weight,
    lr_max: float = _DEFAULT.lr_max,
    lr_max_factor: float = _DEFAULT.lr_max_factor,
    mask_ratio: float = _DEFAULT.mask_ratio,
    patch_size: int = _DEFAULT.patch_size,
    noise_std: float = _DEFAULT.noise_std,
    adv_low_threshold: float = _DEFAULT.adv_low_threshold,
    adv_high_threshold: float = _DEFAULT.adv_high_threshold,
    grad_accum: int = _DEFAULT.grad_accum,
    patience: int = _DEFAULT.patience,
    models_dir: str | Path = _DEFAULT.models_dir,
    adv_fname: str = _DEFAULT.adv_fname,
    ae_fname: str = _DEFAULT.ae_fname,
    classif_fname: str = _DEFAULT.classif_fname,
    save_tsne: bool = _DEFAULT.save_tsne,
    tsne_max_points: int = _DEFAULT.tsne_max_points,
    tsne_perplexity: float = _DEFAULT.tsne_perplexity,
    save_pls: bool = _DEFAULT.save_pls,
    pls_target_class: str | int | None = _DEFAULT.pls_target_class,
    pls_max_points: int = _DEFAULT.pls_max_points,
    extract_latent: bool = _DEFAULT.extract_latent,
    latent_path: str | Path | None = _DEFAULT.latent_path,
    show_latent_figures: bool | None = _DEFAULT.show_latent_figures,
    *,
    freeze_encoder: bool | None = _DEFAULT.freeze_encoder,
    classif_monitor: str = _DEFAULT.classif_monitor,
    critic_in_later_phases: bool = _DEFAULT.critic_in_later_phases,
    resume: bool = _DEFAULT.resume,
    seed: int | None = _DEFAULT.seed,
    cbs: Sequence[Callback] = (),
    settings: TrainSettings | None = None,
) -> Learner:
    """Train an explainable xAAEnet model: adversarial, then denoising autoencoder, then classifier.

    Phase 1 trains the latent GAN alone (the decoder is not run), alternating generator and critic epochs with
    `UnfreezeFcCritAdaptative`; its best epoch has ``z`` closest to N(0, I) (``prior_gap``). Phase 2 trains the
    encoder, latent head and decoder to rebuild clean images from corrupted ones (one-cycle schedule), the
    generator term keeping ``z`` near the prior while the critic takes its own steps; its best epoch has the lowest
    validation reconstruction loss. Phase 3 adds the classifier; its best epoch is chosen on ``classif_monitor``
    (validation cross-entropy by default, or ``"accuracy"``). Each phase writes its best weights to
    ``models_dir/<fname>.safetensors`` and reloads them strictly before the next phase.

    Parameters
    ----------
    model
        `AAE` or `EncoderWithAAEBlocks`.
    dls
        fastai ``DataLoaders`` with ``(ImageBlock, CategoryBlock)``, two classes, images in [0, 1].
    lr_max, lr_max_factor
        Largest learning rate (decoder, latent, critic and classifier); the encoder uses
        ``lr_max / lr_max_factor``. Used by every phase (phase 2 peaks at it).
    ae_recons_weight, ae_adv_weight, classif_recons_weight, classif_class_weight, classif_adv_weight
        Weights of the loss terms of phases 2 and 3. Adam makes each parameter's step blind to the scale of its
        gradient, so a weight acts through its ratio to the other weights on the parameters the terms share (the
        encoder and the latent head): ``classif_class_weight`` is how much the classification shapes ``z``
        against reconstruction and the prior. The default 0.1 (the original's 0.001 left a short run at chance)
        gives it about a third of the encoder's gradient at the start of phase 3.
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
    settings
        All of the above (but ``cbs``) as one :class:`TrainSettings`, instead of keyword arguments (which must
        then keep their defaults).

    Returns
    -------
    The phase-3 ``Learner``; ``learn.xaaenet_history`` lists each phase's epochs, times and metrics (the last
    one also holds ``validation``, the binomial test of the validation accuracy against always answering the
    majority class, logged as a WARNING when the classifier is not better than chance) and ``learn.latent_path``
    the Parquet table (or ``None``).
    """
    given = {name: value for name, value in locals().items() if name in TrainSettings.names()}
    if settings is None:
        settings = TrainSettings.from_mapping(given)
    else:
        changed = sorted(name for name, value in given.items() if value != getattr(_DEFAULT, name))
        if changed:
            raise ValueError(f"Pass the training settings as settings= or as keyword arguments, not both "
                             f"(keyword arguments given: {changed}).")
    _check_inputs(model, dls, settings.pls_target_class)
    if settings.seed is not None:
        set_seed(settings.seed, reproducible=True)
    if settings.freeze_encoder is not None:
        model.freeze_encoder = settings.freeze_encoder
    models_dir = Path(settings.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    state_path = models_dir / STATE_FILE
    state = {"phases": {}}
    if settings.resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        _check_same_training(state.get("settings"), settings)
    state["settings"] = _training_defining(settings)
    if settings.resume:
        for orphan in models_dir.glob(".*.tmp"):  # left by a process killed while writing a file
            logger.info("Removing %s, a partial file of an interrupted run", orphan)
            orphan.unlink(missing_ok=True)
    vocab = [str(v) for v in dls.vocab]
    target_class = None if settings.pls_target_class is None else str(settings.pls_target_class)
    lr = slice(settings.lr_max / settings.lr_max_factor, settings.lr_max)
    shared_cbs = ([BatchGradientAccumulation(settings.grad_accum)] if settings.grad_accum > 1 else []) + list(cbs)

    def learner(loss_func, metrics, extra_cbs=()) -> Learner:
        groups = model.parameter_groups()
        heads = [p for name, params in groups.items() if name != "encoder" for p in params]
        return Learner(
            dls, model, loss_func=loss_func, metrics=metrics, cbs=list(extra_cbs),
            splitter=lambda m: [groups["encoder"], heads], path=models_dir, model_dir=".",
        )

    def figure_after(phase_key: str, fname: str) -> None:
        encoding_dims = model.encoding_dims
        if phase_key != "classifier" and settings.save_tsne:
            z, y = _validation_latents(model, dls)
            save_latent_tsne_figure(
                z, models_dir / f"tsne_{fname}.png", phase=phase_key, encoding_dims=encoding_dims,
                max_points=settings.tsne_max_points, perplexity=settings.tsne_perplexity,
                show=settings.show_latent_figures, targets=y, class_names=vocab, target_class=target_class,
            )
        if phase_key == "classifier" and settings.save_pls:
            z, y = _validation_latents(model, dls)
            save_latent_pls_figure(
                z, y, models_dir / f"pls_{fname}.png", class_names=vocab, target_class=target_class,
                phase=phase_key, encoding_dims=encoding_dims, max_points=settings.pls_max_points,
                show=settings.show_latent_figures,
            )

    history = []
    # Phase 1: latent GAN only (its loss never asks for the decoder's output, so the decoder does not run).
    switch = UnfreezeFcCritAdaptative(low_threshold=settings.adv_low_threshold,
                                      high_threshold=settings.adv_high_threshold)
    learn = learner(_AdversarialLoss(model),
                    [LossAttrMetric("gen_loss"), LossAttrMetric("crit_loss"), PriorGapMetric()])
    phase = _Phase(1, "adversarial", settings.adv_fname, settings.epochs_adv, learn,
                   lambda epochs, c: learn.fit(epochs, lr=lr, cbs=c), "prior_gap", True, settings.patience,
                   [switch], lambda: {"modes": list(switch.modes)})  # generator/critic mode of each epoch
    history.append(_run_phase(phase, models_dir, state, settings.resume, shared_cbs))
    model.gen_train = True
    figure_after("adversarial", settings.adv_fname)

    # Phase 2: denoising autoencoder. The critic is out of the main optimizer from here on (its own step only).
    model.set_trainable_groups(_PHASE_GROUPS["autoencoder"])
    corruption = CorruptionCallback([AddGaussianNoise(std=settings.noise_std),
                                     RandomMasking(settings.mask_ratio, settings.patch_size)])
    learn = learner(
        _DenoisingLoss(model, corruption, settings.ae_recons_weight, settings.ae_adv_weight),
        [LossAttrMetric("recons_loss"), LossAttrMetric("gen_loss"), LossAttrMetric("crit_loss")],
        [corruption],
    )
    phase = _Phase(2, "autoencoder", settings.ae_fname, settings.epochs_ae, learn,
                   lambda epochs, c: learn.fit_one_cycle(epochs, lr_max=lr, cbs=c), "recons_loss", True,
                   settings.patience,
                   [LatentCriticStep(settings.lr_max)] if settings.critic_in_later_phases else [])
    history.append(_run_phase(phase, models_dir, state, settings.resume, shared_cbs))
    figure_after("autoencoder", settings.ae_fname)

    # Phase 3: classifier on z, with reconstruction and adversarial terms kept.
    model.set_trainable_groups(_PHASE_GROUPS["classifier"])
    learn = learner(
        _ClassifierLoss(model, settings.classif_recons_weight, settings.classif_class_weight,
                        settings.classif_adv_weight),
        [LossAttrMetric("classif_loss"), accuracy, LossAttrMetric("recons_loss"), LossAttrMetric("gen_loss")],
    )
    phase = _Phase(3, "classifier", settings.classif_fname, settings.epochs_classif, learn,
                   lambda epochs, c: learn.fit(epochs, lr=lr, cbs=c), settings.classif_monitor,
                   _lower_is_better(settings.classif_monitor), settings.patience,
                   [LatentCriticStep(settings.lr_max)] if settings.critic_in_later_phases else [])
    history.append(_run_phase(phase, models_dir, state, settings.resume, shared_cbs))
    history[-1]["validation"] = _chance_verdict(model, dls)
    figure_after("classifier", settings.classif_fname)

    learn.xaaenet_history = history
    learn.latent_path = None
    if settings.extract_latent:
        path = (Path(settings.latent_path) if settings.latent_path is not None
                else models_dir / f"{settings.classif_fname}_latent.parquet")
        splits = {split: extract_latents(model, split_dataloader(dls, split)) for split in ("train", "valid")}
        learn.latent_path = write_latent_table(latent_table(splits, vocab), path)
        logger.info("Latent vectors of %d images written to %s", sum(len(split.z) for split in splits.values()),
                    learn.latent_path)
    return learn
