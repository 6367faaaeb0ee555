"""Three-phase training: each fix of the original's defects has a test that fails on the original behaviour."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import colours, near, read_png
from fastai.callback.core import Callback

from tell_me_why._utils.files import CheckpointError, load_weights
from tell_me_why.callbacks import CorruptionCallback
from tell_me_why.training import STATE_FILE, train_xaaenet
from tell_me_why.xaaenet.figures import save_latent_pls_figure, save_latent_tsne_figure

PHASES = ("adversarial", "autoencoder", "classifier")
LR_MAX = 3e-3


class Probe(Callback):
    """Records, for each fit (phase): groups changed, optimizer steps, learning rates, corruption seen."""

    order = 100

    def __init__(self):
        self.fits: list[dict] = []

    def before_fit(self):
        groups = self.learn.model.parameter_groups()
        self.current = {
            "before": {g: [p.detach().clone() for p in ps] for g, ps in groups.items()},
            "buffers": {n: b.clone() for n, b in self.learn.model.encoder.named_buffers()},
            "steps": 0, "lrs": set(), "train_corrupted": [], "valid_clean": [],
        }
        self.fits.append(self.current)

    def before_batch(self):
        corruption = next((cb for cb in self.learn.cbs if isinstance(cb, CorruptionCallback)), None)
        if corruption is None:
            return
        if self.training:
            self.current["train_corrupted"].append(not torch.equal(self.learn.xb[0], corruption.clean))
        else:
            self.current["valid_clean"].append(torch.equal(self.learn.xb[0], corruption.clean))

    def after_batch(self):
        if self.training:
            self.current["lrs"].update(round(h["lr"], 12) for h in self.learn.opt.hypers)

    def after_step(self):
        self.current["steps"] += 1

    def after_fit(self):
        groups = self.learn.model.parameter_groups()
        self.current["changed"] = {
            g: any(not torch.equal(a, p.detach()) for a, p in zip(self.current["before"][g], ps))
            for g, ps in groups.items()
        }
        self.current["buffers_changed"] = any(
            not torch.equal(self.current["buffers"][n], b) for n, b in self.learn.model.encoder.named_buffers()
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, planted_root):
    from tell_me_why.app.data import folder_dataloaders
    from tell_me_why.model_aae import AAE

    torch.manual_seed(0)
    dls = folder_dataloaders(planted_root, size=64, bs=16, seed=3)
    model = AAE(input_size=64, encoding_dims=16, encoder="resnet18", pretrained=False)
    probe = Probe()
    models_dir = tmp_path_factory.mktemp("run")
    learn = train_xaaenet(
        model, dls, epochs_adv=1, epochs_ae=1, epochs_classif=4, lr_max=LR_MAX, grad_accum=1, classif_class_weight=0.1,
        models_dir=models_dir, seed=0, cbs=[probe],
    )
    return dict(learn=learn, probe=probe, dls=dls, model=model, models_dir=models_dir)


def test_phases_two_and_three_train_every_group_and_not_the_critic(trained):
    adversarial, autoencoder, classifier = trained["probe"].fits
    assert adversarial["changed"]["critic"]  # the warm-up epoch trains the critic
    assert {g for g, c in autoencoder["changed"].items() if c} == {"encoder", "latent", "decoder"}
    assert {g for g, c in classifier["changed"].items() if c} == {"encoder", "latent", "decoder", "classifier"}


def test_short_training_learns_the_planted_cue(trained):
    history = trained["learn"].xaaenet_history[-1]
    accuracy = np.array(history["values"])[:, history["metric_names"].index("accuracy")]
    assert accuracy.max() >= 0.9


def test_lr_max_is_used_in_every_phase(trained):
    for fit in trained["probe"].fits:
        assert max(fit["lrs"]) == pytest.approx(LR_MAX, rel=1e-6)
    # Constant-rate phases give the encoder lr_max / lr_max_factor.
    for fit in (trained["probe"].fits[0], trained["probe"].fits[2]):
        assert min(fit["lrs"]) == pytest.approx(LR_MAX / 3, rel=1e-6)


def test_corruption_only_touches_training_batches(trained):
    autoencoder = trained["probe"].fits[1]
    assert autoencoder["train_corrupted"] and all(autoencoder["train_corrupted"])
    assert autoencoder["valid_clean"] and all(autoencoder["valid_clean"])


def test_phase_three_keeps_the_epoch_with_the_best_validation_cross_entropy(trained):
    history = trained["learn"].xaaenet_history[-1]
    values = np.array(history["values"])
    ce = values[:, history["metric_names"].index("classif_loss")]
    assert history["monitor"] == "classif_loss"
    assert history["best_epoch"] == int(np.argmin(ce))
    # The reloaded weights are those of that epoch: the validation cross-entropy is reproduced.
    learn = trained["learn"]
    learn.model.eval()
    with torch.no_grad():
        batches = [(learn.model(xb), yb.as_subclass(torch.Tensor)) for xb, yb in learn.dls.valid]
    logits, targets = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    reproduced = torch.nn.functional.cross_entropy(logits, targets).item()
    assert reproduced == pytest.approx(ce.min(), rel=1e-3)


def test_checkpoints_figures_state_and_latent_table(trained):
    from tell_me_why._utils.plotting import CLASS_A_COLOR, CLASS_B_COLOR

    models_dir, dls, model = trained["models_dir"], trained["dls"], trained["model"]
    for name in ("xaaenet_adv", "xaaenet_ae", "xaaenet_classif"):
        assert (models_dir / f"{name}.safetensors").is_file()
    for figure in ("tsne_xaaenet_adv.png", "tsne_xaaenet_ae.png", "pls_xaaenet_classif.png"):
        assert (models_dir / figure).stat().st_size > 10_000
        pixels = read_png(models_dir / figure, inches=(7, 6), smallest=0.75)
        assert colours(pixels) > 150, figure  # measured 307-345
        # Both classes' points (alpha 0.75 over white): measured ~890 px each in the t-SNE figures, 895 and
        # 299 in the PLS one (the 8 'absent' points overlap there); a legend marker alone is 205 px.
        class_a, class_b = near(pixels, CLASS_A_COLOR, 0.75), near(pixels, CLASS_B_COLOR, 0.75)
        assert class_a.sum() > 250 and class_b.sum() > 250, (figure, class_a.sum(), class_b.sum())
    # PLS 1 is oriented toward class A ('present'): its points lie to the right of the others.
    assert np.median(np.nonzero(class_a)[1]) > np.median(np.nonzero(class_b)[1])
    assert not list(models_dir.glob(".*.tmp"))
    state = json.loads((models_dir / STATE_FILE).read_text())
    assert list(state["phases"]) == list(PHASES)

    table = pd.read_parquet(trained["learn"].latent_path)
    assert list(table.columns[:4]) == ["path", "split", "label", "target"]
    assert table.shape == (len(dls.train_ds) + len(dls.valid_ds), 4 + 16)
    valid = table[table.split == "valid"]
    assert list(valid.path) == [str(p) for p in dls.valid.items]
    assert list(valid.label) == [p.parent.name for p in dls.valid.items]
    train = table[table.split == "train"]
    assert sorted(train.path) == sorted(str(p) for p in dls.train_ds.items)
    model.eval()
    with torch.no_grad():
        xb, _ = dls.valid.one_batch()
        z = model.encode(xb).numpy()
    assert np.allclose(valid[[f"z_{i}" for i in range(16)]].to_numpy()[: len(z)], z, atol=1e-5)


def test_frozen_encoder_stays_frozen_through_every_phase(planted_dls, small_model, tmp_path):
    model = small_model(freeze_encoder=True)
    probe = Probe()
    train_xaaenet(model, planted_dls, epochs_adv=2, epochs_ae=1, epochs_classif=1, lr_max=1e-3, grad_accum=1,
                  models_dir=tmp_path, save_tsne=False, save_pls=False, extract_latent=False, cbs=[probe])
    assert len(probe.fits) == 3
    for fit in probe.fits:
        assert not fit["changed"]["encoder"] and not fit["buffers_changed"]
    assert probe.fits[2]["changed"]["classifier"]


def test_grad_accum_steps_once_every_k_batches(planted_dls, small_model, tmp_path):
    probe = Probe()
    learn = train_xaaenet(
        small_model(), planted_dls, epochs_adv=1, epochs_ae=1, epochs_classif=2, grad_accum=2, lr_max=1e-3,
        models_dir=tmp_path, save_tsne=False, save_pls=False, extract_latent=False, cbs=[probe],
        classif_monitor="accuracy",
    )
    batches = len(planted_dls.train)
    assert batches == 4
    assert [fit["steps"] for fit in probe.fits] == [2, 2, 4]
    history = learn.xaaenet_history[-1]
    accuracy = np.array(history["values"])[:, history["metric_names"].index("accuracy")]
    assert history["best_epoch"] == int(np.argmax(accuracy))


@pytest.mark.parametrize("critic_in_later_phases", [False, True])
def test_critic_learns_in_phases_two_and_three_only_when_asked(planted_dls, small_model, tmp_path,
                                                                 critic_in_later_phases):
    probe = Probe()
    model = small_model()
    train_xaaenet(model, planted_dls, epochs_adv=1, epochs_ae=1, epochs_classif=1, lr_max=1e-3, grad_accum=1,
                  models_dir=tmp_path, save_tsne=False, save_pls=False, extract_latent=False, seed=0, cbs=[probe],
                  critic_in_later_phases=critic_in_later_phases)
    adversarial, autoencoder, classifier = probe.fits
    assert adversarial["changed"]["critic"]  # phase 1 trains the critic either way
    assert autoencoder["changed"]["critic"] is classifier["changed"]["critic"] is critic_in_later_phases
    left_by_phase_one = autoencoder["before"]["critic"]
    final = [p.detach() for p in model.critic.parameters()]
    assert len(final) == len(left_by_phase_one) > 0
    same = all(torch.equal(a, b) for a, b in zip(left_by_phase_one, final))
    assert same is not critic_in_later_phases
    # The other groups train as they do without the critic steps.
    assert {g for g, c in classifier["changed"].items() if c} == (
        {"encoder", "latent", "decoder", "classifier"} | ({"critic"} if critic_in_later_phases else set()))


class Interrupt(Exception):
    pass


class InterruptThirdPhase(Callback):
    def __init__(self):
        self.fits = 0

    def before_fit(self):
        self.fits += 1
        if self.fits == 3:
            raise Interrupt("stopped during phase 3")


def test_resume_skips_finished_phases(planted_dls, small_model, tmp_path):
    options = dict(epochs_adv=1, epochs_ae=1, epochs_classif=1, lr_max=1e-3, grad_accum=1, models_dir=tmp_path,
                   save_tsne=False, save_pls=False, extract_latent=False)
    with pytest.raises(Interrupt):
        train_xaaenet(small_model(), planted_dls, cbs=[InterruptThirdPhase()], **options)
    assert list(json.loads((tmp_path / STATE_FILE).read_text())["phases"]) == ["adversarial", "autoencoder"]
    after_phase_two = small_model(seed=5)
    load_weights(after_phase_two, tmp_path / "xaaenet_ae.safetensors")

    probe = Probe()
    fresh = small_model(seed=7)
    learn = train_xaaenet(fresh, planted_dls, resume=True, cbs=[probe], **options)
    assert len(probe.fits) == 1  # only the classifier phase ran
    for before, expected in zip(probe.fits[0]["before"]["encoder"], after_phase_two.parameter_groups()["encoder"]):
        assert torch.equal(before, expected.detach())
    assert [h.get("resumed", False) for h in learn.xaaenet_history] == [True, True, False]


def test_strict_loading_rejects_a_checkpoint_of_another_model(trained, small_model):
    other = small_model(encoding_dims=8)
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(other, trained["models_dir"] / "xaaenet_classif.safetensors")


def test_bad_inputs_fail_before_any_work(planted_root, planted_dls, small_model, tmp_path):
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        Normalize,
        RandomSplitter,
        Resize,
        get_image_files,
        imagenet_stats,
        parent_label,
    )

    with pytest.raises(ValueError, match="classif_monitor"):
        train_xaaenet(small_model(), planted_dls, classif_monitor="f1", models_dir=tmp_path)
    with pytest.raises(ValueError, match="pls_target_class"):
        train_xaaenet(small_model(), planted_dls, pls_target_class="dog", models_dir=tmp_path)
    normalized = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=0), item_tfms=Resize(64), batch_tfms=Normalize.from_stats(*imagenet_stats),
    ).dataloaders(planted_root, bs=8, num_workers=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_xaaenet(small_model(), normalized, models_dir=tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))


def test_latent_figures_handle_tiny_validation_sets(tmp_path, caplog):
    rng = np.random.default_rng(0)
    with caplog.at_level("INFO", logger="tell_me_why"):
        assert save_latent_tsne_figure(rng.normal(size=(3, 8)), tmp_path / "t3.png", phase="adversarial") is None
    assert "skipped" in caplog.text
    path = save_latent_tsne_figure(rng.normal(size=(6, 8)), tmp_path / "t6.png", phase="adversarial",
                                   targets=np.array([0, 1] * 3), class_names=["a", "b"])
    assert path.is_file()
    z = rng.normal(size=(12, 8))
    z[:6, 0] += 3
    path = save_latent_pls_figure(z, np.array([1] * 6 + [0] * 6), tmp_path / "pls.png", class_names=["a", "b"],
                                  target_class="b")
    assert path.is_file()
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_a_classifier_at_chance_is_a_logged_warning_and_a_learnt_one_is_not(trained, small_model, tmp_path, caplog):
    from conftest import image_folder

    from tell_me_why.app.data import folder_dataloaders

    # Labels that say nothing about the images: the dark and light noise images shuffled between two classes.
    data = image_folder(tmp_path / "data", per_class=12)
    classes = np.random.default_rng(0).permutation(24) < 12
    for path, in_a in zip(sorted(data.glob("*/*.png")), classes, strict=True):
        target = data / ("a" if in_a else "b")
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)
    for emptied in ("dark", "light"):
        (data / emptied).rmdir()
    dls = folder_dataloaders(data, size=32, bs=8, valid_pct=0.5, seed=0)
    with caplog.at_level("WARNING", logger="tell_me_why"):
        learn = train_xaaenet(small_model(input_size=32), dls, epochs_adv=1, epochs_ae=1, epochs_classif=1,
                              grad_accum=1, models_dir=tmp_path / "models", seed=0, save_tsne=False, save_pls=False,
                              extract_latent=False)
    verdict = learn.xaaenet_history[-1]["validation"]
    assert not verdict["better_than_chance"] and verdict["images"] == 12
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "NOT better than chance" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].name == "tell_me_why.xaaenet.training"
    # The planted cue, learnt: its verdict says so.
    assert trained["learn"].xaaenet_history[-1]["validation"]["better_than_chance"]


def _tiny_dls(planted_root):
    """Fresh 32 px dataloaders over the planted images (each run draws its shuffling from its own loaders)."""
    from tell_me_why.app.data import folder_dataloaders

    return folder_dataloaders(planted_root, size=32, bs=16, seed=3)


TINY_TRAINING = dict(lr_max=1e-3, grad_accum=1, save_tsne=False, save_pls=False, extract_latent=False, seed=0)


def test_a_phase_of_zero_epochs_is_skipped_and_passes_its_weights_on(planted_root, small_model, tmp_path, caplog):
    model = small_model(input_size=32, encoding_dims=8)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    with caplog.at_level("INFO", logger="tell_me_why"):
        learn = train_xaaenet(model, _tiny_dls(planted_root), epochs_adv=0, epochs_ae=0, epochs_classif=1,
                              models_dir=tmp_path, **TINY_TRAINING)
    adversarial, autoencoder, classifier = learn.xaaenet_history
    for skipped in (adversarial, autoencoder):
        assert skipped["skipped"] and skipped["epochs_run"] == 0 and skipped["values"] == []
        assert skipped["best_epoch"] is None and not skipped["stopped_early"]
    assert not classifier["skipped"] and classifier["epochs_run"] == 1
    # The skipped phases hand the initial weights on unchanged; the classifier phase then trains them.
    for fname in ("xaaenet_adv", "xaaenet_ae"):
        probe = small_model(input_size=32, encoding_dims=8, seed=9)
        load_weights(probe, tmp_path / f"{fname}.safetensors")
        assert all(torch.equal(initial[k], v) for k, v in probe.state_dict().items()), fname
    assert not torch.equal(initial["linear.weight"], model.state_dict()["linear.weight"])
    assert "Phase 1/3 adversarial: skipped (0 epochs)" in caplog.text
    # A resumed run finds the skipped phases finished.
    again = train_xaaenet(small_model(input_size=32, encoding_dims=8), _tiny_dls(planted_root), epochs_adv=0,
                          epochs_ae=0, epochs_classif=1, models_dir=tmp_path, resume=True, **TINY_TRAINING)
    assert [phase.get("resumed", False) for phase in again.xaaenet_history] == [True, True, True]


# Validation cross-entropy of each classifier epoch, imposed on the recorder (before the best-epoch and early-stopping
# callbacks read it): the best is epoch 1, then two epochs without a better one stop the phase at patience 2.
SCRIPTED_CE = [0.5, 0.3, 0.4, 0.35, 0.1, 0.05]


class ScriptedClassifierLoss(Callback):
    order = 55  # after the Recorder (50) has logged the epoch, before the trackers (60)

    def after_epoch(self):
        names = self.recorder.metric_names[1:-1]
        if "classif_loss" in names:
            self.recorder.values[-1][names.index("classif_loss")] = SCRIPTED_CE[self.epoch]


class InterruptClassifierAfterEpoch(Callback):
    order = 101  # after the epoch's resume checkpoint (EpochCheckpoint, 100) is written

    def __init__(self, epoch: int):
        self.epoch_to_stop = epoch

    def after_epoch(self):
        if "classif_loss" in self.recorder.metric_names and self.epoch == self.epoch_to_stop:
            raise Interrupt(f"stopped after classifier epoch {self.epoch}")


def test_early_stopping_keeps_the_best_epoch_and_resumes_identically(planted_root, small_model, tmp_path, caplog):
    from safetensors import safe_open
    from safetensors.torch import load_file

    options = dict(epochs_adv=1, epochs_ae=1, epochs_classif=len(SCRIPTED_CE), patience=2, **TINY_TRAINING)
    with caplog.at_level("INFO", logger="tell_me_why"):
        reference = train_xaaenet(small_model(input_size=32, encoding_dims=8), _tiny_dls(planted_root),
                                  models_dir=tmp_path / "reference", cbs=[ScriptedClassifierLoss()], **options)
    classifier = reference.xaaenet_history[-1]
    assert classifier["stopped_early"] and classifier["epochs_run"] == 4 and classifier["epochs_planned"] == 6
    assert classifier["best_epoch"] == 1 and classifier["best_value"] == pytest.approx(0.3)
    assert "stopped early (no better classif_loss in 2 epoch(s)); kept epoch 2 of 4" in caplog.text
    checkpoint = tmp_path / "reference" / "xaaenet_classif.safetensors"
    with safe_open(str(checkpoint), framework="pt") as handle:
        assert handle.metadata()["epoch"] == "1"  # the kept weights are those of the best epoch, not the last
    assert all(torch.equal(value, reference.model.state_dict()[name]) for name, value in load_file(checkpoint).items())

    # Stopped after classifier epoch 2 (one epoch into the plateau) and resumed: the same stop, the same weights.
    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        train_xaaenet(small_model(input_size=32, encoding_dims=8), _tiny_dls(planted_root), models_dir=resumed_dir,
                      cbs=[ScriptedClassifierLoss(), InterruptClassifierAfterEpoch(2)], **options)
    caplog.clear()
    with caplog.at_level("INFO", logger="tell_me_why"):
        resumed = train_xaaenet(small_model(input_size=32, encoding_dims=8, seed=4), _tiny_dls(planted_root),
                                models_dir=resumed_dir, resume=True, cbs=[ScriptedClassifierLoss()], **options)
    assert "classifier: continuing after epoch 2 of an interrupted run" in caplog.text  # not a rerun of the phase
    kept = ("values", "best_epoch", "best_value", "epochs_run", "stopped_early")
    assert ({k: resumed.xaaenet_history[-1][k] for k in kept} == {k: classifier[k] for k in kept})
    theirs = load_file(resumed_dir / "xaaenet_classif.safetensors")
    assert all(torch.equal(value, theirs[name]) for name, value in load_file(checkpoint).items())
