"""The ``tmw run`` pipeline: data -> train -> features -> interpret -> explain -> report, in one run directory.

Every step writes its outputs atomically and is recorded in ``run_state.json`` when it finishes, so running
again on the same directory resumes after the last finished step (training itself resumes by phase).
"""

from __future__ import annotations

import itertools
import json
import logging
import textwrap
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._utils.files import DirectoryLock, atomic_path, load_weights, write_json, write_parquet
from .._utils.settings import Settings, SettingsError, check_choice, check_int
from .._utils.stats import better_than_chance
from .baselines import encoder_cross_entropy, pixel_logistic_regression
from .data import DEFAULT_MAX_PIXELS, DataSourceError, LabelledImages, from_csv, from_filename_rule, from_folder

if TYPE_CHECKING:
    from ..cues.definitions import PixelCue

__all__ = ["RunSettings", "Run", "STEPS", "QUICK", "OLD_DEFAULTS", "NOT_DEFINING", "old_defaults_for",
           "saved_settings", "better_than_chance", "chance_warning", "baseline_sentence"]

STEPS = ("data", "train", "features", "interpret", "explain", "report")
MIN_VALID_PER_CLASS = 2
MIN_SIZE = 32
# Deletion and insertion curves of the explain step: the target probability at every 5 % of the pixels.
CURVE_STEPS = 20
# How the model was built when its training started: input channels and what --pretrained came to.
MODEL_RECORD = "models/model.json"
# The folders of a run directory that a run writes files into.
RUN_FOLDERS = ("", "models", "interpretation", "explanations", "explanations/images", "explanations/latent",
               "report_figures", "embedded_data/face", "embedded_data/non_face")
logger = logging.getLogger(__name__)


def baseline_sentence(verdict: dict) -> str:
    """xAAEnet's validation accuracy beside the plain baselines' (``validation.json``): the logistic regression on
    the pixels and, with ``--baseline``, the same encoder trained with cross-entropy alone; saying when xAAEnet is
    worse than either."""
    ours = verdict["accuracy"]
    # (what the sentence calls the baseline beside the accuracy, what it calls it when xAAEnet is worse, accuracy)
    baselines = []
    if verdict.get("pixel_logistic_regression") is not None:
        baselines.append(("logistic regression on the pixels", "a linear model of the pixels",
                          verdict["pixel_logistic_regression"]))
    if verdict.get("encoder_cross_entropy") is not None:
        encoder = verdict["encoder_cross_entropy"]
        ours_seconds = (f" against xAAEnet's {verdict['xaaenet_seconds']:.0f} s"
                        if verdict.get("xaaenet_seconds") is not None else "")
        baselines.append((f"the same encoder with cross-entropy alone, {encoder['seconds']:.0f} s{ours_seconds}",
                          "the same encoder trained with cross-entropy alone", encoder["accuracy"]))
    if not baselines:  # a run trained before baselines were recorded
        return f"validation accuracy: {ours:.1%}"
    sentence = (f"validation accuracy: {ours:.1%} ("
                + "; ".join(f"{name}: {accuracy:.1%}" for name, _, accuracy in baselines) + ")")
    worse = [f"{accuracy - ours:.1%} worse than {name}" for _, name, accuracy in baselines if ours < accuracy]
    if worse:
        sentence += (f". xAAEnet is {' and '.join(worse)}: its explanations describe a weaker model than a plain "
                     f"one")
    return sentence


def channels_note(settings_grey: bool | None, data_grey: bool | None, model_grey: bool) -> str:
    """How the run reads colour, in a few words for the summary and the report ("" for colour images read in
    colour)."""
    if model_grey:
        if settings_grey is None:
            return "grey images: trained on one channel"
        colour = ", the images' colour left out" if data_grey is False else ""
        return f"trained on one channel (grey levels, --grey){colour}"
    if data_grey:
        return "grey images, trained on three equal channels (--no-grey)"
    return ""


def pretrained_note(record: dict | None) -> str:
    """What ``--pretrained`` came to (``validation.json``'s ``encoder_weights``), in words; "" when not recorded or
    not known (``"imagenet": "unknown"``: a run whose training started before the outcome was recorded)."""
    if not record or record["imagenet"] not in (True, False):
        return ""
    if record["imagenet"]:
        return f"encoder {record['encoder']}: ImageNet weights (--pretrained {record['requested']})"
    if record["requested"] == "auto":
        return (f"encoder {record['encoder']}: random initial weights, the ImageNet weights could not be had "
                f"(--pretrained auto fell back)")
    return f"encoder {record['encoder']}: random initial weights (--no-pretrained)"


def chance_warning(verdict: dict) -> str:
    return (f"the classifier is not better than chance: validation accuracy {verdict['accuracy']:.1%} on "
            f"{verdict['images']} images against {verdict['majority_rate']:.1%} for always answering the majority "
            f"class (binomial p = {verdict['p_value']:.3f}). It has not learnt the task, so nothing below explains "
            f"the task: check the data and the training settings (more epochs, another learning rate).")


def _causal_caption(result, vocab: list[str]) -> str:
    """A gallery line for a causal map that is contrastive or empty, with the reason; "" otherwise."""
    from .explain_images import with_class_names

    stats = result.stats
    line = ""
    if "contrast_class" in stats:
        line = f"\ncausal: against a {vocab[stats['contrast_class']]} reference"
    if result.explanation is not None:
        return line
    return line + "\ncausal none: " + textwrap.shorten(with_class_names(stats["note"], vocab), 60)


@dataclass(frozen=True)
class RunSettings(Settings):
    """Everything a run depends on; written to ``settings.json`` in the run directory."""

    data: str | None = None
    data_format: str = "auto"  # auto | folder | csv | rule
    label_rule: str = "pets"
    path_column: str = "path"
    label_column: str = "label"
    on_unreadable: str = "skip"
    class_a: str | None = None
    size: int = 64
    grey: bool | None = None  # None: one channel when every image of the data is grey (the data step checks)
    encoder: str = "resnet18"
    pretrained: bool | Literal["auto"] = "auto"  # auto: ImageNet weights when they can be had, else random
    encoding_dims: int = 32
    batch_size: int = 16
    valid_pct: float = 0.25
    epochs_adv: int = 3
    epochs_ae: int = 6
    epochs_classif: int = 8
    # Early stopping: a phase ends after this many epochs without a better validation value, and every phase keeps
    # its best epoch (classifier: validation cross-entropy; autoencoder: validation reconstruction loss).
    patience: int = 3
    lr_max: float = 3e-3
    classif_class_weight: float = 0.1
    explain_images: int = 6
    ig_steps: int = 32
    causal_iterations: int | str = "auto"
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    cues: str | None = None  # your own pixel cues, "module:function[,module:function]"
    # Also train the same encoder with cross-entropy alone (no decoder, no critic) on the same split, as a baseline.
    baseline: bool = False

    def __post_init__(self) -> None:
        self.check_types()
        check_choice(self, "data_format", ("auto", "folder", "csv", "rule"))
        check_choice(self, "on_unreadable", ("skip", "raise"))
        for name in ("size", "encoding_dims", "batch_size", "explain_images", "ig_steps", "max_pixels", "patience"):
            check_int(self, name, minimum=1)
        if self.causal_iterations != "auto":
            check_int(self, "causal_iterations", minimum=1)
        for name in ("epochs_adv", "epochs_ae", "epochs_classif", "seed"):
            check_int(self, name, minimum=0)
        if not 0 < self.valid_pct < 1:
            raise SettingsError(f"valid_pct must be in (0, 1), got {self.valid_pct}.")
        if not self.lr_max > 0:
            raise SettingsError(f"lr_max must be > 0, got {self.lr_max}.")
        if self.epochs_classif < 1:
            raise SettingsError("epochs_classif must be >= 1: a run explains a classifier, so the classifier phase "
                                "must train.")
        if self.size < MIN_SIZE:
            raise SettingsError(f"size must be at least {MIN_SIZE} pixels (the encoders' smallest input), got "
                                f"{self.size}.")
        from ..xaaenet.encoders import available_encoders

        if self.encoder not in available_encoders():
            raise SettingsError(f"Unknown encoder {self.encoder!r}; choose one of {available_encoders()}.")
        if self.cues is not None:  # import them now: a mistyped module or function fails before any step runs
            from ..cues.table import load_feature_scores

            try:
                load_feature_scores(self.cues)
            except ValueError as error:
                raise SettingsError(f"cues: {error}") from None


# Settings added after runs were made, with the value those runs used: a settings.json without one was written
# before it existed and reads as this value, not the setting's present default, so that the run still resumes.
OLD_DEFAULTS: dict[str, object] = {
    "patience": 10,  # before --patience, training used TrainSettings' default (its xaaenet_state.json says 10)
}
# Settings that add to a run without changing what it has computed: they may change on a run with finished steps
# (--baseline trains the extra baseline only).
NOT_DEFINING = frozenset({"baseline"})


def old_defaults_for(saved: dict) -> dict:
    """The settings that a saved ``settings.json`` mapping predates, at the values its run used (``OLD_DEFAULTS``)."""
    return {name: value for name, value in OLD_DEFAULTS.items() if name not in saved}


def saved_settings(directory: str | Path) -> dict | None:
    """A run directory's ``settings.json`` as a mapping, settings it predates at their old values; ``None`` when
    there is none."""
    path = Path(directory) / "settings.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return {**old_defaults_for(saved), **saved}


# The ranking figure of a run shows the cues with the largest signed r2 (stats.csv lists every cue).
RANKING_BARS = 25

# `tmw run --quick`: a first look in about a minute on the demo (2 CPU cores); docs/tmw.md says why each value.
# Flags and --config override it, and settings.json records the values (a run does not depend on the preset).
QUICK: dict[str, int] = {
    "size": 32,  # a quarter of the default's pixels; the demo's originals are 25 px, so it loses nothing there
    "epochs_adv": 1,  # the critic's warm-up: one epoch gives the later phases a prior to hold z to
    "epochs_ae": 2,  # enough for z to carry the image's coarse layout before the classifier reads it
    "epochs_classif": 4,  # the demo's classifier had its best validation cross-entropy at epoch 2 or 3 of 4
    "patience": 2,  # stop the classifier at its first plateau
    "explain_images": 4,  # two per class in the gallery (causal maps and trust curves cost per image)
    "ig_steps": 16,  # half the default's steps along Integrated Gradients' path: half its cost
    "causal_iterations": 4,  # a fixed, small number of causal refinement rounds instead of "until it settles"
}


class Run:
    """A run directory and its steps; ``run_all()`` does what is left."""

    @classmethod
    def open(cls, directory: str | Path) -> Run:
        """An existing run with the settings it was started with (opening a run writes nothing)."""
        saved = saved_settings(directory)
        if saved is None:
            raise FileNotFoundError(f"{directory} is not a tmw run directory (no settings.json); start one with "
                                    f"tmw run DATA --out {directory}.")
        return cls(directory, RunSettings.from_mapping(saved, source=str(Path(directory) / "settings.json")))

    def __init__(self, directory: str | Path, settings: RunSettings) -> None:
        self.dir = Path(directory)
        self.settings = settings
        self.state_path = self.dir / "run_state.json"
        saved = self.dir / "settings.json"
        if saved.is_file() and self.done:  # before any finished step, new settings simply replace the old
            # Through the settings class: a run written before a setting existed has the value it used then
            # (OLD_DEFAULTS), else that setting's default. Settings that do not define the run may change.
            previous = asdict(RunSettings.from_mapping(saved_settings(self.dir), source=str(saved)))
            new = asdict(settings)
            changed = sorted(k for k in previous if previous[k] != new[k] and k not in NOT_DEFINING)
            if changed:
                raise ValueError(f"{self.dir} holds a run with other settings (differing: {changed}); use a new "
                                 f"run directory, or the same settings to resume.")
        self._dls = None
        self._model = None
        self._lock: DirectoryLock | None = None
        self._writers = 0

    @contextmanager
    def writing(self) -> Iterator[Run]:
        """Hold the run directory for writing: one process at a time (a second one fails at once, naming the
        first). On entry the settings are recorded and partial files left by a killed process are removed.
        Re-entrant; ``run_all`` and ``run_step`` take it themselves."""
        if self._writers == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = DirectoryLock(self.dir).acquire()
            try:
                for folder in RUN_FOLDERS:  # only where a run writes: --out may hold the user's own files
                    for orphan in (self.dir / folder).glob(".*.tmp"):
                        logger.info("Removing %s, a partial file of an interrupted run", orphan)
                        orphan.unlink(missing_ok=True)
                saved = self.dir / "settings.json"
                if not saved.is_file() or json.loads(saved.read_text()) != asdict(self.settings):
                    write_json(saved, asdict(self.settings))
            except BaseException:
                self._lock.release()
                raise
        self._writers += 1
        try:
            yield self
        finally:
            self._writers -= 1
            if self._writers == 0:
                self._lock.release()
                self._lock = None

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def done(self) -> list[str]:
        return json.loads(self.state_path.read_text())["done"] if self.state_path.is_file() else []

    def _mark(self, step: str) -> None:
        write_json(self.state_path, {"done": [s for s in STEPS if s in {*self.done, step}]})

    def run_step(self, step: str) -> None:
        """(Re)do ``step``, after any earlier step that has not finished."""
        if step not in STEPS:
            raise ValueError(f"Unknown step {step!r}; steps: {STEPS}.")
        with self.writing():
            for earlier in STEPS[: STEPS.index(step)]:
                if earlier not in self.done:
                    self._do(earlier, note=" (needed first)")
            if step != "train" and self._baseline_missing():  # a redone train step trains it itself
                self.add_baseline()
            self._do(step)

    def run_all(self) -> Path:
        """Every step that has not finished yet, in order; returns the report's path."""
        with self.writing():
            baseline_added = False
            for step in STEPS:
                if step in self.done and not (step == "report" and baseline_added):
                    logger.info("%s: already done, skipped", step)
                else:
                    self._do(step)
                if step == "train" and self._baseline_missing():  # --baseline given to a run trained without it
                    self.add_baseline()
                    baseline_added = True  # the report shows it
        return self.dir / "report.html"

    def _do(self, step: str, note: str = "") -> None:
        started = time.perf_counter()
        logger.info("%s%s...", step, note)
        getattr(self, f"step_{step}")()
        self._mark(step)
        logger.info("%s: finished in %.0f s", step, time.perf_counter() - started)

    def summary(self) -> str:
        """What the run found so far, in a few lines, ending with where the report is."""
        lines = [f"[tmw] run directory: {self.dir}"]
        verdict = self.chance_verdict()
        if verdict is not None and not verdict["better_than_chance"]:
            lines.append(f"[tmw] WARNING: {chance_warning(verdict)}")
        data = self._data_record()
        if data is not None:
            note = channels_note(self.settings.grey, data.get("grey"), self.grey)
            lines.append(f"[tmw] data: {data['counts']}, {len(data['skipped'])} unreadable file(s) skipped"
                         + (f"; {note}" if note else ""))
        kept = self.kept_epochs()
        if kept:
            lines.append(f"[tmw] training: {kept}")
        if verdict is not None:
            lines.append(f"[tmw] {baseline_sentence(verdict)}")
            weights = pretrained_note(verdict.get("encoder_weights"))
            if weights:
                lines.append(f"[tmw] {weights}")
        axis_path = self.dir / "interpretation" / "axis.json"
        if axis_path.is_file():
            axis = json.loads(axis_path.read_text())
            stats = pd.read_csv(self.dir / "interpretation" / "stats.csv", index_col=0)
            cues = ", ".join(stats.index[stats["significant"]][:5]) or "none significant"
            verdict = "reliable" if axis["reliable"] else "NOT reliable (cue ranking is not evidence)"
            lines.append(f"[tmw] decision axis: {verdict}, held-out r = {axis['r']:.2f}, p = {axis['p_value']:.3f}; "
                         f"top cues: {cues}")
        report = self.dir / "report.html"
        if "report" in self.done and report.is_file():
            lines.append(f"[tmw] report: {report.resolve()}")
        return "\n".join(lines)

    # -- data and model ---------------------------------------------------------------------------------------

    def _labelled(self) -> LabelledImages:
        s = self.settings
        if s.data is None:
            from .data import write_lfw_subset

            root = write_lfw_subset(self.dir / "embedded_data", size=s.size)
            return from_folder(root, s.on_unreadable, max_pixels=s.max_pixels, class_a=s.class_a)
        source = Path(s.data)
        kind = s.data_format
        if kind == "auto":
            kind = "csv" if source.suffix.lower() == ".csv" else "folder"
        if kind == "csv":
            return from_csv(source, s.path_column, s.label_column, s.on_unreadable, max_pixels=s.max_pixels,
                            class_a=s.class_a)
        # A run directory inside the data (--out photos/cat) must not feed its own figures back as images.
        if kind == "rule":
            return from_filename_rule(source, s.label_rule, s.on_unreadable, exclude=[self.dir],
                                      max_pixels=s.max_pixels, class_a=s.class_a)
        return from_folder(source, s.on_unreadable, exclude=[self.dir], max_pixels=s.max_pixels, class_a=s.class_a)

    def _data_record(self) -> dict | None:
        """``data.json``, written by the data step (``None`` before it)."""
        path = self.dir / "data.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def data_grey(self) -> bool | None:
        """Whether every image of the data is grey (the data step's verdict; ``None`` before it, or for a run whose
        data step predates the verdict)."""
        record = self._data_record()
        return None if record is None else record.get("grey")

    @property
    def grey(self) -> bool:
        """Whether the model reads one channel. Once trained: as many channels as its training started with
        (``models/model.json``), whatever a redone data step has found since. Before: ``--grey``/``--no-grey`` when
        given, else whether every image of the data is grey (``data.json``, so that every later step and a reopened
        run agree). A run whose data step predates that verdict keeps the rule it was trained with (grey for the
        embedded faces only), so that its checkpoints still fit its model."""
        record = self._model_record() if "train" in self.done else None
        if record is not None:
            return record["input_channels"] == 1
        if self.settings.grey is not None:
            return self.settings.grey
        data_grey = self.data_grey
        return data_grey if data_grey is not None else self.settings.data is None

    @property
    def class_a(self) -> str:
        classes = json.loads((self.dir / "data.json").read_text())["classes"]
        if self.settings.class_a is None:
            return "face" if self.settings.data is None else classes[1]
        if self.settings.class_a not in classes:
            raise ValueError(f"class_a {self.settings.class_a!r} is not one of the classes {classes}.")
        return self.settings.class_a

    @property
    def class_b(self) -> str:
        """The class that is not class A."""
        classes = json.loads((self.dir / "data.json").read_text())["classes"]
        return next(c for c in classes if c != self.class_a)

    def dataloaders(self):
        if self._dls is None:
            table = pd.read_csv(self.dir / "data.csv")
            gone = [p for p in table["path"] if not Path(p).is_file()]
            if gone:
                raise DataSourceError(
                    f"{len(gone)} image(s) that the data step of {self.dir} found are gone, e.g. {gone[:3]}. Put "
                    f"them back, or start over: a new --out, or delete {self.state_path} to redo every step.")
            data = LabelledImages([Path(p) for p in table["path"]], table["label"].tolist(), str(self.dir))
            s = self.settings
            self._dls = data.dataloaders(size=s.size, bs=s.batch_size, valid_pct=s.valid_pct, seed=s.seed,
                                         grey=self.grey, max_pixels=s.max_pixels)
        return self._dls

    def _model_record(self) -> dict | None:
        """``models/model.json``: how the model was built when its training started (``input_channels``, and
        ``encoder_weights``: what ``--pretrained`` came to); ``None`` before, or for a run trained before it."""
        path = self.dir / MODEL_RECORD
        return json.loads(path.read_text()) if path.is_file() else None

    def _record_model(self, model: nn.Module) -> None:
        """Write ``models/model.json`` for the model that training starts from. A training that continues an
        interrupted one keeps the first record: its checkpoints descend from the first build's weights, whatever
        a new try at the download gives now (with no record, ``--pretrained auto`` then came to "unknown")."""
        from ..xaaenet.training import STATE_FILE

        models = self.dir / "models"
        continues = (models / STATE_FILE).is_file() or any(models.glob("*.resume.safetensors"))
        if continues and self._model_record() is not None:
            return
        s = self.settings
        if not continues:
            imagenet: bool | str = bool(getattr(model, "imagenet_weights", False))
        else:  # an interruption before this record existed: "auto" may have gone either way then
            imagenet = "unknown" if s.pretrained == "auto" else bool(s.pretrained)
        write_json(self.dir / MODEL_RECORD, {
            "input_channels": 1 if self.grey else 3,
            "encoder_weights": {"encoder": s.encoder, "requested": s.pretrained, "imagenet": imagenet}})

    def encoder_weights(self) -> dict:
        """What ``--pretrained`` came to for the encoder xAAEnet trained from: ``encoder``, ``requested`` and
        ``imagenet`` (``True``, ``False`` or ``"unknown"``). From the record written when training started; for a
        run trained before it, from ``validation.json``, else ``"unknown"`` where ``--pretrained auto`` leaves it
        open."""
        record = self._model_record()
        if record is not None:
            return record["encoder_weights"]
        previous = (self.chance_verdict() or {}).get("encoder_weights")
        if previous:
            return previous
        s = self.settings
        return {"encoder": s.encoder, "requested": s.pretrained,
                "imagenet": "unknown" if s.pretrained == "auto" else bool(s.pretrained)}

    def model(self) -> nn.Module:
        if self._model is None:
            from ..xaaenet.model import AAE

            s = self.settings
            # The initial weights come from the run's seed without touching the caller's random state; once
            # trained, from the run's checkpoints (so no download is needed to rebuild the model).
            with torch.random.fork_rng():
                torch.manual_seed(s.seed)
                model = AAE(input_size=s.size, input_channels=1 if self.grey else 3, encoding_dims=s.encoding_dims,
                            encoder=s.encoder, pretrained=False if "train" in self.done else s.pretrained)
            checkpoint = self.dir / "models" / "xaaenet_classif.safetensors"
            if "train" in self.done:
                load_weights(model, checkpoint)
            self._model = model
        return self._model

    def train_settings(self):
        """The :class:`~tell_me_why.xaaenet.training.TrainSettings` this run trains with."""
        from ..xaaenet.training import TrainSettings

        s = self.settings
        return TrainSettings(
            epochs_adv=s.epochs_adv, epochs_ae=s.epochs_ae, epochs_classif=s.epochs_classif, lr_max=s.lr_max,
            classif_class_weight=s.classif_class_weight, grad_accum=1, models_dir=self.dir / "models",
            pls_target_class=self.class_a, show_latent_figures=False, latent_path=self.dir / "latents.parquet",
            resume=True, seed=s.seed, patience=s.patience,
        )

    # -- steps ------------------------------------------------------------------------------------------------

    def step_data(self) -> None:
        self._dls = None  # a redone data step reads the data again
        data = self._labelled()
        with atomic_path(self.dir / "data.csv") as tmp:
            data.to_frame().to_csv(tmp, index=False)
        write_json(self.dir / "data.json", {
            "source": data.source, "classes": list(data.classes), "counts": data.counts(),
            "skipped": [[str(p), reason] for p, reason in data.skipped],
            # Read while the images were decoded for the check above: the model's channels follow from it.
            "grey": data.grey,
        })
        logger.info("data: %s from %s; %d unreadable file(s) skipped", data.counts(), data.source, len(data.skipped))
        note = channels_note(self.settings.grey, data.grey, self.grey)
        if note:
            logger.info("data: %s", note)
        # The axis is tested on the validation images: fail now, not after training, if that cannot work.
        label_of = dict(zip(data.paths, data.labels))
        valid = Counter(label_of[Path(p)] for p in self.dataloaders().valid.items)
        short = {c: valid[c] for c in data.classes if valid[c] < MIN_VALID_PER_CLASS}
        if short:
            raise DataSourceError(
                f"The validation split ({self.settings.valid_pct:.0%}) holds too few images of {short}; the "
                f"interpretation needs at least {MIN_VALID_PER_CLASS} per class. Add images or raise --valid-pct.")
        training_images = len(self.dataloaders().train_ds)
        if self.settings.batch_size > training_images:
            raise DataSourceError(
                f"--batch-size {self.settings.batch_size} is larger than the {training_images} training images: no "
                f"training step would run. Use --batch-size {training_images} or less.")

    def kept_epochs(self) -> str:
        """Which epoch each trained phase kept, and where early stopping ended it (``training.json``), in words;
        "" before training."""
        path = self.dir / "training.json"
        if not path.is_file():
            return ""
        parts = []
        for phase in json.loads(path.read_text()):
            if phase.get("skipped") or phase.get("best_epoch") is None:
                parts.append(f"{phase['phase']} skipped" if phase.get("skipped") else "")
                continue
            planned = phase.get("epochs_planned")
            stopped = (f", stopped early after {phase['epochs_run']} of {planned}" if phase.get("stopped_early")
                       else "")
            parts.append(f"{phase['phase']} kept epoch {phase['best_epoch'] + 1} ({phase['monitor']}{stopped})")
        return "; ".join(part for part in parts if part)

    def step_train(self) -> None:
        from ..xaaenet.training import train_xaaenet

        model = self.model()
        if "train" not in self.done:  # a redone train step rebuilds the trained model from its checkpoints
            self._record_model(model)
        learn = train_xaaenet(model, self.dataloaders(), settings=self.train_settings())
        write_json(self.dir / "training.json", learn.xaaenet_history)
        _, valid_inputs, targets, predicted = self.validation_predictions()
        verdict = better_than_chance(targets.numpy(), predicted.numpy())
        s = self.settings
        # What --pretrained came to: "auto" reads the same in settings.json whether or not the weights were had.
        verdict["encoder_weights"] = self.encoder_weights()
        verdict["xaaenet_seconds"] = round(sum(phase["seconds"] for phase in learn.xaaenet_history), 2)
        # The cost of explainability: the plainest model of the same split, in seconds.
        train_inputs, train_targets = self.inputs([Path(p) for p in self.dataloaders().train.items], with_labels=True)
        verdict["pixel_logistic_regression"] = pixel_logistic_regression(train_inputs, train_targets, valid_inputs,
                                                                         targets, seed=s.seed)
        if s.baseline:
            verdict["encoder_cross_entropy"] = self._encoder_baseline()
        write_json(self.dir / "validation.json", verdict)  # train_xaaenet has warned when it is at chance

    def _encoder_baseline(self) -> dict:
        """``--baseline``: the same encoder trained with cross-entropy alone, from the start xAAEnet's encoder had
        (ImageNet weights or random ones, as recorded; ``--pretrained`` itself when that is unknown), for as many
        epochs as xAAEnet's encoder trained in its three phases, with the same early stopping: the plain
        classifier is not handicapped by a smaller budget (docs/tmw.md)."""
        from ..xaaenet.encoders import PretrainedWeightsUnavailable

        s = self.settings
        imagenet = self.encoder_weights()["imagenet"]
        pretrained = imagenet if isinstance(imagenet, bool) else s.pretrained
        try:
            return encoder_cross_entropy(
                self.dataloaders(), encoder=s.encoder, pretrained=pretrained, input_channels=1 if self.grey else 3,
                epochs=s.epochs_adv + s.epochs_ae + s.epochs_classif, lr_max=s.lr_max, patience=s.patience,
                seed=s.seed)
        except PretrainedWeightsUnavailable as error:
            raise PretrainedWeightsUnavailable(
                f"--baseline starts its encoder from ImageNet weights, as xAAEnet's encoder started, and they cannot "
                f"be had here now. {error}") from error

    def _baseline_missing(self) -> bool:
        """``--baseline`` was given to a run whose train step finished without it."""
        verdict = self.chance_verdict()
        return (self.settings.baseline and "train" in self.done and verdict is not None
                and verdict.get("encoder_cross_entropy") is None)

    def add_baseline(self) -> None:
        """Train the ``--baseline`` encoder for a trained run and add it to ``validation.json``; nothing else of
        the run changes (its generators are put back)."""
        with self.writing():
            logger.info("train: adding the --baseline encoder to the finished training...")
            verdict = self.chance_verdict()
            verdict["encoder_cross_entropy"] = self._encoder_baseline()
            write_json(self.dir / "validation.json", verdict)

    def chance_verdict(self) -> dict | None:
        """Whether the trained classifier beats always answering the majority class (``validation.json``)."""
        path = self.dir / "validation.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def own_cues(self) -> list[PixelCue]:
        """The run's own pixel cues (``--cues``), loaded from their modules (never added to the cue registry)."""
        from ..cues.table import load_feature_scores

        return load_feature_scores(self.settings.cues) if self.settings.cues is not None else []

    def step_features(self) -> None:
        from ..cues.table import available_feature_scores, compute_feature_score_table

        own = self.own_cues()
        names = [*(name for group in available_feature_scores().values() for name in group), *own] if own else None
        table = compute_feature_score_table(pd.read_csv(self.dir / "data.csv")["path"].tolist(), score_names=names,
                                            on_error="nan")
        write_parquet(table, self.dir / "features.parquet")

    def step_interpret(self) -> None:
        from ..cues.alignment import run_pls_feature_figures
        from ..cues.definitions import BUILTIN_CUES
        from ..cues.table import describe_feature_scores
        from ..cues.where import pixel_axis_map

        latents = pd.read_parquet(self.dir / "latents.parquet")
        train, valid = latents[latents["split"] == "train"], latents[latents["split"] == "valid"]
        features = pd.read_parquet(self.dir / "features.parquet")
        notes = []
        colour = [c.name for c in BUILTIN_CUES if c.category == "color" and c.name in features.columns]
        # The data step's verdict on whether every image is grey; a run whose data.json predates it reads it from
        # the colour cues, which are NaN on grey images. And when the model sees grey levels only, no colour cue
        # can be why it decides.
        grey_images = self.data_grey
        if grey_images is None:
            grey_images = bool(colour) and bool(features[colour].isna().all().all())
        if colour and (grey_images or self.grey):
            features = features.drop(columns=colour)
            notes.append("colour cues left out: " + ("the images are grey" if grey_images
                                                      else "the model sees grey images (--grey)"))
            logger.info("interpret: %s", notes[-1])
        class_a = self.class_a
        verdict = self.chance_verdict()
        # An axis of a classifier that has not learnt the task says nothing about the task: never call it reliable.
        chance_level = verdict is not None and not verdict["better_than_chance"]
        result = run_pls_feature_figures(
            valid, (valid["label"] == class_a).to_numpy(float), features, target_label=class_a,
            positive_label=class_a, negative_label=self.class_b, z_train=train,
            target_train=(train["label"] == class_a).to_numpy(float), save_dir=self.dir / "interpretation",
            show=False, random_state=self.settings.seed, axis_alpha=0.0 if chance_level else 0.01,
            max_bars=RANKING_BARS,
        )
        if chance_level:
            result["axis"]["not_reliable_because"] = chance_warning(verdict)
        result["axis"]["notes"] = notes
        # Where in the image the axis lives: the validation images' pixels against their held-out axis scores.
        try:
            pixel_map = pixel_axis_map(self.inputs([Path(p) for p in valid["path"]]).numpy(), result["scores"],
                                       seed=self.settings.seed)
        except ValueError as error:  # too few images, or an axis that scores every image the same
            logger.warning("interpret: no pixel map of the axis: %s", error)
            result["axis"]["pixel_map"] = {"skipped": str(error)}
        else:
            pixel_map.plot(class_a, self.class_b, save_path=self.dir / "interpretation" / "axis_pixel_map.png")
            result["axis"]["pixel_map"] = {"threshold": pixel_map.threshold, "alpha": pixel_map.alpha,
                                           "significant_pixels": int(pixel_map.significant.sum()),
                                           "pixels": int(pixel_map.correlation.size)}
        stats = result["stats"]
        # What the report calls each cue, and its category (the run's own cues are "custom").
        described = describe_feature_scores(stats.index, self.own_cues())
        stats.insert(0, "label", described["label"])
        stats.insert(1, "category", described["category"])
        stats.to_csv(self.dir / "interpretation" / "stats.csv")
        write_json(self.dir / "interpretation" / "axis.json", result["axis"])

    def inputs(self, paths: list[Path], with_labels: bool = False):
        """Images at ``paths`` through the run's own preprocessing (and their labels when ``with_labels``)."""
        inputs, targets = [], []
        for batch in self.dataloaders().test_dl(paths, with_labels=with_labels):
            inputs.append(batch[0].as_subclass(torch.Tensor).cpu())
            if with_labels:
                targets.append(batch[1].as_subclass(torch.Tensor).cpu())
        return (torch.cat(inputs), torch.cat(targets)) if with_labels else torch.cat(inputs)

    def _validation_batch(self):
        paths = [Path(p) for p in self.dataloaders().valid.items]
        return (paths, *self.inputs(paths, with_labels=True))

    def validation_predictions(self) -> tuple[list[Path], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validation paths, inputs, true and predicted class indices (in the dataloader's order)."""
        classifier = self.model().eval()
        paths, inputs, targets = self._validation_batch()
        with torch.no_grad():
            predicted = torch.cat([classifier(inputs[i : i + 32]).argmax(1) for i in range(0, len(inputs), 32)])
        return paths, inputs, targets, predicted

    def step_explain(self) -> None:
        from ..attribution import GradCAM, IntegratedGradients, default_cam_layer
        from ..causal import CausalExplainer, ResultsStore
        from ..metrics import against_chance, deletion_insertion, model_randomisation, random_ordering_gaps
        from .latent import explain_latents
        from .report_figures import save_gallery

        classifier = self.model().eval()  # its forward runs the encoder and the classifier only
        paths, inputs, targets, predicted = self.validation_predictions()
        wrong = torch.nonzero(predicted != targets).flatten().tolist()
        right = torch.nonzero(predicted == targets).flatten().tolist()
        n = self.settings.explain_images
        # Misclassified images first (up to half), then correct ones taking the classes in turn.
        by_class = [[i for i in right if int(targets[i]) == c] for c in range(int(targets.max()) + 1)]
        alternating = [i for group in itertools.zip_longest(*by_class) for i in group if i is not None]
        chosen = (wrong[: n // 2] + alternating)[:n]
        images, labels, guesses = inputs[chosen], targets[chosen], predicted[chosen]
        out = self.dir / "explanations"
        out.mkdir(exist_ok=True)
        notes: dict[str, str] = {}
        with warnings.catch_warnings(record=True) as caught:  # why Grad-CAM's layer is coarse, if it is
            warnings.simplefilter("always")
            layer = default_cam_layer(classifier, images)
        coarse = [str(w.message) for w in caught if "Grad-CAM uses" in str(w.message)]
        if coarse:
            notes["Grad-CAM"] = coarse[0]
        maps = {
            "Grad-CAM": GradCAM(classifier, layer=layer).attribute(images, target=guesses, upsampled=True),
            "Integrated Gradients": IntegratedGradients(classifier).attribute(
                images, target=guesses, n_steps=self.settings.ig_steps).abs(),
        }
        explainer = CausalExplainer(classifier, iterations=self.settings.causal_iterations, seed=self.settings.seed)
        # The neutral mask and the contrast references, from the validation images.
        explainer.calibrate(inputs, names=[Path(p).name for p in paths])
        store = ResultsStore(out / "explanations.sqlite")
        vocab = list(self.dataloaders().vocab)
        causal_results = []
        for index, image in tqdm(list(zip(chosen, images)), desc="Causal explanations", unit="img"):
            result = explainer.explain(image, paths=[str(paths[index])])
            result.path = str(paths[index])
            store.add(result)
            causal_results.append(result)
        maps["Causal responsibility"] = torch.stack([torch.from_numpy(r.responsibility).float()[None]
                                                     for r in causal_results])
        contrastive = sum("contrast_class" in result.stats for result in causal_results)
        empty = sum(result.explanation is None for result in causal_results)
        notes["Causal responsibility"] = (
            f"Hidden pixels take {explainer.neutral_mask or explainer.settings.mask_value}, the mask this model "
            f"finds closest to undecided; {contrastive} of {len(causal_results)} maps are explained against a "
            f"reference of the other class (with every pixel hidden the model already gave the image's class), "
            f"{empty} stay empty" + (" (the reason is under each)" if empty else ""))
        captions = [f"{Path(paths[i]).name}\ntrue {vocab[int(t)]}, predicted {vocab[int(p)]}"
                    + _causal_caption(result, vocab)
                    for i, t, p, result in zip(chosen, labels, guesses, causal_results)]
        save_gallery(images, maps, captions, out / "gallery.png")
        trust = {"validation_accuracy": float((predicted == targets).float().mean()),
                 "images": [str(paths[i]) for i in chosen], "deletion_auc": {}, "insertion_auc": {},
                 "p_vs_random": {}, "notes": notes}
        # Chance level: the same curves for random orderings of the pixels (19: beating all of them is p = 0.05).
        random_gaps = random_ordering_gaps(classifier, images, target=guesses, steps=CURVE_STEPS,
                                           seed=self.settings.seed)
        trust["random_gaps"] = random_gaps.tolist()
        for name, method_maps in maps.items():
            curves = deletion_insertion(classifier, images, method_maps, target=guesses, steps=CURVE_STEPS)
            trust["deletion_auc"][name] = float(curves.deletion_auc.mean())
            trust["insertion_auc"][name] = float(curves.insertion_auc.mean())
            trust["p_vs_random"][name] = against_chance(curves, random_gaps).p_value
        # The layer found above: randomisation changes weights in place, not modules.
        steps = model_randomisation(
            classifier, lambda m, x, t: GradCAM(m, layer=layer).attribute(x, target=t), images[:4], cascading=True)
        trust["randomisation"] = [{"layer": s.layer, "spearman": s.spearman, "ssim": s.ssim} for s in steps]
        write_json(self.dir / "metrics.json", trust)
        explain_latents(self)  # what only the xAAEnet's decoder can show: the decision axis as images

    def step_report(self) -> None:
        from .report import write_report

        write_report(self)
