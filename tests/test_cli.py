"""``tmw``: a folder-per-class run and a CSV run end to end, resume, and clear errors for bad data."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, image_folder
from PIL import Image

from tell_me_why.app.cli import main
from tell_me_why.app.report import SECTIONS


@pytest.mark.slow
def test_run_end_to_end_then_resume(finished_run, capsys):
    data, out = finished_run
    report = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in report
    assert report.count('src="data:image/png;base64,') >= 9
    assert not re.search(r'src="(?!data:)', report)  # self-contained: no external resources
    assert json.loads((out / "run_state.json").read_text())["done"][-1] == "report"
    for name in ("settings.json", "latents.parquet", "features.parquet", "metrics.json",
                 "models/xaaenet_classif.safetensors", "explanations/explanations.sqlite",
                 "report_figures/randomisation.png"):
        assert (out / name).is_file(), name
    layers = [step["layer"] for step in json.loads((out / "metrics.json").read_text())["randomisation"]]
    assert layers[0] == "linear" and layers[-1].startswith("encoder.")  # the prediction's path only
    assert not [name for name in layers if "decoder" in name or "critic" in name]
    capsys.readouterr()
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("already done, skipped") == 6
    assert "validation accuracy:" in printed and f"report: {(out / 'report.html').resolve()}" in printed
    assert main(["report", "--out", str(out)]) == 0  # a step alone, with the run's saved settings
    assert main(["run", str(data), "--out", str(out), *TINY, "--encoding-dims", "16"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_run_model_explains_new_images_as_it_saw_them(finished_run):
    from tell_me_why.app.pipeline import Run

    _, out = finished_run
    run = Run.open(out)
    paths, _, _, predicted = run.validation_predictions()
    folder = out / "new_images"
    folder.mkdir()
    for path in paths:  # the run's validation images, copied under new names
        (folder / f"copy_{path.name}").write_bytes(path.read_bytes())
    assert main(["explain", "--out", str(out), "--images", str(folder), "--methods", "saliency,gradcam"]) == 0
    saved = out / "explanations" / "images"
    table = pd.read_csv(saved / "predictions.csv")
    vocab = list(run.dataloaders().vocab)
    by_name = dict(zip(table["path"].map(lambda p: p.split("copy_")[-1]), table["predicted"]))
    assert [by_name[p.name] for p in paths] == [vocab[int(i)] for i in predicted]  # the same preprocessing
    maps = np.load(saved / "maps.npz")
    assert maps["saliency"].shape == maps["gradcam"].shape == (len(paths), 32, 32)  # every method at image size
    assert len(list(saved.glob("*.png"))) == len(paths)


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_finished_steps(tmp_path, capsys, monkeypatch):
    from tell_me_why.app.pipeline import Run

    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    finish_explain = Run.step_explain

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "step_explain", interrupted)
    assert main(["run", str(data), "--out", str(out), *TINY]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert json.loads((out / "run_state.json").read_text())["done"] == ["data", "train", "features", "interpret"]
    checkpoint = (out / "models" / "xaaenet_classif.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(Run, "step_explain", finish_explain)
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for step in ("data", "train", "features", "interpret"):
        assert f"[tmw] {step}: already done, skipped" in printed
    assert "[tmw] explain: finished" in printed and "[tmw] report: finished" in printed
    assert (out / "models" / "xaaenet_classif.safetensors").stat().st_mtime_ns == checkpoint
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_csv_labelled_data(tmp_path):
    data = image_folder(tmp_path / "images")
    rows = ["path,label"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "labels.csv"), "--out", str(out), "--class-a", "light", *TINY]) == 0
    assert "Class A (the class the axis points to): <b>light</b>" in (out / "report.html").read_text()


def test_bad_data_gives_clear_errors(tmp_path, capsys):
    one_class = tmp_path / "one"
    for i in range(6):
        (one_class / "only").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one_class / "only" / f"{i}.png")
    assert main(["run", str(one_class), "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "exactly two classes; found 1: 'only' (6)" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text('path,label\n"unterminated,cat\n')
    assert main(["run", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b"), *TINY]) == 2
    assert "Cannot parse" in capsys.readouterr().err
    data = image_folder(tmp_path / "data", per_class=6)
    (data / "dark" / "broken.png").write_bytes(b"not an image")
    assert main(["run", str(data), "--out", str(tmp_path / "c"), "--on-unreadable", "raise", *TINY]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main(["run", str(data), "--out", str(tmp_path / "e"), *TINY, "--valid-pct", "0.1"]) == 2
    error = capsys.readouterr().err
    assert "validation split (10%) holds too few images" in error and "raise --valid-pct" in error
    assert not (tmp_path / "e" / "models").exists()  # found before any training
    # Same directory, corrected: half of 12 images leaves 6 for training, so batches of 4.
    assert main(["run", str(data), "--out", str(tmp_path / "e"), *TINY, "--valid-pct", "0.5", "--batch-size", "4"]) == 0
    (tmp_path / "settings.toml").write_text("epochs = 3\n")
    assert main(["run", str(data), "--out", str(tmp_path / "d"), "--config", str(tmp_path / "settings.toml")]) == 2
    assert "Unknown setting(s) ['epochs']" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["run"], ["train"], ["features"], ["interpret"], ["explain"], ["report"]])
def test_help_shows_examples(capsys, command):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert "examples:\n  tmw " in capsys.readouterr().out


def test_trust_table_reads_the_checks_in_plain_words():
    from tell_me_why.app.report import trust_table

    metrics = {"deletion_auc": {"Grad-CAM": 0.10, "Integrated Gradients": 0.50},
               "insertion_auc": {"Grad-CAM": 0.90, "Integrated Gradients": 0.52},
               "random_gaps": [0.0] * 19, "p_vs_random": {"Grad-CAM": 0.05, "Integrated Gradients": 0.4},
               "randomisation": [{"layer": "head", "spearman": 0.9}, {"layer": "conv", "spearman": 0.1}],
               "notes": {"Grad-CAM": "No layer of this model has a map of at least 7 x 7"}}
    reading = trust_table(metrics)["reading"]
    assert reading["Grad-CAM"].startswith("its top pixels carry the decision: insertion beats deletion by more "
                                          "than for any of 19 random orderings")
    assert "change with the weights (rank correlation 0.10" in reading["Grad-CAM"]
    assert reading["Grad-CAM"].endswith("No layer of this model has a map of at least 7 x 7")
    assert reading["Integrated Gradients"].startswith("no better than a random ordering of the pixels")
    metrics["randomisation"][-1]["spearman"] = 0.8
    assert "barely change with random weights (rank correlation 0.80)" in trust_table(metrics)["reading"]["Grad-CAM"]
    metrics["randomisation"][-1]["spearman"] = float("nan")  # a blank map has no rank correlation
    assert "its maps are blank" in trust_table(metrics)["reading"]["Grad-CAM"]


def test_maps_are_read_against_random_orderings_of_the_pixels(planted_cnn):
    """A map that finds the planted square beats every random ordering; a random map does not; a blank map fails
    the randomisation check instead of passing as "changed"."""
    from tell_me_why.attribution import GradCAM, IntegratedGradients
    from tell_me_why.metrics import against_chance, deletion_insertion, model_randomisation, random_ordering_gaps

    model, test, positives = planted_cnn
    images = test.images[positives[:6]]
    random_gaps = random_ordering_gaps(model, images, target=1, steps=20)
    assert len(random_gaps) == 19 and abs(random_gaps.mean()) < 0.1  # random orderings: no gap on average
    readings = {}
    for name, maps in {"Grad-CAM": GradCAM(model).attribute(images, target=1, upsampled=True),
                       "IG": IntegratedGradients(model).attribute(images, target=1, n_steps=16).abs(),
                       "random": torch.rand(images.shape, generator=torch.Generator().manual_seed(5))}.items():
        curves = deletion_insertion(model, images, maps, target=1, steps=20)
        readings[name] = against_chance(curves, random_gaps)
    assert readings["Grad-CAM"].better_than_chance() and readings["IG"].better_than_chance()
    assert readings["Grad-CAM"].p_value == readings["IG"].p_value == 0.05  # better than all 19
    assert not readings["random"].better_than_chance()  # p = 0.15 for this draw: inside the random spread
    steps = model_randomisation(model, lambda m, x, t: torch.zeros(len(x), *x.shape[-2:]), images[:2])
    assert steps and all(np.isnan(step.spearman) for step in steps)


@pytest.mark.slow
def test_predictions_keep_the_true_class_when_it_is_known(finished_run, tmp_path):
    data, out = finished_run
    saved = tmp_path / "explained"
    assert main(["explain", "--out", str(out), "--images", str(data / "dark"), "--methods", "saliency",
                 "--save", str(saved)]) == 0
    table = pd.read_csv(saved / "predictions.csv")
    assert list(table.columns[:3]) == ["path", "true", "predicted"] and set(table["true"]) == {"dark"}
    unknown = tmp_path / "unlabelled"
    unknown.mkdir()
    for path in list((data / "light").glob("*.png"))[:2]:
        (unknown / path.name).write_bytes(path.read_bytes())
    assert main(["explain", "--out", str(out), "--images", str(unknown), "--methods", "saliency",
                 "--save", str(tmp_path / "other")]) == 0
    assert "true" not in pd.read_csv(tmp_path / "other" / "predictions.csv").columns  # nothing says their class


def test_quick_is_a_preset_that_explicit_settings_override(tmp_path):
    from tell_me_why.app.cli import _settings, build_parser
    from tell_me_why.app.pipeline import QUICK, RunSettings

    def settings(*flags: str):
        return _settings(build_parser().parse_args(["run", str(tmp_path), *flags]))

    quick = settings("--quick")
    assert {name: getattr(quick, name) for name in QUICK} == QUICK
    assert all(QUICK[name] != getattr(RunSettings(), name) for name in QUICK)  # each value changes something
    overridden = settings("--quick", "--epochs-classif", "7", "--size", "48")
    assert overridden.epochs_classif == 7 and overridden.size == 48 and overridden.epochs_ae == QUICK["epochs_ae"]
    config = tmp_path / "tmw.toml"
    config.write_text("epochs_ae = 5\n")
    from_file = settings("--quick", "--config", str(config))
    assert from_file.epochs_ae == 5 and from_file.epochs_adv == QUICK["epochs_adv"]
    assert settings().epochs_classif == RunSettings().epochs_classif  # no preset without --quick


def test_every_quick_value_is_documented():
    from pathlib import Path

    from tell_me_why.app.pipeline import QUICK

    docs = (Path(__file__).parents[1] / "docs" / "tmw.md").read_text()
    section = docs[docs.index("## A first look: `--quick`"):]
    for name, value in QUICK.items():
        assert f"| `{name}` | {value} |" in section, name


@pytest.mark.slow
def test_a_run_on_grey_images_trains_one_channel_and_records_its_baselines(tmp_path, capsys, monkeypatch):
    """Grey data found by the data step (RGB files with R = G = B): one input channel, said in the summary and the
    report; the encoder baseline and what --pretrained auto came to are recorded in validation.json."""
    import urllib.error

    from safetensors.torch import load_file

    from tell_me_why.app.pipeline import Run, RunSettings

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr("tell_me_why.xaaenet.encoders.download_to_cache", no_network)
    rng = np.random.default_rng(0)
    for label, brightness in (("dark", 60), ("light", 190)):
        for i in range(10):
            grey = np.clip(rng.normal(brightness, 20, (32, 32)), 0, 255).astype(np.uint8)
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "data" / label / f"{label}_{i}.png")
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "data"), "--out", str(out), *TINY, "--pretrained", "auto", "--baseline"]) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "data.json").read_text())["grey"] is True
    assert Run.open(out).grey  # a reopened run reads the same verdict
    assert load_file(out / "models" / "xaaenet_classif.safetensors")["encoder.0.weight"].shape[1] == 1
    assert "grey images: trained on one channel" in printed
    report = (out / "report.html").read_text()
    assert "grey images: trained on one channel" in report
    validation = json.loads((out / "validation.json").read_text())
    assert validation["encoder_weights"] == {"encoder": "resnet18", "requested": "auto", "imagenet": False}
    assert "--pretrained auto fell back" in printed and "--pretrained auto fell back" in report
    baseline = validation["encoder_cross_entropy"]
    # Whether it learns is tested in test_baselines.py (3 epochs of 2 batches here need not). Here: validated on the
    # run's own validation images (a whole number of them right), trained for xAAEnet's budget, and the accuracy
    # the summary shows is the one recorded.
    right = baseline["accuracy"] * validation["images"]
    assert abs(right - round(right)) < 1e-9, (baseline, validation["images"])
    assert f"cross-entropy alone, {baseline['seconds']:.0f} s" in printed and f"{baseline['accuracy']:.1%}" in printed
    assert baseline["seconds"] > 0 and baseline["epochs"] == 3  # 1 + 1 + 1
    assert 1 <= baseline["epochs_run"] <= 3 and 0 <= baseline["best_epoch"] < baseline["epochs_run"]
    assert baseline["imagenet_weights"] is False  # the start xAAEnet's encoder had (auto fell back)
    assert "the same encoder with cross-entropy alone" in printed and "cross-entropy alone" in report
    assert "kept epoch" in report and "classifier kept epoch 1" in printed
    # tmw's default patience reaches the training (the early stopping itself is tested in test_training.py).
    state = json.loads((out / "models" / "xaaenet_state.json").read_text())
    assert state["settings"]["patience"] == RunSettings().patience == 3
    # The trained model keeps the channels its training started with, whatever a redone data step says since.
    data_record = json.loads((out / "data.json").read_text())
    (out / "data.json").write_text(json.dumps({**data_record, "grey": False}))
    reopened = Run.open(out)
    assert reopened.grey and reopened.model().encoder[0].in_channels == 1  # the checkpoint still fits


def test_the_notes_say_what_pretrained_and_the_channels_came_to(tmp_path):
    from tell_me_why.app.pipeline import Run, RunSettings, channels_note, pretrained_note

    record = {"encoder": "resnet18", "requested": "auto"}
    assert pretrained_note({**record, "imagenet": True}) == "encoder resnet18: ImageNet weights (--pretrained auto)"
    assert "--pretrained auto fell back" in pretrained_note({**record, "imagenet": False})
    assert pretrained_note({**record, "imagenet": "unknown"}) == "" and pretrained_note(None) == ""
    # A run trained before the record existed: what auto came to is not known, and not guessed.
    (tmp_path / "run_state.json").write_text(json.dumps({"done": ["data", "train"]}))
    assert Run(tmp_path, RunSettings()).encoder_weights()["imagenet"] == "unknown"
    assert Run(tmp_path, RunSettings(pretrained=False)).encoder_weights()["imagenet"] is False
    # --grey on colour images leaves their colour out; on images not checked for colour it says nothing of it.
    grey = "trained on one channel (grey levels, --grey)"
    assert channels_note(True, False, True) == f"{grey}, the images' colour left out"
    assert channels_note(True, None, True) == channels_note(True, True, True) == grey


@pytest.mark.slow
def test_a_run_from_before_patience_resumes_with_the_patience_it_trained_with(tmp_path, capsys, monkeypatch):
    """A settings.json written before --patience existed reads as the 10 its training used (its xaaenet_state.json
    says 10), not as today's default: redoing the train step passes the training's check of its settings, and the
    run's own command resumes it without rewriting the setting."""
    from tell_me_why.app.pipeline import Run

    def interrupted(self):
        raise KeyboardInterrupt

    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    monkeypatch.setattr(Run, "step_features", interrupted)
    # A run trained as before the setting existed (TrainSettings' patience, 10), with a settings.json without it.
    assert main(["run", str(data), "--out", str(out), *TINY, "--patience", "10"]) == 130

    def written_before_patience():
        settings = json.loads((out / "settings.json").read_text())
        del settings["patience"]
        (out / "settings.json").write_text(json.dumps(settings))

    written_before_patience()
    assert json.loads((out / "models" / "xaaenet_state.json").read_text())["settings"]["patience"] == 10
    assert Run.open(out).settings.patience == 10
    capsys.readouterr()
    assert main(["train", "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "settings.json").read_text())["patience"] == 10
    written_before_patience()
    assert main(["run", str(data), "--out", str(out), *TINY]) == 130  # stopped again at the features step
    printed = capsys.readouterr()
    assert "[tmw] train: already done, skipped" in printed.out and "differing" not in printed.err
    assert json.loads((out / "settings.json").read_text())["patience"] == 10


@pytest.mark.slow
def test_what_pretrained_auto_came_to_is_the_first_builds_after_a_resume(tmp_path, capsys, monkeypatch):
    """The record is written when the model is first built for training: a training stopped after its first phase
    and resumed offline continues from checkpoints that descend from ImageNet weights, and says so; the --baseline
    encoder then starts from ImageNet weights too (not from what auto gives now)."""
    import torchvision

    from tell_me_why.app import pipeline
    from tell_me_why.app.pipeline import Run
    from tell_me_why.xaaenet import encoders, training

    def downloaded(name, spec):  # a download that works (the weights' values do not matter here)
        return torchvision.models.resnet18(weights=None).state_dict()

    def offline(name, spec):
        raise encoders.PretrainedWeightsUnavailable("no network")

    run_phase = training._run_phase

    def stopped_before_phase_2(phase, *args):
        if phase.number == 2:
            raise KeyboardInterrupt
        return run_phase(phase, *args)

    def interrupted(self):
        raise KeyboardInterrupt

    baselines = []

    def baseline(dls, **kwargs):
        baselines.append(kwargs)
        return {"accuracy": 1.0, "seconds": 1.0, "epochs": 3, "epochs_run": 3, "best_epoch": 0,
                "imagenet_weights": kwargs["pretrained"]}

    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    flags = [*(flag for flag in TINY if flag != "--no-pretrained"), "--pretrained", "auto", "--baseline"]
    monkeypatch.setattr(encoders, "_load_pretrained_state", downloaded)
    monkeypatch.setattr(training, "_run_phase", stopped_before_phase_2)
    assert main(["run", str(data), "--out", str(out), *flags]) == 130
    assert json.loads((out / "models" / "model.json").read_text())["encoder_weights"]["imagenet"] is True
    monkeypatch.setattr(encoders, "_load_pretrained_state", offline)
    monkeypatch.setattr(training, "_run_phase", run_phase)
    monkeypatch.setattr(pipeline, "encoder_cross_entropy", baseline)
    monkeypatch.setattr(Run, "step_features", interrupted)
    capsys.readouterr()
    assert main(["run", str(data), "--out", str(out), *flags]) == 130
    printed = capsys.readouterr().out
    assert "finished in an earlier run" in printed and "starts from random weights" in printed  # resumed, offline
    validation = json.loads((out / "validation.json").read_text())
    assert validation["encoder_weights"] == {"encoder": "resnet18", "requested": "auto", "imagenet": True}
    assert "encoder resnet18: ImageNet weights (--pretrained auto)" in Run.open(out).summary()
    assert [kwargs["pretrained"] for kwargs in baselines] == [True]


@pytest.mark.slow
def test_the_baseline_can_be_added_to_a_finished_run(finished_run, tmp_path, capsys):
    """--baseline does not define the run: given to a finished run, it trains the baseline only, adds it to
    validation.json and redoes the report; a setting that does define the run (--quick) is still refused."""
    import shutil

    _, original = finished_run
    out = tmp_path / "run"
    shutil.copytree(original, out)
    checkpoint = (out / "models" / "xaaenet_classif.safetensors").read_bytes()
    before = json.loads((out / "validation.json").read_text())
    assert "encoder_cross_entropy" not in before
    capsys.readouterr()
    assert main(["run", "--out", str(out), "--baseline"]) == 0
    printed = capsys.readouterr().out
    for step in ("data", "train", "features", "interpret", "explain"):
        assert f"[tmw] {step}: already done, skipped" in printed
    assert "[tmw] report: finished" in printed
    after = json.loads((out / "validation.json").read_text())
    baseline = after.pop("encoder_cross_entropy")
    assert baseline["epochs"] == 3 and baseline["imagenet_weights"] is False  # as xAAEnet's (--no-pretrained)
    assert after == before  # nothing else of the run changes
    assert (out / "models" / "xaaenet_classif.safetensors").read_bytes() == checkpoint
    assert "cross-entropy alone" in (out / "report.html").read_text()
    assert json.loads((out / "settings.json").read_text())["baseline"] is True
    assert main(["run", "--out", str(out)]) == 0
    assert "[tmw] report: already done, skipped" in capsys.readouterr().out  # added once
    assert main(["run", "--out", str(out), "--quick"]) == 2
    assert "differing" in capsys.readouterr().err
