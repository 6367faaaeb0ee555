"""Shared fixtures: a planted-cue image folder made in the test session, and small dataloaders over it."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def planted_root(tmp_path_factory):
    from tell_me_why.datasets import write_planted_cue_dataset

    return write_planted_cue_dataset(tmp_path_factory.mktemp("planted"), n_per_class=40, size=64, cue="square", seed=1)


@pytest.fixture
def planted_dls(planted_root):
    from tell_me_why.datasets import folder_dataloaders

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
    from tell_me_why.toy_models import planted_evidence_images, train_small_cnn

    model = train_small_cnn(planted_evidence_images(800, 64, seed=0), epochs=3)
    test = planted_evidence_images(60, 64, seed=1)
    with torch.no_grad():
        accuracy = (model(test.images).argmax(1) == test.labels).float().mean().item()
    assert accuracy >= 0.95, "the planted task must be learnt for the explanation tests to mean anything"
    positives = [i for i in range(len(test.labels)) if test.labels[i] == 1][:20]
    return model, test, positives
