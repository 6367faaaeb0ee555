"""The catalogue of bad inputs and faults: each gets a clear answer, nothing is silently wrong, nothing is lost.

Every test here failed before its fix (see the issue "Trustworthy runs"); later work keeps them green.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, image_folder
from PIL import Image

from tell_me_why._utils.files import DirectoryLock
from tell_me_why.app.cli import main
from tell_me_why.app.data import DataSourceError, from_csv, from_folder


def _error(capsys) -> str:
    return capsys.readouterr().err


# -- silent wrong results --------------------------------------------------------------------------------------


def test_a_batch_larger_than_the_training_set_is_refused_before_training(tmp_path, capsys):
    data = image_folder(tmp_path / "data")  # 20 images: 15 for training
    assert main(["run", str(data), "--out", str(tmp_path / "run"), *TINY, "--batch-size", "100000"]) == 2
    err = _error(capsys)
    assert "--batch-size 100000 is larger than the 15 training images" in err
    assert not (tmp_path / "run" / "models").exists()


@pytest.mark.parametrize("setting, value, message", [
    ("lr_max", "-1", "lr_max must be > 0"),
    ("epochs_classif", "0", "epochs_classif must be >= 1"),
    ("epochs_adv", "-1", "epochs_adv must be an integer >= 0"),
    ("seed", "-3", "seed must be an integer >= 0"),
    ("size", "8", "size must be at least 32"),
    ("encoder", '"resnet9000"', "Unknown encoder 'resnet9000'"),
    ("size", '"32"', "size = the string '32': expected an integer"),
    ("size", "32.5", "size = 32.5: expected an integer"),
    ("epochs_adv", '"one"', "epochs_adv = the string 'one': expected an integer"),
    ("pretrained", '"yes"', "pretrained = the string 'yes': expected true or false"),
])
def test_settings_are_checked_before_any_step_and_leave_nothing_behind(tmp_path, capsys, setting, value, message):
    config = tmp_path / "tmw.toml"
    config.write_text(f"{setting} = {value}\n")
    out = tmp_path / "run"
    assert main(["run", str(tmp_path), "--out", str(out), "--config", str(config)]) == 2
    err = _error(capsys)
    assert message in err and str(config) in err and "Traceback" not in err
    assert not out.exists()


def test_a_bad_class_a_fails_before_the_images_are_decoded_and_the_corrected_command_runs(tmp_path, capsys,
                                                                                        monkeypatch):
    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    import tell_me_why.app.data as data_module

    decode = data_module.decode_image
    monkeypatch.setattr(data_module, "decode_image", lambda *a, **k: pytest.fail("decoded before checking"))
    assert main(["run", str(data), "--out", str(out), *TINY, "--class-a", "cat"]) == 2
    assert "--class-a 'cat' is not one of the classes ['dark', 'light']" in _error(capsys)
    monkeypatch.setattr(data_module, "decode_image", decode)
    assert main(["run", str(data), "--out", str(out), *TINY, "--class-a", "light"]) == 0


def test_a_model_no_better_than_chance_is_said_first_and_its_axis_is_never_reliable(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for label in ("a", "b"):  # both classes drawn from the same distribution: nothing to learn
        (data / label).mkdir(parents=True)
        for i in range(14):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / label / f"{i}.png")
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    verdict = json.loads((out / "validation.json").read_text())
    assert not verdict["better_than_chance"] and verdict["p_value"] >= 0.05
    assert "WARNING: the classifier is not better than chance" in printed
    axis = json.loads((out / "interpretation" / "axis.json").read_text())
    assert axis["reliable"] is False and "not better than chance" in axis["not_reliable_because"]
    assert not pd.read_csv(out / "interpretation" / "stats.csv")["significant"].any()
    report = (out / "report.html").read_text()
    assert report.index("not better than chance") < report.index('<nav>')  # said first


def test_better_than_chance_is_a_binomial_test_against_the_majority_class():
    from tell_me_why.app.pipeline import better_than_chance

    targets = np.array([0] * 30 + [1] * 10)
    assert not better_than_chance(targets, np.zeros(40, int))["better_than_chance"]  # 75 %: the majority rate
    assert better_than_chance(targets, targets)["better_than_chance"]
    assert better_than_chance(targets, targets)["majority_rate"] == 0.75


def test_a_second_writer_fails_at_once_naming_the_first_and_a_dead_holder_is_taken_over(tmp_path, capsys, caplog):
    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    holder = DirectoryLock(out).acquire()
    try:
        assert main(["run", str(data), "--out", str(out), *TINY]) == 2
        assert f"pid {os.getpid()}" in _error(capsys)
    finally:
        holder.release()
    dead = subprocess.run([sys.executable, "-c", "import os,sys; from tell_me_why._utils.files import DirectoryLock;"
                           "DirectoryLock(sys.argv[1]).acquire(); os._exit(0)", str(out)], check=True)
    assert dead.returncode == 0 and "pid" in (out / ".lock").read_text()  # the dead process never released it
    with caplog.at_level("WARNING", logger="tell_me_why"):
        assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    assert "Taking over the lock" in caplog.text


def test_sixteen_bit_images_reach_the_model_as_the_cues_see_them(tmp_path):
    from tell_me_why.app.data import LabelledImages
    from tell_me_why.cues.decoding import decode_image

    paths, labels = [], []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        level = 8000 * (i + 1)  # 16-bit levels up to 64000; an 8-bit reader clips them all to white
        Image.fromarray(np.full((32, 32), level, dtype=np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
        paths.append(path)
        labels.append("low" if i < 4 else "high")
    dls = LabelledImages(paths, labels, str(tmp_path)).dataloaders(size=32, bs=2, valid_pct=0.25, grey=True)
    batch = torch.cat([b[0] for b in dls.test_dl(paths)])
    cue_view = torch.tensor([decode_image(p).grey.mean() / 65535 for p in paths])
    torch.testing.assert_close(batch.mean(dim=(1, 2, 3)).as_subclass(torch.Tensor), cue_view.float(), atol=2e-3,
                               rtol=0)


def test_a_run_written_inside_its_data_never_becomes_data(tmp_path):
    data = image_folder(tmp_path / "data")
    inside = data / "dark" / "my_run"
    assert main(["run", str(data), "--out", str(inside), *TINY]) == 0
    assert list((inside / "report_figures").glob("*.png"))
    found = from_folder(data)
    assert found.counts() == {"dark": 10, "light": 10}  # the run's figures are not images of "dark"
    assert not [p for p in found.paths if inside in p.parents]


def test_csv_duplicates_are_merged_with_a_warning_and_conflicts_are_errors(tmp_path, caplog):
    image_folder(tmp_path)
    rows = [f"{label}/{label}_{i}.png,{label}" for label in ("dark", "light") for i in range(10)]
    (tmp_path / "twice.csv").write_text("path,label\n" + "\n".join(rows + rows[:3]) + "\n")
    with caplog.at_level("WARNING", logger="tell_me_why"):
        data = from_csv(tmp_path / "twice.csv")
    assert len(data.paths) == 20 and len(set(data.paths)) == 20 and "more than once" in caplog.text
    (tmp_path / "conflict.csv").write_text("path,label\n" + "\n".join(rows + ["dark/dark_0.png,light"]) + "\n")
    with pytest.raises(DataSourceError, match=r"two labels:\n.*dark_0.png: lines \[2, 22\] say \['dark', 'light'\]"):
        from_csv(tmp_path / "conflict.csv")


# -- crashes and stuck runs ------------------------------------------------------------------------------------


def _truncated_jpeg(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:1500])
    return path


def test_a_truncated_jpeg_is_caught_by_the_data_step(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    broken = _truncated_jpeg(data / "dark" / "broken.jpg")
    with Image.open(broken) as image:
        image.verify()  # what the data step used to check: it passes
    found = from_folder(data)
    assert broken not in found.paths and [p for p, _ in found.skipped] == [broken]
    with pytest.raises(DataSourceError, match="broken.jpg"):
        from_folder(data, on_unreadable="raise")
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    assert json.loads((out / "data.json").read_text())["skipped"][0][0] == str(broken)


def test_images_that_vanish_after_the_data_step_are_named_with_the_way_out(tmp_path, capsys):
    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    (data / "light" / "light_3.png").unlink()
    assert main(["explain", "--out", str(out)]) == 2
    err = _error(capsys)
    assert "light_3.png" in err and "are gone" in err and "run_state.json" in err


def test_decompression_bombs_are_unreadable_images_not_crashes(tmp_path):
    from tell_me_why.cues.table import compute_feature_score_table

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 million pixels in a few kB
    with pytest.warns(UserWarning, match="bomb.png"):
        table = compute_feature_score_table([bomb], on_error="nan", progress=False)
    assert table.drop(columns="Source_File_Path").isna().all(axis=None)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("L", (32, 32)).save(tmp_path / label / "fine.png")
    bomb.rename(tmp_path / "a" / "bomb.png")
    with pytest.raises(DataSourceError, match=r"bomb.png: .*pixels"):
        from_folder(tmp_path, on_unreadable="raise", min_per_class=0)


MEMORY_PROBE = r"""
import resource, sys
from tell_me_why.cues.table import compute_feature_score_table
import warnings
warnings.simplefilter("ignore")
compute_feature_score_table([sys.argv[1]], on_error="nan", progress=False)  # warm up: imports, thread pool
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
table = compute_feature_score_table([sys.argv[2]], on_error="nan", progress=False, max_pixels=int(sys.argv[3]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, int(table["brightness"].notna().all()))  # colour cues are NaN: the image is grey
"""


@pytest.mark.slow
def test_scoring_a_huge_image_costs_bounded_memory(tmp_path):
    """A 12000 x 12000 grey PNG (144 million pixels, a few hundred kB): refused from its header by default (under
    50 MB of extra peak memory), and, when allowed, scored on a shrunk copy (under 1 GB extra). Measured as the
    peak resident memory of a fresh process, after a warm-up on a small image."""
    small, huge = tmp_path / "small.png", tmp_path / "huge.png"
    Image.new("L", (64, 64), 128).save(small)
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image;"
                    "Image.new('L', (12000, 12000), 90).save(sys.argv[1])", str(huge)], check=True)
    results = {}
    for max_pixels in (40_000_000, 150_000_000):
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(small), str(huge), str(max_pixels)],
                               capture_output=True, text=True, check=True)
        extra_mb, scored = probe.stdout.split()
        results[max_pixels] = (float(extra_mb), scored == "1")
    assert results[40_000_000][0] < 50 and not results[40_000_000][1]
    assert results[150_000_000][0] < 1024 and results[150_000_000][1]


def test_reading_a_run_writes_nothing_and_an_unwritable_place_is_a_clear_error(tmp_path, finished_run, capsys,
                                                                              monkeypatch):
    data, out = finished_run

    def snapshot():
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")}

    before = snapshot()
    from tell_me_why.app.pipeline import Run

    Run.open(out).summary()
    saved = tmp_path / "elsewhere"
    assert main(["explain", "--out", str(out), "--images", str(data / "dark"), "--methods", "saliency",
                 "--save", str(saved)]) == 0
    assert snapshot() == before and (saved / "predictions.csv").is_file()

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(DirectoryLock, "acquire", refuse)
    capsys.readouterr()
    assert main(["report", "--out", str(out)]) == 2
    err = _error(capsys)
    assert "permission denied" in err and str(out) in err and "Traceback" not in err


def test_a_step_of_a_run_that_does_not_exist_is_an_error_not_a_new_run(tmp_path, capsys):
    typo = tmp_path / "runs" / "cts"
    for step in ("train", "features", "interpret", "explain", "report"):
        assert main([step, "--out", str(typo)]) == 2
        assert "holds no tmw run" in _error(capsys)
    assert not typo.exists()


def test_model_files_that_are_not_what_they_claim_get_clear_errors(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    pickle_named_safetensors = tmp_path / "model.safetensors"
    torch.save({"weight": torch.zeros(2)}, pickle_named_safetensors)
    random_bytes = tmp_path / "model.pt"
    random_bytes.write_bytes(os.urandom(4096))
    fake_torchscript = tmp_path / "model.ts"
    with zipfile.ZipFile(fake_torchscript, "w") as archive:
        archive.writestr("model/code/__torch__.py", "not a model")
    for path, message in ((pickle_named_safetensors, "is not a safetensors file"),
                          (random_bytes, "Cannot load"),
                          (fake_torchscript, "looks like a TorchScript archive")):
        assert main(["explain", "--images", str(image), "--model", str(path), "--arch", "resnet18"]) == 2
        err = _error(capsys)
        assert message in err and "Traceback" not in err, path


def test_partial_files_of_a_killed_run_are_removed_when_it_resumes(tmp_path):
    data, out = image_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    orphans = [out / ".report.html.x1.tmp", out / "models" / ".xaaenet_classif.safetensors.x2.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"\0" * 1000)
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    assert not any(orphan.exists() for orphan in orphans)


def test_small_arguments_are_checked(tmp_path, capsys, planted_cnn):
    from tell_me_why.attribution import explain
    from tell_me_why.causal import CausalExplainer

    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    model_file = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(1, 2).state_dict(), model_file)
    assert main(["explain", "--images", str(image), "--model", str(model_file), "--arch", "resnet18",
                 "--size", "0"]) == 2
    assert "--size must be a positive number of pixels, got 0" in _error(capsys)
    model, test, _ = planted_cnn
    with pytest.raises(ValueError, match="integer class indices"):
        explain(model, test.images[:2], method="saliency", target=0.5)
    with pytest.raises(ValueError, match="confidence_threshold = the string 'x': expected a number"):
        CausalExplainer(model, confidence_threshold="x")
    with pytest.raises(ValueError, match="target must be a class index"):
        CausalExplainer(model, iterations=1).explain(test.images[0], target=1.7)

    class WithFrozenNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.head = torch.nn.BatchNorm2d(1), torch.nn.Linear(1, 2)

        def forward(self, x):
            return self.head(self.norm(x).mean(dim=(1, 2, 3))[:, None])

    frozen = WithFrozenNorm().train()
    frozen.norm.eval()  # a frozen BatchNorm inside a model in training mode
    CausalExplainer(frozen, iterations=1).explain(test.images[0])
    assert frozen.training and not frozen.norm.training


# -- found in review -------------------------------------------------------------------------------------------


def test_a_run_written_before_a_setting_existed_still_opens(finished_run, tmp_path):
    import shutil

    from tell_me_why.app.pipeline import Run

    _, out = finished_run
    old = tmp_path / "old_run"
    shutil.copytree(out, old)
    saved = json.loads((old / "settings.json").read_text())
    del saved["max_pixels"]  # added by a later version
    (old / "settings.json").write_text(json.dumps(saved))
    assert Run.open(old).settings.max_pixels > 0
    assert main(["report", "--out", str(old)]) == 0


def test_training_settings_take_numpy_numbers_and_integer_classes_but_not_nan():
    from tell_me_why.xaaenet import TrainSettings

    settings = TrainSettings(epochs_adv=np.int64(2), lr_max=np.float32(1e-3), pls_target_class=1)
    assert settings.epochs_adv == 2 and settings.pls_target_class == 1
    with pytest.raises(ValueError, match=r"adv_low_threshold = nan: expected a number"):
        TrainSettings(adv_low_threshold=float("nan"))


def test_resuming_with_other_training_settings_is_refused(tmp_path, planted_dls, small_model):
    from tell_me_why.training import STATE_FILE, train_xaaenet

    (tmp_path / STATE_FILE).write_text(json.dumps({"phases": {}, "settings": {"epochs_adv": 5}}))
    with pytest.raises(ValueError, match=r"other settings \(differing: \[.*'epochs_adv'"):
        train_xaaenet(small_model(), planted_dls, epochs_adv=1, models_dir=tmp_path, resume=True)


def test_a_step_command_keeps_the_runs_other_settings(tmp_path, capsys):
    data, out = image_folder(tmp_path / "data", per_class=6), tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY, "--valid-pct", "0.1"]) == 2  # too few to validate
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--valid-pct", "0.15"]) == 2  # still too few, of the same data
    assert "validation split (15%)" in _error(capsys)
    saved = json.loads((out / "settings.json").read_text())
    assert saved["data"] == str(data.resolve()) and saved["size"] == 32 and saved["valid_pct"] == 0.15


def test_an_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    (tmp_path / "taken").write_text("a file")
    assert main(["run", str(data), "--out", str(tmp_path / "taken"), *TINY]) == 2
    err = _error(capsys)
    assert "taken" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
