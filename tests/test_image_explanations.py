"""``tmw explain --images``: any image or folder, with a TorchScript file or a state dict and its architecture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from tell_me_why.app.cli import main
from tell_me_why.app.explain_images import PixelSpaceClassifier, load_classifier
from tell_me_why.metrics import pointing_game


def test_torchscript_model_finds_the_planted_square_from_the_command_line(planted_cnn, tmp_path, capsys):
    model, test, positives = planted_cnn
    negatives = [i for i in range(len(test.labels)) if test.labels[i] == 0][:4]
    torch.jit.trace(model.eval(), test.images[:1]).save(str(tmp_path / "model.ts"))
    folder = tmp_path / "images"
    folder.mkdir()
    chosen = positives[:10] + negatives
    for rank, index in enumerate(chosen):
        pixels = (test.images[index, 0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{rank:02d}.png")
    out = tmp_path / "explained"
    assert main(["explain", "--images", str(folder), "--model", str(tmp_path / "model.ts"), "--size", "64",
                 "--grey", "--classes", "plain,square", "--methods", "saliency,integrated_gradients,causal",
                 "--target", "square", "--save", str(out)]) == 0
    table = pd.read_csv(out / "predictions.csv")
    truth = ["square"] * 10 + ["plain"] * len(negatives)
    assert (table["predicted"] == truth).mean() >= 0.9
    assert (table["explained"] == "square").all()
    maps = np.load(out / "maps.npz")
    squares = np.stack([test.square_mask(i) for i in positives[:10]])
    for method in ("saliency", "integrated_gradients", "causal"):
        found = torch.from_numpy(maps[method][:10])  # (N, H, W): every method at the image's size
        assert pointing_game(found.abs(), squares).mean() >= 0.9, method
    # Control: without a square nothing makes the model say "square", so no pixel is a cause of it.
    assert {maps[m].shape for m in maps.files} == {(len(chosen), 64, 64)}
    assert np.abs(maps["causal"][10:]).max() == 0
    assert len(list(out.glob("*.png"))) == len(chosen)
    # Grad-CAM hooks a layer, which TorchScript cannot do: a clear error, not a crash.
    assert main(["explain", "--images", str(folder), "--model", str(tmp_path / "model.ts"), "--size", "64",
                 "--grey", "--methods", "gradcam"]) == 2
    assert "TorchScript modules do not support" in capsys.readouterr().err


def test_state_dicts_load_by_architecture_and_pickled_code_is_refused(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=2).eval()
    inputs = torch.rand(2, 3, 64, 64)
    expected = original(inputs)
    save_file(original.state_dict(), tmp_path / "weights.safetensors")
    torch.save(original.state_dict(), tmp_path / "weights.pt")
    torch.save({"state_dict": original.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    for name in ("weights.safetensors", "weights.pt", "checkpoint.pth"):
        loaded = load_classifier(tmp_path / name, arch="resnet18")
        torch.testing.assert_close(loaded(inputs), expected)
    with pytest.raises(ValueError, match="--arch"):
        load_classifier(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="does not fit resnet18 with 10 classes"):
        load_classifier(tmp_path / "weights.pt", arch="resnet18", num_classes=10)
    with pytest.raises(ValueError, match="Unknown architecture 'resnet19'"):
        load_classifier(tmp_path / "weights.pt", arch="resnet19")
    torch.save(original, tmp_path / "pickled_module.pt")  # a whole pickled module: loading it would run code
    with pytest.raises(ValueError, match="as weights only"):
        load_classifier(tmp_path / "pickled_module.pt", arch="resnet18")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_classifier(tmp_path / "missing.pt", arch="resnet18")


def test_normalisation_is_applied_inside_the_classifier():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    pixels = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = model((pixels - mean[:, None, None]) / std[:, None, None])
    torch.testing.assert_close(PixelSpaceClassifier(model, "imagenet")(pixels), expected)


def test_bad_explain_arguments_give_clear_errors(tmp_path, capsys):
    assert main(["explain", "--model", str(tmp_path / "m.ts")]) == 2
    assert "--model needs --images" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["explain", "--images", str(tmp_path / "empty"), "--model", str(tmp_path / "m.ts")]) == 2
    assert "No images" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["explain", "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "norun")]) == 2
    assert "not a tmw run directory" in capsys.readouterr().err


def test_timm_state_dict_loads_by_name(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(1)
    original = timm.create_model("resnet10t", pretrained=False, num_classes=2).eval()
    save_file(original.state_dict(), tmp_path / "timm.safetensors")
    inputs = torch.rand(1, 3, 64, 64)
    loaded = load_classifier(tmp_path / "timm.safetensors", arch="timm/resnet10t")
    torch.testing.assert_close(loaded(inputs), original(inputs))
    with pytest.raises(ValueError, match="Unknown timm architecture 'resnet10x'"):
        load_classifier(tmp_path / "timm.safetensors", arch="timm/resnet10x")


def test_every_method_offered_by_tmw_explain_finds_the_planted_square_with_its_defaults(planted_cnn):
    from tell_me_why.app.explain_images import IMAGE_METHODS, explain_images
    from tell_me_why.attribution import available_methods

    model, test, positives = planted_cnn
    chosen = positives[:10]
    offered = available_methods(model)
    assert set(IMAGE_METHODS) - set(offered) == {"attention_rollout"}  # a CNN has no attention to roll out
    result = explain_images(model, test.images[chosen], [f"{i}.png" for i in chosen], methods=offered,
                            target=1, progress=False)
    squares = np.stack([test.square_mask(i) for i in chosen])
    assert set(result.maps) == set(offered)
    patch_side = test.images.shape[-1] // 8  # Shapley values are constant over the cells of an 8 x 8 grid
    for method, maps in result.maps.items():
        assert len(maps) == len(chosen) and torch.isfinite(maps).all(), method
        tolerance = patch_side - 1 if method == "shapley_sampling" else 0
        assert pointing_game(maps.abs(), squares, tolerance=tolerance).mean() >= 0.8, method
