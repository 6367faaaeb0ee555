"""Latent explanations: the decision axis decoded, latent counterfactuals and neighbours in latent space.

The faithfulness tests use a planted cue (class "present" images are brighter): walking toward class A must add the
cue and decoded counterfactuals must be read as the other class; controls (a direction orthogonal to the axis, an
untrained decoder) show that both checks can fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import colours, read_png
from PIL import Image
from torch import nn

from tell_me_why.xaaenet import EncoderWithAAEBlocks
from tell_me_why.xaaenet.blocks import DynamicUnetSkipDropout, FeatureMapProbe
from tell_me_why.xaaenet.latent_explanations import (
    DEFAULT_MARGIN,
    decision_axis,
    latent_counterfactual,
    latent_neighbours,
    traverse_class_means,
    traverse_decision_axis,
)
from tell_me_why.xaaenet.latents import LatentSplit

SIZE = 32
CLASSES = ("absent", "present")  # "present" (index 1, class A) carries the planted cue


def _tiny_xaaenet(skip_dropout: float = 1.0, seed: int = 0) -> EncoderWithAAEBlocks:
    """Three strided convolutions (32 -> 4 px) and a narrow decoder: an xAAEnet small enough to train in seconds."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    torch.manual_seed(seed)
    encoder = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 32))
    model = EncoderWithAAEBlocks(encoder, input_size=SIZE, encoding_dims=8, skip_dropout=skip_dropout)
    model.decoder = DynamicUnetSkipDropout(8, FeatureMapProbe.run(encoder, 3, (SIZE, SIZE)), (SIZE, SIZE), 3,
                                           skip_dropout=skip_dropout, width=32)
    return model


def _load(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((root / name).glob("*.png")):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """An xAAEnet trained on the brightness-planted task, with its training and test images.

    A plain loop (reconstruction, cross-entropy and a pull of z toward 0) instead of the three fastai phases keeps
    the file fast: the explanations need a trained encoder, classifier and decoder, not the critic."""
    from tell_me_why.testing import write_planted_cue_dataset

    root = tmp_path_factory.mktemp("latent")
    train = _load(write_planted_cue_dataset(root / "train", 60, SIZE, cue="brightness", seed=1))
    test = _load(write_planted_cue_dataset(root / "test", 30, SIZE, cue="brightness", seed=7))
    model = _tiny_xaaenet()
    optimiser = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("critic")], lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    images, labels = train
    model.train()
    for _ in range(15):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            logits = model(images[batch])
            loss = (10 * F.mse_loss(model.decoder_output, images[batch]) + F.cross_entropy(logits, labels[batch])
                    + 0.01 * model.z.pow(2).mean())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test[0]).argmax(1) == test[1]).float().mean().item()
    assert accuracy >= 0.95, "the planted task must be learnt for the faithfulness tests to mean anything"
    return model, train, test


def _brightness(images: torch.Tensor) -> torch.Tensor:
    """The planted cue's score: mean brightness, per image (any leading dimensions)."""
    return images.mean(dim=(-3, -2, -1))


def test_traversal_toward_class_a_adds_the_planted_cue(planted):
    model, _, (images, labels) = planted
    walk = traverse_decision_axis(model, images, steps=7)
    cue = _brightness(walk.decoded)  # (N, steps)
    assert torch.allclose(walk.positions, torch.linspace(-3, 3, 7))
    assert (walk.probability.diff(dim=1) > 0).all()  # every column is further toward class A
    mean = cue.mean(0)
    assert (mean.diff() > 0).all(), f"the planted cue must rise along the axis: {mean.tolist()}"
    rise = float(mean[-1] - mean[0])
    assert rise > 0.15
    assert (cue.diff(dim=1) > 0).all(1).float().mean() >= 0.6  # most single images rise at every step too
    # The model reads the decoded frames as it reads the moved z: from the other class to class A.
    read_back = walk.decoded_probability.mean(0)
    assert read_back[0] < 0.1 and read_back[-1] > 0.9
    assert torch.allclose(walk.changes, walk.decoded - walk.reconstruction[:, None])

    means = traverse_class_means(model, images, labels, steps=7)
    assert means.positions[-1] >= decision_axis(model).position(means.z).abs().max()  # reaches both class means
    for row in _brightness(means.decoded):
        assert (row.diff() > 0).all(), row.tolist()

    # Control: the same walk along a direction orthogonal to the axis does not add the cue.
    axis = decision_axis(model)
    other = torch.randn(axis.direction.shape, generator=torch.Generator().manual_seed(1))
    other = other - (other @ axis.direction) * axis.direction
    other = other / other.norm()
    with torch.no_grad():
        z = model.encode(images)
        frames = torch.stack([model.decode(z + t * other) for t in walk.positions], 1)
    control = _brightness(frames).mean(0)
    assert float(control.max() - control.min()) < 0.5 * rise, (control.tolist(), rise)


def test_counterfactuals_flip_the_decision_on_planted_data(planted):
    model, _, (images, _) = planted
    result = latent_counterfactual(model, images)
    assert result.flip_rate >= 0.9, result.summary()
    assert min(result.flip_rate_toward(0), result.flip_rate_toward(1)) >= 0.9  # both ways
    assert (result.target_class == 1 - result.original_class).all()
    # The closed form lands the target class exactly the margin ahead, at the distance to the boundary plus that.
    axis = decision_axis(model)
    sign = torch.where(result.target_class == 1, 1.0, -1.0)
    lead = sign * axis.logit_gap(result.z_counterfactual)
    assert torch.allclose(lead, torch.full_like(lead, DEFAULT_MARGIN), atol=1e-4)
    expected = (DEFAULT_MARGIN - sign * axis.logit_gap(result.z)) / axis.scale
    assert torch.allclose(result.distance, expected, atol=1e-4)
    assert torch.allclose(result.probability, torch.full_like(lead, torch.sigmoid(torch.tensor(DEFAULT_MARGIN))))
    with torch.no_grad():
        assert torch.allclose(result.critic_score, torch.sigmoid(model.critic(result.z_counterfactual))[:, 0])
    assert ((result.reconstruction_ssim > 0) & (result.reconstruction_ssim <= 1)).all()
    assert torch.allclose(result.difference, result.counterfactual - result.reconstruction)
    summary = result.summary()
    assert summary["flip_rate"] == result.flip_rate and summary["images"] == len(images)
    picked = result.select([3, 0])
    assert torch.equal(picked.counterfactual[1], result.counterfactual[0]) and picked.method == "axis"

    # Control: with an untrained decoder the decoded counterfactuals no longer carry the move, and the check fails.
    blurred = _tiny_xaaenet(seed=1)
    blurred.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")},
                            strict=False)
    blurred.eval()
    control = latent_counterfactual(blurred, images)
    assert control.flip_rate < 0.9
    # It draws about the same image whatever z is, which the model reads as one class: the flips go one way only.
    assert min(control.flip_rate_toward(0), control.flip_rate_toward(1)) < 0.5


def test_gradient_counterfactuals_are_never_shorter_than_the_axis_move(planted):
    model, _, (images, _) = planted
    axis_move = latent_counterfactual(model, images[::3])
    straight = latent_counterfactual(model, images[::3], method="gradient", prior_weight=0.0, step=0.02)
    assert straight.reached.all()
    # Without the prior, the gradient of the logit lead is the axis itself: the same move, to within a step.
    assert torch.allclose(straight.distance, axis_move.distance, atol=0.03)
    bent = latent_counterfactual(model, images[::3], method="gradient", prior_weight=0.3, step=0.02)
    assert bent.reached.all() and bent.flip_rate >= 0.9
    # The axis move is the shortest there is; the prior bends the path toward likelier z (nearer the origin).
    assert (bent.distance >= axis_move.distance - 1e-4).all()
    assert bent.z_counterfactual.norm(dim=1).mean() < axis_move.z_counterfactual.norm(dim=1).mean()


def test_neighbours_are_the_nearest_training_images_of_each_class(planted):
    model, (train_images, train_labels), (images, _) = planted
    with torch.no_grad():
        bank = model.encode(train_images).numpy()
    reference = LatentSplit(bank, train_labels.numpy(), [f"train_{i}" for i in range(len(bank))])
    queries = torch.cat([images[:4], train_images[:1]])
    found = latent_neighbours(reference, queries, k=3, model=model)
    with torch.no_grad():
        z = model.encode(queries).numpy()
        decided = model(queries).argmax(1).numpy()
    assert (found.query_class == decided).all()
    distances = np.linalg.norm(z[:, None] - bank[None], axis=2)
    for row in range(len(queries)):
        for kind, wanted in (("same", decided[row]), ("other", 1 - decided[row])):
            indices, found_distances = getattr(found, kind)[row], getattr(found, f"{kind}_distance")[row]
            assert (reference.targets[indices] == wanted).all()
            expected = np.sort(distances[row][reference.targets == wanted])[:3]
            np.testing.assert_allclose(found_distances, expected, rtol=1e-4, atol=1e-4)
    # A training image finds itself first, at distance 0 (it is classified as its label).
    assert decided[-1] == train_labels[0] and found.same[-1, 0] == 0 and found.same_distance[-1, 0] < 1e-4
    position = decision_axis(model).position(torch.from_numpy(bank)).numpy()
    for c, toward in ((1, position), (0, -position)):
        assert (reference.targets[found.typical[c]] == c).all()
        np.testing.assert_allclose(np.sort(toward[reference.targets == c])[::-1][:3], toward[found.typical[c]],
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="per class"):
        latent_neighbours(reference, queries, k=61, model=model)


def test_with_skip_connections_each_image_is_decoded_with_its_own_skips():
    model = _tiny_xaaenet(skip_dropout=0.5).eval()
    images = torch.stack([torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)),
                          torch.zeros(3, SIZE, SIZE), torch.ones(3, SIZE, SIZE)])
    walk = traverse_decision_axis(model, images, steps=3)
    assert walk.uses_skips
    with torch.no_grad():
        z, skips = model.encode_with_skips(images)
        own = model.decode(z, skips)
        swapped = model.decode(z, [s.flip(0) for s in skips])
    # Each image's own skips, not another's (the untrained decoder's output hardly depends on them, but it does).
    assert (walk.reconstruction - own).abs().max() < 1e-6
    assert (walk.reconstruction - swapped).abs().max() > 1e-4
    means = traverse_class_means(model, images, [0, 1, 1], steps=3)
    assert means.uses_skips and means.decoded.shape == (2, 3, 3, SIZE, SIZE)
    assert latent_counterfactual(model, images).uses_skips


def test_modes_are_restored_and_no_gradient_is_stored():
    model = _tiny_xaaenet()
    model.train()
    images = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    traverse_decision_axis(model, images, steps=3)
    latent_counterfactual(model, images, method="gradient", max_distance=1.0)
    assert model.training and model.decoder.training
    assert all(p.grad is None for p in model.parameters())


def test_a_classifier_head_without_a_linear_axis():
    model = _tiny_xaaenet().eval()
    model.linear = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    images = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="linear classifier"):
        traverse_decision_axis(model, images)
    with pytest.raises(TypeError, match="method='gradient'"):
        latent_counterfactual(model, images)
    found = latent_counterfactual(model, images, method="gradient", prior_weight=0.0, margin=0.5)
    assert found.reached.all()
    with torch.no_grad():
        lead = model.linear(found.z_counterfactual).gather(1, found.target_class[:, None])[:, 0] - \
            model.linear(found.z_counterfactual).gather(1, found.original_class[:, None])[:, 0]
    assert (lead >= 0.5).all()
    with pytest.raises(ValueError, match="method"):
        latent_counterfactual(model, images, method="nearest")


def test_figures_show_the_strips_the_counterfactuals_and_the_neighbours(planted, tmp_path):
    from tell_me_why.xaaenet.latent_figures import (
        save_axis_traversal_figure,
        save_counterfactual_figure,
        save_neighbour_figure,
    )

    model, (train_images, train_labels), (images, labels) = planted
    shown = images[[0, 40]]
    means = traverse_class_means(model, images, labels, steps=5)
    path = save_axis_traversal_figure(means, ["mean of absent", "mean of present"], CLASSES, tmp_path / "walk.png")
    walk = read_png(path, (1.25 * 6 + 1.6, 2.6 * 2 + 1.4), smallest=0.5)
    assert colours(walk) > 500
    counterfactuals = latent_counterfactual(model, shown)
    path = save_counterfactual_figure(counterfactuals, ["a", "b"], CLASSES, tmp_path / "cf.png")
    assert colours(read_png(path, (9.2, 2.45 * 2 + 1.0), smallest=0.5)) > 500
    with torch.no_grad():
        bank = model.encode(train_images).numpy()
    neighbours = latent_neighbours(LatentSplit(bank, train_labels.numpy(), list(range(len(bank)))), shown, k=2,
                                   model=model)
    path = save_neighbour_figure(shown, neighbours, train_images, ["a", "b"], CLASSES, tmp_path / "nb.png")
    assert colours(read_png(path, (1.45 * 5 + 0.4, 1.8 * 3 + 1.0), smallest=0.5)) > 500
    with pytest.raises(ValueError, match="row labels"):
        save_axis_traversal_figure(means, ["one"], CLASSES, tmp_path / "x.png")


@pytest.mark.slow
def test_a_run_explains_its_latent_space_in_the_report_and_with_tmw_explain(finished_run, tmp_path, capsys):
    from tell_me_why.app.cli import main

    data, out = finished_run
    latent = out / "explanations" / "latent"
    found = json.loads((latent / "latent.json").read_text())
    validation = pd.read_csv(latent / "counterfactuals.csv")
    assert found["images"] == len(validation) and 0 <= found["flip_rate"] <= 1
    assert found["flip_rate"] == pytest.approx(validation["flipped"].mean())
    assert found["reconstruction_ssim"] == pytest.approx(validation["reconstruction_ssim"].mean(), rel=1e-5)
    for name in ("traversal_class_means.png", "traversal_images.png", "counterfactuals.png", "neighbours.png"):
        assert (latent / name).is_file(), name
    report = (out / "report.html").read_text()
    section = report.split('<section id="axis-images">')[1].split("</section>")[0]
    assert "What the axis looks like" in section and f"{found['flip_rate']:.0%}" in section
    assert set(found["flip_rate_toward"]) == {"dark", "light"}
    assert f"{found['reconstruction_ssim']:.2f}" in section and section.count("data:image/png;base64,") == 3

    # tmw explain --methods counterfactual: for images of your own (--save: nothing written into the run) ...
    saved = tmp_path / "mine"
    assert main(["explain", "--out", str(out), "--images", str(data / "dark"), "--methods", "counterfactual",
                 "--save", str(saved)]) == 0
    own = pd.read_csv(saved / "counterfactuals.csv")
    assert len(own) == 10 and set(own["true"]) == {"dark"} and (saved / "counterfactuals.png").is_file()
    # ... and again for the run's validation images, into the run (a copy: the session's run stays as it is).
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "explanations" / "latent" / "latent.json").unlink()
    assert main(["explain", "--out", str(copy), "--methods", "counterfactual"]) == 0
    assert json.loads((copy / "explanations" / "latent" / "latent.json").read_text())["images"] == found["images"]
    capsys.readouterr()
    assert main(["explain", "--out", str(out), "--images", str(data / "dark"), "--model", str(saved / "x.pt"),
                 "--methods", "counterfactual"]) == 2
    assert "has no decoder" in capsys.readouterr().err
    # Other methods need images: said, not silently skipped.
    assert main(["explain", "--out", str(copy), "--methods", "counterfactual,gradcam"]) == 2
    assert "--methods gradcam explain images given with --images" in capsys.readouterr().err
