"""Corruption transforms, the generator/critic rule, gradient accumulation and metrics, in isolation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tell_me_why.callbacks import AddGaussianNoise, LossAttrMetric, RandomMasking, UnfreezeFcCritAdaptative


def test_random_masking_masks_the_requested_patches_independently():
    torch.manual_seed(0)
    x = torch.ones(6, 3, 40, 36)  # 5 x 4 patch grid of 8 px plus an unmasked border column
    out = RandomMasking(mask_ratio=0.25, patch_size=8)(x)
    grid = out[:, 0, :40, :32].reshape(6, 5, 8, 4, 8).amin(dim=(2, 4))
    assert torch.all((grid == 0).sum(dim=(1, 2)) == 5)  # int(20 * 0.25) patches per image
    patches = out[:, 0, :40, :32].reshape(6, 5, 8, 4, 8)
    assert torch.all(patches.amax(dim=(2, 4)) == patches.amin(dim=(2, 4)))  # whole patches only
    assert torch.all(out[..., 32:] == 1)
    masks = [(grid[i] == 0).flatten().tolist() for i in range(6)]
    assert len({tuple(m) for m in masks}) > 1


def test_gaussian_noise_has_the_requested_mean_and_std_is_fresh_and_stays_in_range():
    torch.manual_seed(0)
    x = torch.full((8, 3, 32, 32), 0.5)  # 24576 values: the sample std is within ~1% of the true one
    noise = AddGaussianNoise(std=0.05)
    first, second = noise(x) - x, noise(x) - x
    assert float(first.std()) == pytest.approx(0.05, rel=0.05)  # measured 0.0501
    assert abs(float(first.mean())) < 0.002  # measured -0.0004
    assert not torch.allclose(first, second)  # fresh noise on each call
    assert float((first - second).std()) == pytest.approx(0.05 * 2**0.5, rel=0.05)  # independent draws
    shifted = AddGaussianNoise(mean=0.1, std=0.05)(x) - x
    assert float(shifted.mean()) == pytest.approx(0.1, abs=0.002)  # measured 0.0996
    assert float(shifted.std()) == pytest.approx(0.05, rel=0.05)
    out = AddGaussianNoise(std=0.5)(x)  # one std reaches 0 and 1: P(|z| > 1) / 2 = 15.9% clamped at each end
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert 0.13 < float((out == 0).float().mean()) < 0.19  # measured 0.157
    assert 0.13 < float((out == 1).float().mean()) < 0.19  # measured 0.160


@pytest.mark.parametrize(
    "history, modes, expected",
    [
        ([], ["critic"] * 2, False),  # warm-up: first three epochs train the critic
        ([0.7] * 3, ["critic"] * 3, True),  # then three generator epochs
        ([0.3] * 6, ["critic"] * 3 + ["generator"] * 3, True),  # critic winning (loss low) -> generator
        ([1.2] * 6, ["critic"] * 3 + ["generator"] * 3, False),  # critic losing (loss high) -> critic
        ([0.7] * 6, ["critic"] * 3 + ["generator"] * 3, False),  # in the band: alternate after 3 epochs
        ([0.7] * 7, ["critic"] * 3 + ["generator"] * 3 + ["critic"], False),
    ],
)
def test_switch_rule_reads_the_critic_loss(history, modes, expected):
    rule = UnfreezeFcCritAdaptative(low_threshold=0.65, high_threshold=0.8)
    rule.critic_history, rule.modes = list(history), list(modes)
    assert rule.next_mode_is_generator(len(modes)) is expected


def test_switch_rule_does_not_depend_on_the_mode_of_past_epochs_losses():
    # Same critic losses, whichever mode produced them: same decision. The original thresholded
    # each epoch's own-mode loss, mixing the generator's and the critic's.
    a = UnfreezeFcCritAdaptative(low_threshold=0.65, high_threshold=0.8)
    b = UnfreezeFcCritAdaptative(low_threshold=0.65, high_threshold=0.8)
    a.critic_history = b.critic_history = [0.9, 0.95, 0.9, 0.9, 0.92, 0.93, 0.91]
    a.modes = ["critic"] * 3 + ["generator"] * 3 + ["generator"]
    b.modes = ["critic"] * 3 + ["generator"] * 3 + ["critic"]
    assert a.next_mode_is_generator(7) is b.next_mode_is_generator(7) is False


def test_loss_attr_metric_weights_by_batch_size():
    metric = LossAttrMetric("recons_loss")
    metric.reset()
    for value, batch in [(1.0, 10), (0.0, 30)]:
        learn = SimpleNamespace(model=SimpleNamespace(recons_loss=torch.tensor(value)), xb=(torch.zeros(batch, 1),))
        metric.accumulate(learn)
    assert metric.value == pytest.approx(0.25)
    assert metric.name == "recons_loss"
