"""The plain baselines a run is compared with: logistic regression on the pixels."""

from __future__ import annotations

import torch

from tell_me_why.app.baselines import pixel_logistic_regression
from tell_me_why.app.pipeline import baseline_sentence


def _images(n: int, seed: int, planted: bool):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 48, 48, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    if planted:
        images[labels == 1, :, :12, :12] += 0.3  # a brighter corner: a linear cue
    return images, labels


def test_pixel_logistic_regression_learns_a_linear_cue_and_not_noise():
    train, train_labels = _images(300, 0, planted=True)
    valid, valid_labels = _images(200, 1, planted=True)
    assert pixel_logistic_regression(train, train_labels, valid, valid_labels) >= 0.9
    noise, noise_labels = _images(300, 2, planted=False)
    assert abs(pixel_logistic_regression(noise, noise_labels, valid, valid_labels) - 0.5) <= 0.1


def test_the_summary_says_when_xaaenet_is_worse_than_the_pixels():
    assert "worse than a linear model" in baseline_sentence({"accuracy": 0.8, "pixel_logistic_regression": 0.9})
    assert "worse" not in baseline_sentence({"accuracy": 0.95, "pixel_logistic_regression": 0.9})
    assert baseline_sentence({"accuracy": 0.95}) == "validation accuracy: 95.0%"


def test_the_encoder_baseline_learns_a_planted_cue_and_leaves_the_random_state_alone(planted_root):
    import random

    import numpy as np

    from tell_me_why.app.baselines import encoder_cross_entropy
    from tell_me_why.app.data import folder_dataloaders

    dls = folder_dataloaders(planted_root, size=32, bs=16, seed=3)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state(),
              [loader.rng.getstate() for loader in dls.loaders])
    result = encoder_cross_entropy(dls, encoder="resnet18", pretrained=False, input_channels=3, epochs=6,
                                   lr_max=3e-3, patience=3, seed=0)
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state(),
             [loader.rng.getstate() for loader in dls.loaders])
    assert result["accuracy"] >= 0.9, result  # a bright square: any plain CNN finds it
    assert 1 <= result["epochs_run"] <= 6 and 0 <= result["best_epoch"] < result["epochs_run"]
    assert result["seconds"] > 0 and result["imagenet_weights"] is False
    # The run's later draws are those it would make without the baseline.
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and torch.equal(before[2], after[2])
    assert before[3] == after[3]


def test_the_encoder_baseline_is_named_when_xaaenet_is_worse():
    encoder = {"accuracy": 0.9, "seconds": 12.0}
    worse = baseline_sentence({"accuracy": 0.8, "pixel_logistic_regression": 0.7, "encoder_cross_entropy": encoder})
    assert "the same encoder with cross-entropy alone, 12 s: 90.0%" in worse
    assert "xAAEnet is 10.0% worse than the same encoder trained with cross-entropy alone" in worse
    assert "linear model" not in worse  # better than the pixels: not said to be worse than them
    both = baseline_sentence({"accuracy": 0.6, "pixel_logistic_regression": 0.7, "encoder_cross_entropy": encoder})
    assert both.count("worse than") == 2 and both.count("describe a weaker model") == 1
    assert "worse" not in baseline_sentence({"accuracy": 0.95, "pixel_logistic_regression": 0.7,
                                             "encoder_cross_entropy": encoder})


def test_the_encoder_baseline_needs_an_epoch_and_a_patience():
    import pytest

    from tell_me_why.app.baselines import encoder_cross_entropy

    settings = dict(encoder="resnet18", pretrained=False, input_channels=3, lr_max=3e-3)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        encoder_cross_entropy(None, epochs=0, patience=3, **settings)
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got 0"):
        encoder_cross_entropy(None, epochs=3, patience=0, **settings)
