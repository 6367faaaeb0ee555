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
