"""The global "where" map: pixel brightness against the decision-axis score, with a family-wise threshold."""

from __future__ import annotations

import numpy as np
import pytest

from tell_me_why.cues.where import pixel_axis_map


def _images(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 24, 24)), rng.normal(size=n)


def test_the_map_finds_the_planted_region_with_the_right_sign():
    images, scores = _images(120, 0)
    images[:, :, 4:8, 10:16] += 0.8 * scores[:, None, None, None]  # brighter there means further toward class A
    images[:, :, 18:20, 2:6] -= 0.8 * scores[:, None, None, None]  # darker there means class A
    found = pixel_axis_map(images, scores, seed=1)
    assert found.significant[4:8, 10:16].all() and (found.correlation[4:8, 10:16] > 0).all()
    assert found.significant[18:20, 2:6].all() and (found.correlation[18:20, 2:6] < 0).all()
    outside = found.significant.copy()
    outside[4:8, 10:16] = outside[18:20, 2:6] = False
    assert outside.sum() <= 2


def test_controls_without_a_cause_show_no_pixel_but_at_the_family_wise_rate():
    """576 pixels and no cause: an uncorrected 5 % test marks pixels in every control; the family-wise threshold
    marks any pixel in about 1 control of 20 (binomial: 4 or more with probability 0.016)."""
    any_pixel = 0
    for seed in range(20):
        images, scores = _images(60, seed)
        found = pixel_axis_map(images, scores, seed=seed)
        any_pixel += bool(found.significant.any())
        assert found.significant.sum() <= 2
        assert (np.abs(found.correlation) > 0.254).sum() > 5  # what an uncorrected p < 0.05 (n = 60) marks
    assert any_pixel <= 3


def test_bad_inputs_are_named():
    images, scores = _images(10, 0)
    with pytest.raises(ValueError, match="10 images but 9 axis scores"):
        pixel_axis_map(images, scores[:9])
    with pytest.raises(ValueError, match="all equal"):
        pixel_axis_map(images, np.ones(10))
