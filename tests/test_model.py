"""The xAAEnet model: shapes, data range, parameter groups, encoders, skip connections, offline behaviour."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn as nn

from tell_me_why.model_aae import AAE
from tell_me_why.user_encoder import EncoderWithAAEBlocks, add_xaae_blocks, set_module_trainable
from tell_me_why.xaaenet.blocks import SkipDropout
from tell_me_why.xaaenet.encoders import PretrainedWeightsUnavailable
from tell_me_why.xaaenet.losses import ms_ssim_any_size, msssim_levels


@pytest.mark.parametrize(
    "size, channels, encoder",
    [(32, 3, "resnet18"), (64, 1, "resnet18"), ((48, 80), 3, "resnet34"), (96, 3, "resnet50")],
)
def test_forward_shapes_and_decoder_range(size, channels, encoder):
    model = AAE(input_size=size, input_channels=channels, encoding_dims=8, encoder=encoder, pretrained=False)
    height, width = (size, size) if isinstance(size, int) else size
    x = torch.rand(3, channels, height, width)
    logits = model(x)
    assert logits.shape == (3, 2)
    assert model.z.shape == (3, 8)
    assert model.decoder_output.shape == x.shape
    out = model.decoder_output.detach()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert model.gan_fake.shape == (3, 1) and model.gan_real.shape == (3, 1)
    loss = model.classif_loss_func(logits, torch.tensor([0, 1, 0]), 0.4, 0.599, 0.001)
    loss.backward()
    assert torch.isfinite(loss)


def test_inference_runs_the_encoder_and_classifier_only_until_training_asks_for_more():
    model = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False).eval()
    ran = []
    for name in ("decoder", "critic"):
        getattr(model, name).register_forward_hook(lambda module, args, out, name=name: ran.append(name))
    x = torch.rand(2, 3, 32, 32)
    state = torch.get_rng_state()
    with torch.no_grad():
        logits = model(x)
    assert ran == [] and torch.equal(torch.get_rng_state(), state)  # no decoder, no critic, no prior sample
    torch.testing.assert_close(logits, model.linear(model.encode(x)))
    with torch.no_grad():
        reconstruction = model.decoder_output
        assert model.decoder_output is reconstruction  # run once per batch, on first access
        fake = model.critic_fake_logits
    assert ran == ["decoder", "critic", "critic"] and not torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(fake, model.critic(model.z))
    with torch.no_grad():
        model(x)
    assert model.decoder_output is not reconstruction  # a new batch gets a new reconstruction


def test_parameter_groups_partition_all_parameters():
    model = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False)
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "decoder", "latent", "critic", "classifier"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert all(groups[name] for name in groups)


def test_wrong_input_shape_is_a_clear_error():
    model = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False)
    with pytest.raises(ValueError, match=r"built for images of shape \(B, 3, 32, 32\)"):
        model(torch.rand(2, 3, 40, 40))


def test_pretrained_offline_fails_at_construction_with_instructions(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained=False"):
        AAE(input_size=32, encoder="resnet18", pretrained=True)


def test_random_init_never_touches_the_network(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    AAE(input_size=32, encoder="resnet34", pretrained=False)


def test_unknown_encoder_and_classes_are_rejected():
    with pytest.raises(ValueError, match="resnet18"):
        AAE(input_size=32, encoder="vgg", pretrained=False)
    with pytest.raises(ValueError, match="binary"):
        AAE(input_size=32, classes=3, encoder="resnet18", pretrained=False)
    with pytest.raises(ValueError, match="at least 32"):
        AAE(input_size=16, encoder="resnet18", pretrained=False)


def _one_block_resnet(weights=None, **kwargs):
    """A torchvision-style constructor: ResNet with one BasicBlock per stage (resnet18 has two)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    assert weights is None, "pretrained=False must not ask for weights"
    return ResNet(BasicBlock, [1, 1, 1, 1], **kwargs)


def test_registered_encoders_are_listed_built_and_used_then_removed():
    from torchvision.models import ResNet18_Weights

    from tell_me_why.xaaenet import encoders

    before = dict(encoders._ENCODERS)
    try:
        encoders.register_encoder("resnet10_test", _one_block_resnet, ResNet18_Weights.DEFAULT)
        assert encoders.available_encoders() == sorted([*before, "resnet10_test"])
        torch.manual_seed(0)
        model = AAE(encoder="resnet10_test", pretrained=False, input_size=32, encoding_dims=8).eval()
        layers = list(model.encoder.children())
        assert len(layers) == 8 and all(len(stage) == 1 for stage in layers[4:])  # stem + 4 one-block stages
        assert model.encoder_feature_shape == (512, 1, 1)  # stride 32 at 32 px
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            logits = model(x)
        assert logits.shape == (2, 2) and torch.isfinite(logits).all() and model.z.shape == (2, 8)
        with pytest.raises(ValueError, match=r"Unknown encoder 'vgg'.*'resnet10_test'.*'resnet18'"):
            AAE(encoder="vgg", pretrained=False, input_size=32)
    finally:
        encoders._ENCODERS.clear()
        encoders._ENCODERS.update(before)
    assert "resnet10_test" not in encoders.available_encoders()
    with pytest.raises(ValueError, match="Unknown encoder 'resnet10_test'"):
        AAE(encoder="resnet10_test", pretrained=False, input_size=32)


class TwoStageEncoder(nn.Module):
    """Not an nn.Sequential: attributes called in forward, with a reused in-place ReLU."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(channels, 8, 3, stride=2, padding=1)
        self.body = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(self.act(self.stem(x))))


@pytest.mark.parametrize("skip_dropout", [1.0, 0.5, 0.0])
def test_any_module_encoder(skip_dropout):
    model = add_xaae_blocks(TwoStageEncoder(1), input_size=(40, 56), input_channels=1, encoding_dims=6,
                            skip_dropout=skip_dropout)
    assert isinstance(model, EncoderWithAAEBlocks)
    x = torch.rand(2, 1, 40, 56)
    model(x)
    assert model.decoder_output.shape == x.shape
    assert model.decoder.use_skips == (skip_dropout < 1)


def test_skips_reach_the_decoder_only_when_enabled():
    torch.manual_seed(0)
    model = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False, skip_dropout=0.0).eval()
    x = torch.rand(2, 3, 32, 32)
    model(x)
    with_skips = model.decoder_output
    model.encode(x)
    zeroed = [torch.zeros_like(s) for s in model._skip_taps.pop()]
    assert not torch.allclose(with_skips, model.decoder(model.z, zeroed))


def test_skip_dropout_eval_is_the_expectation_of_training():
    torch.manual_seed(0)
    layer = SkipDropout(0.3)
    x = torch.rand(4000, 2, 3, 3) + 1
    layer.train()
    train_mean = layer(x).mean(0)
    layer.eval()
    assert torch.allclose(layer(x).mean(0), train_mean, rtol=0.05)
    dropped = SkipDropout(1.0).train()(x)
    assert float(dropped.abs().max()) == 0.0 and float(SkipDropout(1.0).eval()(x).abs().max()) == 0.0


def test_set_module_trainable_clears_stale_gradients():
    layer = nn.Linear(3, 2)
    layer(torch.rand(4, 3)).sum().backward()
    set_module_trainable(layer, False)
    assert all(not p.requires_grad and p.grad is None for p in layer.parameters())


def test_msssim_scales_follow_the_image_size():
    assert msssim_levels(32, 32) == 2
    assert msssim_levels(64, 96) == 3
    assert msssim_levels(96, 96) == 4
    assert msssim_levels(161, 200) == 5


def test_msssim_matches_pytorch_msssim_on_large_images():
    from pytorch_msssim import ms_ssim

    torch.manual_seed(0)
    x = torch.rand(2, 3, 176, 176)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert torch.allclose(ms_ssim_any_size(x, y), ms_ssim(x, y, data_range=1.0), atol=1e-6)
    assert float(ms_ssim_any_size(x[..., :32, :32], x[..., :32, :32])) == pytest.approx(1.0, abs=1e-5)
