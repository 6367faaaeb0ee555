"""Device correctness without a GPU: every explanation runs where the model is and keeps its tensors there.

A hidden CPU tensor (``torch.zeros(shape)`` without ``device=``, ``.numpy()`` without ``.cpu()``, a CPU
``torch.Generator`` drawing device tensors) only fails on an accelerator, which the machines running these tests
usually lack. :class:`DeviceProxy` stands in for one: a ``TorchFunctionMode`` that sees every torch call and keeps
a tag on the tensors that are "on the device" (the model's parameters and buffers, the inputs given to it, tensors
made with ``device=<a device tensor's .device>`` and everything computed from a tagged tensor). Tagged tensors say
they are on ``PROXY`` (the ``meta`` device type, which no real tensor here uses) while their data stay on the CPU,
so every method computes real numbers, and the proxy raises where CUDA would:

- an op that mixes a tagged tensor with an untagged one of one or more dimensions (CUDA, too, accepts 0-dim CPU
  tensors as scalars and CPU index tensors in indexing);
- ``.numpy()`` or ``np.asarray`` of a tagged tensor;
- a random op on the device with a CPU generator, or on the CPU with a device generator (``torch.Generator`` is a
  subclass while the proxy is on, so that ``torch.Generator(device=x.device)`` works).

``.to(x.device)``, ``.to(x)``, ``.cpu()``, ``copy_`` and ``torch.autograd.grad`` move tags as real devices move
data. The same tests run on a real GPU (``cuda``) when one is present, and are skipped (and counted) otherwise.
"""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot
import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

import tell_me_why.causal  # noqa: F401  (registers "causal" in the method registry)
from tell_me_why.attribution import (
    TCAV,
    ActivationMaximisation,
    DeepDream,
    Saliency,
    available_methods,
    explain,
    plot_method_comparison,
)
from tell_me_why.attribution.registry import METHODS
from tell_me_why.causal import CausalExplainer
from tell_me_why.causal.occlusion import Occluder, mask_fill
from tell_me_why.causal.predictor import Predictor
from tell_me_why.metrics import (
    against_chance,
    deletion_insertion,
    model_randomisation,
    pointing_game,
    random_ordering_gaps,
    responsibility_entropy,
    robustness,
)
from tell_me_why.xaaenet import EncoderWithAAEBlocks
from tell_me_why.xaaenet.blocks import DynamicUnetSkipDropout, FeatureMapProbe
from tell_me_why.xaaenet.latent_explanations import (
    decision_axis,
    latent_counterfactual,
    latent_neighbours,
    traverse_class_means,
    traverse_decision_axis,
)
from tell_me_why.xaaenet.latents import LatentSplit

# -- the proxy ------------------------------------------------------------------------------------------------------

PROXY = torch.device("meta")
_TAG = "_tmw_on_proxy_device"
_DEVICE_PROPERTY = torch._C.TensorBase.device
_Tensor = torch.Tensor
# Calls that only read the other tensor's shape: their result lies where ``self`` does, whatever the other's device.
_SAME_AS_SELF = {_Tensor.expand_as, _Tensor.view_as, _Tensor.reshape_as}


def on_proxy(value) -> bool:
    return isinstance(value, torch.Tensor) and getattr(value, _TAG, False)


def _is_proxy_device(device) -> bool:
    return device is not None and torch.device(device).type == PROXY.type


class _ProxyGenerator(torch.Generator):
    """``torch.Generator`` while the proxy is on: ``device=PROXY`` makes a CPU generator that says it is there."""

    def __new__(cls, device=None):
        on = _is_proxy_device(device)
        generator = super().__new__(cls, device="cpu" if on or device is None else device)
        generator.on_proxy = on
        return generator

    def __init__(self, device=None) -> None:
        pass

    @property
    def device(self) -> torch.device:
        return PROXY if self.on_proxy else super().device


class DeviceProxy(TorchFunctionMode):
    """A stand-in accelerator on the CPU (see the module's docstring). ``with DeviceProxy() as proxy:`` then
    ``proxy.model(m)`` and ``proxy.tensor(x)`` put a model and inputs "on the device"."""

    device = PROXY

    def __init__(self) -> None:
        super().__init__()
        self._tagged: list[torch.Tensor] = []
        self._generator = None

    def model(self, model: nn.Module) -> nn.Module:
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            setattr(tensor, _TAG, True)
            self._tagged.append(tensor)
        return model

    def tensor(self, value: torch.Tensor) -> torch.Tensor:
        moved = torch.Tensor.clone(value.detach())
        setattr(moved, _TAG, True)
        return moved

    @staticmethod
    def is_on(value: torch.Tensor) -> bool:
        return on_proxy(value)

    def __enter__(self):
        self._generator, torch.Generator = torch.Generator, _ProxyGenerator
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            torch.Generator = self._generator
            for tensor in self._tagged:
                delattr(tensor, _TAG)
            self._tagged.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if getattr(func, "__self__", None) is _DEVICE_PROPERTY:  # tensor.device
            return PROXY if on_proxy(args[0]) else func(*args, **kwargs)
        if func in (_Tensor.numpy, _Tensor.__array__) and on_proxy(args[0]):
            raise TypeError("can't convert a proxy-device tensor to numpy (as for cuda): use Tensor.cpu() first.")
        if func is _Tensor.to:
            return self._move(args, kwargs)
        if func is _Tensor.cpu:
            return _retag(func(*args, **kwargs), args[:1], False)
        if func is torch.autograd.grad:  # each gradient lies where its input does
            out = func(*args, **kwargs)
            inputs = kwargs.get("inputs", args[1] if len(args) > 1 else None)
            inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
            for gradient, source in zip(out, inputs):
                if gradient is not None and on_proxy(source):
                    setattr(gradient, _TAG, True)
            return out
        name = getattr(func, "__name__", repr(func))
        explicit = kwargs.get("device") is not None
        wanted = explicit and _is_proxy_device(kwargs["device"])
        if wanted:
            kwargs["device"] = "cpu"
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in (_Tensor.__getitem__, _Tensor.__setitem__):  # CPU indices into a device tensor are fine
            indices = [t for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor)]
            if not on_proxy(args[0]) and any(on_proxy(t) for t in indices):
                raise RuntimeError(f"{name}: indices on the proxy device index a CPU tensor.")
            wanted = on_proxy(args[0])
        elif func is _Tensor.copy_:
            wanted = on_proxy(args[0])
        elif func in _SAME_AS_SELF or (name.startswith("new_") and not explicit):
            wanted = on_proxy(args[0])
        elif func is _Tensor.type_as:
            wanted = on_proxy(args[1])
        else:
            mixed = [t for t in tensors if not on_proxy(t) and t.ndim > 0]
            if any(on_proxy(t) for t in tensors) and mixed:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                                   f"{PROXY} (the device proxy) and cpu! ({name}: a CPU tensor of shape "
                                   f"{tuple(mixed[0].shape)})")
            if not explicit:
                wanted = any(on_proxy(t) for t in tensors)
            generator = kwargs.get("generator")
            if generator is not None and bool(getattr(generator, "on_proxy", False)) != wanted:
                found = "the device proxy" if getattr(generator, "on_proxy", False) else "cpu"
                raise RuntimeError(f"{name}: expected a generator on {'the device proxy' if wanted else 'cpu'}, "
                                   f"found one on {found}.")
        return _retag(func(*args, **kwargs), tensors, wanted)

    @staticmethod
    def _move(args, kwargs):
        source, rest = args[0], list(args[1:])
        wanted = on_proxy(source)
        for i, argument in enumerate(rest):
            if isinstance(argument, torch.Tensor):
                wanted = on_proxy(argument)
            elif isinstance(argument, (str, torch.device)):
                wanted = _is_proxy_device(argument)
                rest[i] = "cpu" if wanted else argument
        if kwargs.get("device") is not None:
            wanted = _is_proxy_device(kwargs["device"])
            kwargs["device"] = "cpu" if wanted else kwargs["device"]
        return _retag(_Tensor.to(source, *rest, **kwargs), [source], wanted)


def _retag(out, inputs, wanted: bool):
    """Tag (or not) every tensor of ``out``; an input returned as it is (a move to where it already is, in CPU
    terms) is copied first, as a real move between devices copies."""
    given = {id(t) for t in inputs}

    def tag(value):
        if not isinstance(value, torch.Tensor):
            return value
        if id(value) in given and on_proxy(value) != wanted:
            value = _Tensor.clone(value)
        if wanted:
            setattr(value, _TAG, True)
        return value

    return tree_map(tag, out)


class RealDevice:
    """The same interface on a real accelerator."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def tensor(self, value: torch.Tensor) -> torch.Tensor:
        return value.detach().to(self.device)

    def is_on(self, value: torch.Tensor) -> bool:
        return isinstance(value, torch.Tensor) and value.device.type == self.device.type

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the proxy tests stand in")


@pytest.fixture(params=["proxy", pytest.param("cuda", marks=needs_cuda)])
def place(request):
    return DeviceProxy() if request.param == "proxy" else RealDevice(request.param)


# -- tiny models and images -----------------------------------------------------------------------------------------

SIZE = 16
LATENT_SIZE = 32  # an xAAEnet's smallest input


def _images(count: int = 2, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _cnn(seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                             nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(6, 2)).eval()


def _vit(seed: int = 0) -> nn.Module:
    from torchvision.models import VisionTransformer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                                 num_classes=2).eval()


def _xaaenet(seed: int = 0) -> EncoderWithAAEBlocks:
    """Three strided convolutions (32 -> 4 px), skip connections and a narrow decoder."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = nn.Sequential(*block(3, 8), *block(8, 8), *block(8, 8))
        size = (LATENT_SIZE, LATENT_SIZE)
        model = EncoderWithAAEBlocks(encoder, input_size=size, encoding_dims=4, skip_dropout=0.5)
        model.decoder = DynamicUnetSkipDropout(4, FeatureMapProbe.run(encoder, 3, size), size, 3,
                                               skip_dropout=0.5, width=8)
    return model.eval()


# -- the proxy catches what a GPU would ------------------------------------------------------------------------------


class _HiddenCPUTensor(Saliency):
    """A deliberately broken method: it adds a tensor made without ``device=``."""

    def _attribute(self, inputs, target):
        gradient, _ = self._gradients(inputs, target)
        return gradient + torch.zeros(inputs.shape)


class _DeviceTensor(Saliency):
    def _attribute(self, inputs, target):
        gradient, _ = self._gradients(inputs, target)
        return gradient + torch.zeros(inputs.shape, device=inputs.device)


def test_the_proxy_catches_a_hidden_cpu_tensor_where_a_gpu_would():
    model, images = _cnn(), _images()
    expected = _DeviceTensor(model).attribute(images)
    assert torch.equal(_HiddenCPUTensor(model).attribute(images), expected)  # on the CPU both methods are fine
    with DeviceProxy() as proxy:
        proxy.model(model)
        x = proxy.tensor(images)
        assert x.device == PROXY and next(model.parameters()).device == PROXY
        with pytest.raises(RuntimeError, match="same device"):
            _HiddenCPUTensor(model).attribute(x)
        fixed = _DeviceTensor(model).attribute(x)
        assert proxy.is_on(fixed) and torch.equal(fixed.cpu(), expected)
        # The model on the device and its input on the CPU.
        with pytest.raises(RuntimeError, match="same device"):
            model(images)
        # .numpy() needs .cpu() first; a CPU generator cannot draw device tensors, nor a device generator CPU ones.
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        with pytest.raises(TypeError, match="numpy"):
            np.asarray(x)
        assert x.cpu().numpy().shape == tuple(images.shape) and not proxy.is_on(x.cpu())
        with pytest.raises(RuntimeError, match="generator"):
            torch.randn(3, generator=torch.Generator().manual_seed(0), device=x.device)
        with pytest.raises(RuntimeError, match="generator"):
            torch.randn(3, generator=torch.Generator(device=x.device).manual_seed(0))
        assert proxy.is_on(torch.randn(3, generator=torch.Generator(device=x.device).manual_seed(0), device=x.device))
        # What CUDA accepts: 0-dim CPU tensors as scalars, CPU indices, moves and copies.
        assert proxy.is_on(x * torch.tensor(2.0)) and proxy.is_on(x[torch.tensor([1, 0])])
        assert proxy.is_on(torch.zeros(3, device=x.device)) and proxy.is_on(torch.ones(3).to(x))
        assert proxy.is_on(torch.zeros_like(x)) and not proxy.is_on(torch.zeros(3))
        assert proxy.is_on(x[0].copy_(torch.zeros(3, SIZE, SIZE)))
    # Leaving the proxy untags the model and restores torch.Generator.
    assert torch.Generator is torch._C.Generator and not on_proxy(next(model.parameters()))
    assert model(images).shape == (2, 2)


# -- every attribution method of the registry ----------------------------------------------------------------------

# Small settings per registered method (constructor and attribute keywords together, as explain takes them).
_CALLS = {
    "saliency": {"abs": True},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 4, "internal_batch_size": 3, "baselines": 0.5},
    "smoothgrad": {"n_samples": 3, "samples_per_batch": 2, "nt_type": "vargrad"},
    "gradcam": {"upsampled": True},
    "gradcam++": {},
    "gradient_shap": {"n_samples": 3, "stdevs": 0.1, "internal_batch_size": 4},
    "shapley_sampling": {"n_permutations": 2, "grid_cells": 4, "batch_size": 8},
    "attention_rollout": {"discard_ratio": 0.5},
    "causal": {"iterations": 2, "tree_depth": 3, "curve_steps": 4},
}


def test_every_registered_method_has_a_device_test():
    assert set(METHODS) == set(available_methods()) == set(_CALLS)


def _model_for(method: str) -> nn.Module:
    return _vit() if method == "attention_rollout" else _cnn()


@pytest.mark.parametrize("method", sorted(_CALLS))
def test_every_method_runs_on_the_models_device_and_returns_its_maps_there(place, method):
    model, images = _model_for(method), _images()
    assert method in available_methods(model)
    reference = explain(model, images, method=method, target=[1, 0], **_CALLS[method])
    with place:
        place.model(model)
        x = place.tensor(images)
        maps = explain(model, x, method=method, target=[1, 0], **_CALLS[method])
        assert place.is_on(maps) and bool(torch.isfinite(maps).all()) and maps.shape == reference.shape
        predicted = explain(model, x, method=method, **_CALLS[method])  # target=None: the predicted class
        assert place.is_on(predicted)
        maps = maps.cpu()
    if isinstance(place, DeviceProxy):  # the same numbers: the proxy changes where tensors say they are, nothing else
        torch.testing.assert_close(maps, reference)


def test_more_ways_of_calling_the_methods(place):
    from tell_me_why.attribution import IntegratedGradients, ShapleyValueSampling, SmoothGrad

    model, images = _cnn(), _images()
    with place:
        place.model(model)
        x = place.tensor(images)
        attributions, delta = IntegratedGradients(model).attribute(x, n_steps=4, baselines=place.tensor(images.flip(0)),
                                                                   return_convergence_delta=True)
        assert place.is_on(attributions) and place.is_on(delta)
        shapley = ShapleyValueSampling(model)
        for groups in ("superpixels", 4, place.tensor(torch.arange(SIZE * SIZE).view(SIZE, SIZE) // 64)):
            assert place.is_on(shapley.attribute(x, groups=groups, n_permutations=1, baselines=place.tensor(images[0])))
        smooth = SmoothGrad(model, method=IntegratedGradients)
        assert place.is_on(smooth.attribute(x, target=place.tensor(torch.tensor([0, 1])), n_samples=2, n_steps=3))
        assert place.is_on(SmoothGrad(model).attribute(x, n_samples=2, seed=None, nt_type="smoothgrad_sq"))


def test_tcav_and_feature_visualisation(place):
    model, images = _cnn(), _images(8)
    with place:
        place.model(model)
        x = place.tensor(images)
        tcav = TCAV(model, model[2])
        activations = tcav.activations(x)
        assert isinstance(activations, np.ndarray) and activations.shape == (8, 6 * SIZE * SIZE)
        cav = tcav.concept_activation_vector(x[:2], x[2:4])
        assert isinstance(tcav.directional_derivatives(x, cav), np.ndarray)
        result = tcav.test(x[:2], x[2:4], x[4:], runs=2, set_size=2)
        assert 0.0 <= result.score <= 1.0
        image, history = ActivationMaximisation(model, model[-1], unit=1).generate(shape=(1, 3, SIZE, SIZE), steps=2)
        assert place.is_on(image) and len(history) == 2
        assert place.is_on(ActivationMaximisation(model, model[2], unit=0).generate((1, 3, SIZE, SIZE), steps=1)[0])
        assert place.is_on(DeepDream(model, model[2]).dream(x[:1], octaves=2, steps=2))


# -- the causal explainer ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["logits", "probabilities"])
def test_the_causal_explainer_on_the_models_device(place, head):
    """The explainer builds its occluded images on the CPU and classifies them on the model's device; a head that
    returns probabilities is recognised there (``output="auto"``)."""
    model = _cnn() if head == "logits" else nn.Sequential(_cnn(), nn.Softmax(1))
    images = _images(2)
    with place:
        place.model(model)
        x = place.tensor(images)
        explainer = CausalExplainer(model, iterations=2, tree_depth=3, curve_steps=4, robustness_samples=2,
                                    strategy="multi", spotlights=2)
        explanations = explainer.explain(x)
        for explanation in explanations:
            assert isinstance(explanation.responsibility, np.ndarray)
            assert explanation.responsibility.shape == (SIZE, SIZE)
            metrics = explanation.metrics()
            assert 0.0 <= metrics["insertion_auc"] <= 1.0
        one = explainer.explain(x[0], target=1)
        assert one.target == 1 and one.responsibility.shape == (SIZE, SIZE)
        masked = CausalExplainer(model, iterations=2, tree_depth=3, strategy="contrastive",
                                 mask_image=place.tensor(torch.zeros(3, SIZE, SIZE)))
        assert masked.explain(x[:1])[0].stats["mask"] == "the mask image"
        noise = CausalExplainer(model, iterations=2, tree_depth=3, mask_value="noise", strategy="spatial")
        assert noise.explain(x[:1])[0].responsibility.shape == (SIZE, SIZE)
        # The building blocks take an image on the device too (the explainer gives them CPU images).
        masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
        masks[1, :8], masks[2] = True, True
        for kind in ("min", "mean", "blur", "noise", 0.5):
            fill = mask_fill(x[0], kind, None, seed=0)
            assert place.is_on(fill)
            occluder = Occluder(x[0], fill, Predictor(model), target=1)
            assert occluder.passes(masks).shape == (3,)
            assert occluder.target_probability(masks, invert=True).shape == (3,)


# -- trust metrics ----------------------------------------------------------------------------------------------------


def test_the_metrics_take_maps_and_images_on_the_models_device(place):
    model, images = _cnn(), _images(2)
    with place:
        place.model(model)
        x = place.tensor(images)
        maps = explain(model, x, method="gradcam")  # layer resolution: the curves upsample them
        for baseline in ("zero", "mean", "blur", place.tensor(images[:1].flip(-1))):
            curves = deletion_insertion(model, x, maps, steps=4, baseline=baseline, batch_size=5)
            assert curves.deletion.shape == (2, 5) and np.isfinite(curves.deletion_auc).all()
        curves = deletion_insertion(model, x, maps.cpu().numpy(), target=place.tensor(torch.tensor([1, 0])), steps=4,
                                    ties="smoothed")
        gaps = random_ordering_gaps(model, x, orderings=2, steps=4)
        assert gaps.shape == (2,) and math.isfinite(against_chance(curves, gaps).gap)
        evidence = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
        evidence[:, 4:8, 4:8] = True
        for given in (place.tensor(evidence), evidence, evidence.numpy()):
            hits = pointing_game(maps, given, size=(SIZE, SIZE), tolerance=1)
            assert isinstance(hits, np.ndarray) and hits.shape == (2,)

        def gradcam(m, inputs, targets):
            return explain(m, inputs, method="gradcam", target=targets, layer=m[3])

        steps = model_randomisation(model, gradcam, x)
        assert [step.layer for step in steps] == ["7", "3", "1", "0"] and place.is_on(next(model.parameters()))
        share = robustness(model, x[0], evidence[0].numpy(), target=1, samples=3, seed=0)
        assert 0.0 <= share <= 1.0
        figure = plot_method_comparison(x[0], {"gradcam": maps[0], "saliency": explain(model, x, "saliency")[0]})
        matplotlib.pyplot.close(figure)
    entropy, normalised = responsibility_entropy(maps.cpu().numpy()[0, 0])
    assert entropy >= 0 and 0 <= normalised <= 1


# -- latent explanations ----------------------------------------------------------------------------------------------


def test_latent_explanations_run_on_the_models_device_and_return_cpu_results(place):
    """Traversals, counterfactuals and neighbours are results for figures and reports: documented on the CPU."""
    model, images = _xaaenet(), _images(4, size=LATENT_SIZE)
    with place:
        place.model(model)
        x = place.tensor(images)
        axis = decision_axis(model)
        assert place.is_on(axis.direction)
        walk = traverse_decision_axis(model, x, steps=3)
        assert walk.uses_skips and walk.decoded.shape == (4, 3, 3, LATENT_SIZE, LATENT_SIZE)
        assert walk.decoded.device.type == "cpu" and walk.probability.device.type == "cpu"
        means = traverse_class_means(model, x, place.tensor(torch.tensor([0, 1, 1, 0])), steps=3)
        assert means.decoded.shape == (2, 3, 3, LATENT_SIZE, LATENT_SIZE)
        for method in ("axis", "gradient"):
            found = latent_counterfactual(model, x, method=method, step=0.5, max_distance=1.0)
            assert found.counterfactual.device.type == "cpu" and found.reached.device.type == "cpu"
            assert found.select([1, 0]).z.shape == (2, 4) and math.isfinite(found.summary()["reconstruction_ssim"])
        from_cpu = latent_counterfactual(model, images)  # images on the CPU are moved to the model
        assert from_cpu.counterfactual.shape == (4, 3, LATENT_SIZE, LATENT_SIZE)
        bank = LatentSplit(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32), np.array([0, 1] * 3),
                           [f"train_{i}" for i in range(6)])
        neighbours = latent_neighbours(bank, x, k=2, model=model)
        assert neighbours.same.shape == (4, 2) and isinstance(neighbours.same_distance, np.ndarray)
