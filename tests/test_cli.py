"""``tmw``: a folder-per-class run and a CSV run end to end, resume, and clear errors for bad data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from tell_me_why.cli import main
from tell_me_why.report import SECTIONS

TINY = ["--size", "32", "--epochs-adv", "1", "--epochs-ae", "1", "--epochs-classif", "1", "--explain-images", "2",
        "--ig-steps", "4", "--causal-iterations", "2", "--batch-size", "8", "--encoding-dims", "8"]


def _dataset(root, per_class=10):
    rng = np.random.default_rng(0)
    for label, brightness in (("dark", 60), ("light", 190)):
        for i in range(per_class):
            pixels = np.clip(rng.normal(brightness, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    return root


@pytest.mark.slow
def test_run_end_to_end_then_resume(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    report = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in report
    assert report.count('src="data:image/png;base64,') >= 8
    assert not re.search(r'src="(?!data:)', report)  # self-contained: no external resources
    assert json.loads((out / "run_state.json").read_text())["done"][-1] == "report"
    for name in ("settings.json", "latents.parquet", "features.parquet", "metrics.json",
                 "models/xaaenet_classif.safetensors", "explanations/explanations.sqlite"):
        assert (out / name).is_file(), name
    capsys.readouterr()
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    assert capsys.readouterr().out.count("already done, skipped") == 6
    assert main(["run", str(data), "--out", str(out), *TINY[:-2], "--encoding-dims", "16"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_csv_labelled_data(tmp_path):
    data = _dataset(tmp_path / "images")
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
    data = _dataset(tmp_path / "data", per_class=6)
    (data / "dark" / "broken.png").write_bytes(b"not an image")
    assert main(["run", str(data), "--out", str(tmp_path / "c"), "--on-unreadable", "raise", *TINY]) == 2
    assert "broken.png" in capsys.readouterr().err
    (tmp_path / "settings.toml").write_text("epochs = 3\n")
    assert main(["run", str(data), "--out", str(tmp_path / "d"), "--config", str(tmp_path / "settings.toml")]) == 2
    assert "Unknown setting(s) ['epochs']" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "examples:" in capsys.readouterr().out
