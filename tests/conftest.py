"""Shared fixtures: a planted-cue image folder made in the test session, and small dataloaders over it."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def planted_root(tmp_path_factory):
    from tell_me_why.testing import write_planted_cue_dataset

    return write_planted_cue_dataset(tmp_path_factory.mktemp("planted"), n_per_class=40, size=64, cue="square", seed=1)


@pytest.fixture
def planted_dls(planted_root):
    from tell_me_why.app.data import folder_dataloaders

    return folder_dataloaders(planted_root, size=64, bs=16, seed=3)


@pytest.fixture
def small_model():
    from tell_me_why.model_aae import AAE

    def build(**kwargs):
        torch.manual_seed(kwargs.pop("seed", 0))
        options = dict(input_size=64, encoding_dims=16, encoder="resnet18", pretrained=False)
        options.update(kwargs)
        return AAE(**options)

    return build


@pytest.fixture(scope="session")
def planted_cnn():
    """A small CNN trained on 64x64 planted-evidence images (a bright square decides the class), and a test set.

    Returns ``(model, test, positives)``; the accuracy is checked so that explanation tests mean something."""
    from tell_me_why.testing import planted_evidence_images, train_small_cnn

    model = train_small_cnn(planted_evidence_images(800, 64, seed=0), epochs=3)
    test = planted_evidence_images(60, 64, seed=1)
    with torch.no_grad():
        accuracy = (model(test.images).argmax(1) == test.labels).float().mean().item()
    assert accuracy >= 0.95, "the planted task must be learnt for the explanation tests to mean anything"
    positives = [i for i in range(len(test.labels)) if test.labels[i] == 1][:20]
    return model, test, positives


# tmw settings that make a whole run take seconds: tiny images, one epoch per phase, few explanation steps; random
# initial weights, so that a run does not depend on the network or the torch hub cache (--pretrained auto would).
TINY = ["--size", "32", "--epochs-adv", "1", "--epochs-ae", "1", "--epochs-classif", "1", "--explain-images", "2",
        "--ig-steps", "4", "--causal-iterations", "2", "--batch-size", "8", "--encoding-dims", "8", "--no-pretrained"]


def image_folder(root, per_class=10):
    """A folder per class of 32 px RGB noise images, dark or light."""
    rng = np.random.default_rng(0)
    for label, brightness in (("dark", 60), ("light", 190)):
        for i in range(per_class):
            pixels = np.clip(rng.normal(brightness, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    return root


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """``tmw run`` once on a folder-per-class dataset; returns (data folder, run directory)."""
    from tell_me_why.app.cli import main

    root = tmp_path_factory.mktemp("tmw")
    data, out = image_folder(root / "data"), root / "run"
    assert main(["run", str(data), "--out", str(out), *TINY]) == 0
    return data, out


def read_png(path, inches, dpi=150, smallest=0.6):
    """A saved figure as (H, W, 3) ints, after checking that its pixel size fits a figure of ``inches`` (width,
    height) saved at ``dpi``: a tight bounding box trims the margins, so at least ``smallest`` of the nominal size."""
    with Image.open(path) as png:
        assert png.format == "PNG"
        pixels = np.asarray(png.convert("RGB")).astype(int)
    height, width = pixels.shape[:2]
    assert smallest * inches[0] * dpi <= width <= 1.1 * inches[0] * dpi, (path, width)
    assert smallest * inches[1] * dpi <= height <= 1.1 * inches[1] * dpi, (path, height)
    return pixels


def colours(pixels) -> int:
    """How many distinct colours a picture shows."""
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def near(pixels, colour, alpha=1.0, tolerance=10):
    """Where ``pixels`` show the hex ``colour`` drawn with ``alpha`` over white, within ``tolerance`` per channel."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) * alpha + 255 * (1 - alpha)
    return np.abs(pixels - rgb).max(-1) <= tolerance
