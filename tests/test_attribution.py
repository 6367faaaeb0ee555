"""Attribution methods: agreement with captum, exactness where the answer is known, no side effects, and the
planted-evidence task (the explanation must find the square; a randomised model must change it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from conftest import colours, read_png
from torch import nn

from tell_me_why.attribution import (
    GradCAM,
    GradCAMPlusPlus,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    default_cam_layer,
    explain,
    plot_method_comparison,
)
from tell_me_why.metrics import deletion_insertion, model_randomisation, pointing_game


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 64, 64)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0  # every image spans [0, 1] exactly (SmoothGrad's noise scale)
    return x


def _non_homogeneous_model():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Softplus(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, 3))
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


# -- agreement with captum ----------------------------------------------------------------------------------


def test_gradients_are_identical_to_captum(resnet, images):
    captum = pytest.importorskip("captum.attr")
    targets = [1, 2, 3]
    assert torch.equal(Saliency(resnet).attribute(images, target=targets),
                       captum.Saliency(resnet).attribute(images, target=targets, abs=False))
    assert torch.equal(InputXGradient(resnet).attribute(images, target=2),
                       captum.InputXGradient(resnet).attribute(images, target=2))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_match_captum_with_the_same_nodes(resnet, images, method):
    captum = pytest.importorskip("captum.attr")
    ours = IntegratedGradients(resnet).attribute(images, target=1, n_steps=16, method=method, internal_batch_size=10)
    theirs = captum.IntegratedGradients(resnet).attribute(images, target=1, n_steps=16, method=method)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-5


def test_gradcam_raw_map_matches_captum(resnet, images):
    captum = pytest.importorskip("captum.attr")
    assert default_cam_layer(resnet, images) is resnet.layer2  # 8 x 8 at 64 px (layer4 would be 2 x 2)
    for relu in (False, True):
        ours = GradCAM(resnet).attribute(images, target=2, relu=relu)
        theirs = captum.LayerGradCam(resnet, resnet.layer2).attribute(images, target=2, relu_attributions=relu)
        assert (ours - theirs).abs().max().item() < 1e-6


def test_gradient_shap_and_smoothgrad_equal_captum_in_expectation():
    """Different random draws of the same estimator: with 4,000 samples each (a small model, 16x16 inputs) the
    two estimates agree to 10 % in relative L2 norm (the Monte Carlo error alone is about 5 %)."""
    captum = pytest.importorskip("captum.attr")
    model = _non_homogeneous_model()
    x = torch.rand(1, 3, 16, 16)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    baselines = torch.rand(4, 3, 16, 16)
    ours = GradientShap(model).attribute(x, target=1, baselines=baselines, n_samples=4000, seed=5)
    torch.manual_seed(6)
    theirs = captum.GradientShap(model).attribute(x, target=1, baselines=baselines, n_samples=4000)
    assert ((ours - theirs).norm() / theirs.norm()).item() < 0.1
    ours = SmoothGrad(model).attribute(x, target=1, n_samples=4000, stdev_spread=0.3, seed=5)
    torch.manual_seed(6)
    theirs = captum.NoiseTunnel(captum.Saliency(model)).attribute(
        x, target=1, nt_samples=4000, stdevs=0.3, nt_type="smoothgrad", abs=False)
    assert ((ours - theirs).norm() / theirs.norm()).item() < 0.1


# -- exactness ----------------------------------------------------------------------------------------------


class _SumOfSquares(nn.Module):
    def forward(self, x):
        return (x**2).flatten(1).sum(1, keepdim=True).repeat(1, 2)


def test_trapezoid_is_exact_for_a_linear_integrand():
    """For F = sum(x^2), IG from 0 is exactly x^2; the trapezoid rule integrates the linear path gradient
    exactly, a left Riemann sum does not."""
    x = torch.rand(2, 1, 4, 4)
    trapezoid = IntegratedGradients(_SumOfSquares()).attribute(x, target=0, n_steps=5, method="riemann_trapezoid")
    torch.testing.assert_close(trapezoid, x**2)
    left = IntegratedGradients(_SumOfSquares()).attribute(x, target=0, n_steps=5, method="riemann_left")
    torch.testing.assert_close(left, x**2 * 4 / 5)


def test_completeness():
    model = _non_homogeneous_model()
    x = torch.rand(2, 3, 16, 16)
    _, delta = IntegratedGradients(model).attribute(x, target=1, n_steps=300, return_convergence_delta=True)
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    assert (delta.abs() / change.abs()).max().item() < 2e-3
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    _, delta = IntegratedGradients(linear).attribute(x, target=0, n_steps=2, return_convergence_delta=True)
    assert delta.abs().max().item() < 1e-5


# -- batching, chunks, side effects, targets -------------------------------------------------------------------


def test_batch_and_chunk_independence(resnet, images):
    for method in (Saliency(resnet), GradCAM(resnet)):
        together = method.attribute(images, target=1)
        alone = torch.cat([method.attribute(images[i : i + 1], target=1) for i in range(3)])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    ig = IntegratedGradients(resnet)
    torch.testing.assert_close(ig.attribute(images, target=1, n_steps=8, internal_batch_size=5),
                               ig.attribute(images, target=1, n_steps=8), atol=1e-6, rtol=1e-5)
    shap = GradientShap(resnet)
    torch.testing.assert_close(shap.attribute(images, target=1, n_samples=6, internal_batch_size=4),
                               shap.attribute(images, target=1, n_samples=6, internal_batch_size=None),
                               atol=1e-6, rtol=1e-5)


def test_no_side_effects_even_after_an_error():
    model = torchvision.models.resnet18(num_classes=3)
    model.train()
    sentinel = {name: torch.full_like(p, 7.0) for name, p in model.named_parameters()}
    for name, parameter in model.named_parameters():
        parameter.grad = sentinel[name].clone()
    stats = {name: b.clone() for name, b in model.named_buffers()}
    x = torch.rand(2, 3, 64, 64)
    for method in (Saliency(model), IntegratedGradients(model), GradCAM(model), GradCAMPlusPlus(model),
                   GradientShap(model), SmoothGrad(model)):
        kwargs = {"n_steps": 4} if isinstance(method, IntegratedGradients) else {}
        kwargs = {"n_samples": 2} if isinstance(method, (GradientShap, SmoothGrad)) else kwargs
        method.attribute(x, target=1, **kwargs)
        with pytest.raises(ValueError, match="targets"):
            method.attribute(x, target=[0, 1, 2], **kwargs)
    assert model.training and all(m.training for m in model.modules())
    assert not x.requires_grad
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, sentinel[name]), name
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, stats[name]), name
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_inplace_relus_and_reused_modules_are_safe(resnet, images):
    """torchvision's ResNet reuses one in-place ReLU per block; the map equals that of a copy without in-place."""
    import copy

    plain = copy.deepcopy(resnet)
    for module in plain.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for cls in (GradCAM, GradCAMPlusPlus):
        torch.testing.assert_close(cls(resnet).attribute(images, target=1), cls(plain).attribute(images, target=1))


def test_targets_single_logit_heads_and_errors(images):
    torch.manual_seed(3)
    single = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 1))
    with torch.no_grad():
        logit = single(images)[:, 0]
    gradient = Saliency(single).attribute(images)  # target: the predicted class of each image
    expected_sign = torch.where(logit > 0, 1.0, -1.0)
    weight = single[1].weight.view(1, 3, 64, 64)
    torch.testing.assert_close(gradient, expected_sign.view(-1, 1, 1, 1) * weight.expand_as(gradient))
    for method in (Saliency, InputXGradient, IntegratedGradients, SmoothGrad, GradientShap):
        with pytest.raises(ValueError, match="2 targets for 3 images"):
            method(single).attribute(images, target=[0, 1])
        with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
            method(single).attribute(images, target=2)
    with pytest.raises(ValueError, match="Unknown explanation method"):
        explain(single, images, method="lime")


# -- planted evidence ---------------------------------------------------------------------------------------


def _planted_maps(model, images):
    return {
        "gradcam": explain(model, images, "gradcam", target=1),
        "integrated_gradients": explain(model, images, "integrated_gradients", target=1, n_steps=32,
                                        internal_batch_size=256),
        "smoothgrad": explain(model, images, "smoothgrad", target=1, n_samples=16, stdev_spread=0.1),
    }


def test_methods_find_the_planted_square_and_beat_a_random_ranking(planted_cnn):
    model, test, positives = planted_cnn
    images = test.images[positives]
    squares = np.stack([test.square_mask(i) for i in positives])
    random_map = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    random_auc = deletion_insertion(model, images, random_map, target=1, steps=20).deletion_auc.mean()
    for name, maps in _planted_maps(model, images).items():
        hits = pointing_game(maps.abs() if name != "gradcam" else maps, squares)
        assert hits.mean() >= 0.9, name
        curves = deletion_insertion(model, images, maps.abs(), target=1, steps=20)
        assert curves.deletion_auc.mean() < random_auc - 0.2, name
        assert curves.insertion_auc.mean() > curves.deletion_auc.mean(), name
        assert curves.fractions[0] == 0.0 and curves.fractions[-1] == 1.0


def test_cascading_randomisation_changes_the_maps(planted_cnn, tmp_path):
    model, test, positives = planted_cnn
    images = test.images[positives[:4]]

    def gradcam(m, x, targets):
        return GradCAM(m, layer=m.features[-1]).attribute(x, target=targets)

    steps = model_randomisation(model, gradcam, images, cascading=True)
    assert [s.layer for s in steps] == ["head", "features.6", "features.3", "features.0"]  # output first
    assert steps[-1].spearman < 0.5 and steps[-1].spearman < steps[0].spearman + 1e-9
    model.features[0].requires_grad_(False)  # frozen layers are part of the function explained
    try:
        independent = model_randomisation(model, gradcam, images, cascading=False)
        assert [s.layer for s in independent] == [s.layer for s in steps]
        assert not any(p.requires_grad for p in model.features[0].parameters())
    finally:
        model.features[0].requires_grad_(True)
    figure = plot_method_comparison(images[0], {k: v[:1] for k, v in _planted_maps(model, images[:1]).items()},
                                    save_path=tmp_path / "compare.png")
    # The image, three overlays and their colour bars.
    assert (tmp_path / "compare.png").stat().st_size > 5000 and len(figure.axes) == 4 + 3
    # 12.8 x 3.4 inches at 150 dpi, margins trimmed by the tight bounding box: measured 1905 x 515 px.
    pixels = read_png(tmp_path / "compare.png", (12.8, 3.4), smallest=0.8)
    width = pixels.shape[1]
    assert colours(pixels) > 200  # measured 631
    # Four equal panels: the grey image, then one heat overlay per method (its colour is saturated, the grey
    # image's is not). Measured saturated pixels: 0, then 1624, 539 and 1029.
    saturated = (pixels.max(-1) - pixels.min(-1)) > 60
    panels = [saturated[:, k * width // 4 : (k + 1) * width // 4].sum() for k in range(4)]
    assert panels[0] == 0 and min(panels[1:]) > 200, panels


def _colour_task(n, seed):
    """32x32 RGB noise with one 8x8 blob: red in class 1, blue in class 0."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (n, 3, 32, 32)).astype(np.float32)
    labels = np.arange(n) % 2
    for i in range(n):
        top, left = rng.integers(0, 24, 2)
        images[i, 0 if labels[i] else 2, top : top + 8, left : left + 8] = 0.9
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_tcav_finds_a_planted_colour_concept_and_not_a_random_one():
    from tell_me_why.attribution import TCAV
    from tell_me_why.testing import SmallCNN

    images, labels = _colour_task(400, seed=0)
    torch.manual_seed(0)
    model = SmallCNN(channels=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for start in range(0, 400, 32):
            loss = nn.functional.cross_entropy(model(images[start : start + 32]), labels[start : start + 32])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    test_images, test_labels = _colour_task(60, seed=1)
    assert (model(test_images).argmax(1) == test_labels).float().mean() > 0.95
    rng = np.random.default_rng(2)
    red = torch.zeros(30, 3, 32, 32)
    red[:, 0] = torch.from_numpy(rng.uniform(0.7, 1.0, (30, 32, 32)).astype(np.float32))
    random_images = torch.from_numpy(rng.uniform(0.0, 1.0, (200, 3, 32, 32)).astype(np.float32))
    tcav = TCAV(model, model.features[-1])
    class_one = test_images[test_labels == 1]
    result = tcav.test(class_one, red, random_images, target=1, runs=8)
    assert result.score > 0.8 and result.significant
    assert 0.3 < result.random_scores.mean() < 0.7
    other = tcav.test(class_one, random_images[:30], random_images[30:], target=1, runs=8)
    assert not other.significant


def test_attention_rollout_multiplies_later_layers_on_the_left():
    from tell_me_why.attribution import AttentionRollout, attention_maps

    torch.manual_seed(4)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=2).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = vit(x)
    maps = attention_maps(vit, x)
    with torch.no_grad():
        assert torch.equal(vit(x), before)  # reading the weights does not change the model's output
    assert len(maps) == 3 and maps[0].shape == (2, 2, 17, 17)
    layers = [0.5 * a.mean(1) + 0.5 * torch.eye(17) for a in maps]
    layers = [layer / layer.sum(-1, keepdim=True) for layer in layers]
    expected = layers[2] @ layers[1] @ layers[0]
    rollout = AttentionRollout(vit)
    torch.testing.assert_close(rollout.rollout(maps), expected)
    grid = rollout.attribute(x)
    cls_row = expected[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(grid, cls_row / cls_row.flatten(1).max(1).values.view(-1, 1, 1))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in vit.modules())


def test_shapley_sampling_is_efficient_and_exact_on_an_additive_model():
    from tell_me_why.attribution import ShapleyValueSampling, patch_groups

    torch.manual_seed(5)
    additive = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    x = torch.rand(2, 3, 16, 16)
    values = ShapleyValueSampling(additive).attribute(x, target=1, groups=8, n_permutations=3)
    groups = patch_groups(16, 16, 8)
    weight = additive[1].weight[1].view(3, 16, 16)
    for image, value in zip(x, values):
        for g in range(4):
            inside = groups == g
            expected = (weight * image)[:, inside].sum()  # an additive model: each group's own contribution
            assert torch.allclose(value[0][inside], expected.expand(int(inside.sum())), atol=1e-4)
    model = _non_homogeneous_model()
    values = ShapleyValueSampling(model).attribute(x, target=1, groups="superpixels", n_permutations=2)
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    labels = [torch.unique(v[0]) for v in values]  # one value per superpixel, spread over its pixels
    assert all(len(v) > 1 for v in labels)
    from tell_me_why.attribution.shapley import superpixel_groups

    for image, value, delta in zip(x, values, change):
        group = superpixel_groups(image)
        per_group = torch.stack([value[0][group == g][0] for g in torch.unique(group)])
        assert per_group.sum().item() == pytest.approx(delta.item(), abs=1e-4)  # efficiency


def test_default_shapley_grid_does_not_grow_with_the_image_and_bad_groups_are_refused():
    from tell_me_why.attribution import ShapleyValueSampling, grid_groups

    for size in (32, 96, 100):
        labels = grid_groups(size, size)
        assert len(torch.unique(labels)) == 64 and labels.shape == (size, size)
    assert len(torch.unique(grid_groups(30, 90, cells=3))) == 9
    calls = []
    model = nn.Sequential(nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 1, 40, 40))
    model.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    ShapleyValueSampling(model).attribute(torch.rand(1, 1, 40, 40), target=1, n_permutations=2, batch_size=1000)
    assert sum(calls) == 1 + 2 * 65  # prediction, then 64 groups + the empty coalition per order
    explainer = ShapleyValueSampling(model)
    with pytest.raises(ValueError, match="groups='patches'"):
        explainer.attribute(torch.rand(1, 1, 40, 40), target=1, groups="patches")
    with pytest.raises(ValueError, match=r"label map has shape \(8, 8\); the images are \(40, 40\)"):
        explainer.attribute(torch.rand(1, 1, 40, 40), target=1, groups=torch.zeros(8, 8))


def test_pointing_game_tolerance_counts_peaks_near_the_evidence():
    evidence = np.zeros((1, 10, 10), dtype=bool)
    evidence[0, 4:6, 4:6] = True
    near = torch.zeros(1, 1, 10, 10)
    near[0, 0, 2, 7] = 1.0  # two rows above and two columns right of the box
    assert not pointing_game(near, evidence)[0]
    assert not pointing_game(near, evidence, tolerance=1)[0]
    assert pointing_game(near, evidence, tolerance=2)[0]
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(near, evidence, tolerance=-1)


def test_activation_maximisation_draws_what_the_class_needs_and_deepdream_amplifies(planted_cnn):
    from tell_me_why.attribution import ActivationMaximisation, DeepDream

    model, test, positives = planted_cnn
    before = {name: p.clone() for name, p in model.named_parameters()}
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    image, history = ActivationMaximisation(model, model.head, unit=1).generate(shape=(1, 1, 64, 64), steps=60,
                                                                                lr=0.1)
    with torch.no_grad():
        probability = torch.softmax(model(image), 1)[0, 1].item()
    assert history[-1] > history[0] and probability > 0.9
    assert 0.0 <= image.min() and image.max() <= 1.0
    negative = test.images[[i for i in range(len(test.labels)) if test.labels[i] == 0][:1]]
    dreamed = DeepDream(model, model.features[-1]).dream(negative, octaves=2, steps=5)
    with torch.no_grad():
        features = model.features
        assert features(dreamed).pow(2).mean() > features(negative).pow(2).mean()
    assert dreamed.shape == negative.shape and not torch.equal(dreamed, negative)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])
        assert (p.grad is None and grads[name] is None) or torch.equal(p.grad, grads[name])


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "efficientnet_b0"])
@pytest.mark.parametrize("size", [32, 48, 64])
def test_the_default_cam_layer_is_the_deepest_with_a_map_of_at_least_7x7(arch, size):
    model = torchvision.models.get_model(arch, weights=None, num_classes=2).eval()
    x = torch.rand(1, 3, size, size)
    layer = default_cam_layer(model, x)
    sizes = []
    handle = layer.register_forward_hook(lambda module, args, output: sizes.append(tuple(output.shape[-2:])))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert min(sizes[-1]) >= 7, (arch, size, sizes)
    assert GradCAM(model).attribute(x, target=0).shape[-2:] == sizes[-1]
    deeper = dict(model.named_modules())["layer4" if arch.startswith("resnet") else "features.8"]
    assert layer is not deeper  # the last stage's 1-2 px map is not used at these sizes


def test_without_a_7x7_map_the_largest_map_is_used_and_the_reason_given():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                          nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(2, 1, 12, 12)
    model(x)
    with pytest.warns(UserWarning, match=r"No layer of this model has a map of at least 7 x 7 at 12 x 12 px: "
                                         r"Grad-CAM uses 1, whose 6 x 6 map"):
        assert default_cam_layer(model, x) is model[1]  # the deepest of the largest maps


def test_gradcam_on_xaaenet_uses_the_encoder_not_the_decoder(small_model):
    """xAAEnet's decoder runs after its encoder but does not feed the logits: the default CAM layer must be the
    encoder's last feature map (the decoder's maps are larger), and IG's attributions must add up to the change
    of the target logit."""
    model = small_model().eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(100))
    layer = default_cam_layer(model, x)
    assert layer is model.encoder[5]  # resnet18's layer2: the deepest map of at least 7 x 7 at 64 px
    cam = GradCAM(model).attribute(x, target=1, relu=False)
    torch.testing.assert_close(cam, GradCAM(model, layer=model.encoder[5]).attribute(x, target=1, relu=False))
    assert cam.shape == (2, 1, 8, 8)  # stride 8
    assert cam.flatten(1).std(1).min() > 0  # a map with spatial structure, not a constant
    attributions, delta = IntegratedGradients(model).attribute(x, target=1, n_steps=128,
                                                               return_convergence_delta=True)
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(delta, attributions.flatten(1).sum(1) - change, atol=1e-4, rtol=0)
    # Measured |delta| / |change|: 0.072 and 0.048 at 128 steps (8 steps: 2.6 and 1.2; one step: 14 and 7.5).
    # The attributions' absolute sum is ~60 against a change of ~0.1: completeness holds through cancellation.
    assert (delta.abs() / change.abs()).max() < 0.2


def _straightforward_rollout(maps, tokens, discard_half):
    """Max over heads, optionally zero the attentions below each layer's median (never the CLS column),
    0.5 A + 0.5 I with rows renormalised, later layers on the left, CLS row over the patches, max 1."""
    identity = torch.eye(tokens)
    result = identity
    for weights in maps:
        fused = weights.amax(1)
        if discard_half:
            flat = fused.flatten(1)  # an odd number of entries (197^2): the median is one of them
            median = flat.kthvalue((flat.shape[1] + 1) // 2, dim=1).values.view(-1, 1, 1)
            fused = torch.where((fused >= median) | (torch.arange(tokens) == 0), fused, torch.zeros(()))
        layer = 0.5 * fused + 0.5 * identity
        result = (layer / layer.sum(-1, keepdim=True)) @ result
    cls_row = result[:, 0, 1:].reshape(len(result), 14, 14)
    return cls_row / cls_row.flatten(1).amax(1).view(-1, 1, 1)


def test_rollout_on_torchvision_vit_b_16():
    from tell_me_why.attribution import AttentionRollout, attention_maps

    torch.manual_seed(6)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    x = torch.rand(1, 3, 224, 224)
    grid = AttentionRollout(vit, head_fusion="max", discard_ratio=0.5).attribute(x)
    assert grid.shape == (1, 14, 14) and grid.max().item() == pytest.approx(1.0) and grid.min() >= 0
    maps = attention_maps(vit, x)
    assert len(maps) == 12 and maps[0].shape == (1, 12, 197, 197)
    torch.testing.assert_close(grid, _straightforward_rollout(maps, 197, discard_half=True))
    # The discarding matters (measured: up to 0.55 apart without it), so the comparison above checks it.
    assert (grid - _straightforward_rollout(maps, 197, discard_half=False)).abs().max() > 0.1


def test_timm_models_default_cam_layer_and_vit_attention():
    timm = pytest.importorskip("timm")
    from tell_me_why.attribution import AttentionRollout, attention_maps

    torch.manual_seed(7)
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=2).eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(GradCAM(cnn).attribute(x, target=1),
                               GradCAM(cnn, layer=cnn.layer2).attribute(x, target=1))

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=2).eval()
    x = torch.rand(2, 3, 32, 32)
    fused_before = [block.attn.fused_attn for block in vit.blocks]
    with torch.no_grad():
        before = vit(x)
    first_input = []
    handle = vit.blocks[0].attn.register_forward_hook(lambda m, args, out: first_input.append(args[0]))
    maps = attention_maps(vit, x)
    handle.remove()
    assert len(maps) == len(vit.blocks) and maps[0].shape == (2, 3, 17, 17)
    # The first layer's weights by hand: softmax(q k^T / sqrt(d)) from the block's own projections.
    attn = vit.blocks[0].attn
    q, k, _ = attn.qkv(first_input[0]).reshape(2, 17, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    expected = torch.softmax(attn.q_norm(q) @ attn.k_norm(k).transpose(-2, -1) * attn.scale, -1)
    torch.testing.assert_close(maps[0], expected.detach())
    assert [block.attn.fused_attn for block in vit.blocks] == fused_before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in vit.modules())
    with torch.no_grad():
        torch.testing.assert_close(vit(x), before)
    grid = AttentionRollout(vit).attribute(x)
    assert grid.shape == (2, 4, 4) and grid.flatten(1).max(1).values.allclose(torch.ones(2))
