"""One (implementation, method) of bench_attribution.py, in its own process: time and peak private memory.

    python _attribution_worker.py IMPL METHOD BATCH SIZE [ROUNDS]

IMPL is ``ours``, ``captum``, ``pytorch-grad-cam`` (one implementation: its peak memory and time), or
``ours+captum`` (time only: both in this process, so that both see the same machine state; this VM's speed
drifts by 20 % between runs). Paired rounds: each round times one call of each, in ABBA order (ours first in
even rounds, captum first in odd ones) so a drift within a round favours neither; the per-round ratio
captum/ours is the speed-up, summarised by its median and a bootstrap 90 % interval of the median.
The model is a random-init torchvision resnet18 (seed 0), the inputs a seeded batch. One warm-up call on one
image, then timed calls on the batch.
Memory: the peak of ``RssAnon`` during the first timed call minus its value just before (sampled every 5 ms).
Prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torchvision
from _memory import AnonymousMemoryPeak

SETTINGS = {"ig_steps": 50, "smoothgrad_samples": 25, "smoothgrad_noise": 0.15, "smoothgrad_per_batch": 8,
            "shap_samples": 50, "shap_baselines": 10}


def ours(model, method):
    from tell_me_why import attribution as a

    baselines = torch.rand(SETTINGS["shap_baselines"], 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return {
        "saliency": lambda x: a.Saliency(model).attribute(x, target=1),
        "input_x_gradient": lambda x: a.InputXGradient(model).attribute(x, target=1),
        "integrated_gradients": lambda x: a.IntegratedGradients(model).attribute(
            x, target=1, n_steps=SETTINGS["ig_steps"]),
        "smoothgrad": lambda x: a.SmoothGrad(model).attribute(x, target=1, n_samples=SETTINGS["smoothgrad_samples"],
                                                               stdev_spread=SETTINGS["smoothgrad_noise"],
                                                               samples_per_batch=SETTINGS["smoothgrad_per_batch"]),
        "gradcam": lambda x: a.GradCAM(model, layer=model.layer4).attribute(x, target=1),
        "gradcam++": lambda x: a.GradCAMPlusPlus(model, layer=model.layer4).attribute(x, target=1),
        "gradient_shap": lambda x: a.GradientShap(model).attribute(x, target=1, baselines=baselines,
                                                                    n_samples=SETTINGS["shap_samples"]),
    }[method]


def captum(model, method):
    from captum import attr

    baselines = torch.rand(SETTINGS["shap_baselines"], 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return {
        "saliency": lambda x: attr.Saliency(model).attribute(x, target=1, abs=False),
        "input_x_gradient": lambda x: attr.InputXGradient(model).attribute(x, target=1),
        "integrated_gradients": lambda x: attr.IntegratedGradients(model).attribute(
            x, target=1, n_steps=SETTINGS["ig_steps"], internal_batch_size=64),
        "smoothgrad": lambda x: attr.NoiseTunnel(attr.Saliency(model)).attribute(
            x, target=1, nt_samples=SETTINGS["smoothgrad_samples"], stdevs=SETTINGS["smoothgrad_noise"],
            nt_samples_batch_size=SETTINGS["smoothgrad_per_batch"], abs=False),
        "gradcam": lambda x: attr.LayerGradCam(model, model.layer4).attribute(x, target=1, relu_attributions=True),
        "gradient_shap": lambda x: attr.GradientShap(model).attribute(x, target=1, baselines=baselines,
                                                                       n_samples=SETTINGS["shap_samples"]),
    }[method]


def pytorch_grad_cam(model, method):
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAMPlusPlus(model=model, target_layers=[model.layer4])
    return lambda x: cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * len(x))


def alternated_times(runners: dict, inputs: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each runner over ``rounds`` rounds, the order reversed every other round (ABBA)."""
    times = {name: [] for name in runners}
    for round_index in range(rounds):
        order = list(runners) if round_index % 2 == 0 else list(reversed(runners))
        for name in order:
            start = time.perf_counter()
            runners[name](inputs)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    impl, method, batch, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    factories = {"ours": ours, "captum": captum, "pytorch-grad-cam": pytorch_grad_cam}
    names = impl.split("+")
    runners = {name: factories[name](model, method) for name in names}
    inputs = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    for run in runners.values():
        run(inputs[:1])
    if len(runners) == 1:
        (run,) = runners.values()
        peak = AnonymousMemoryPeak()
        start = time.perf_counter()
        run(inputs)
        seconds = time.perf_counter() - start
        result = {"seconds_per_image": seconds / batch, "peak_mib": peak.stop() - peak.start_mib}
    else:
        times = alternated_times(runners, inputs, int(sys.argv[5]) if len(sys.argv) > 5 else 5)
        ratios = np.array(times["captum"]) / np.array(times["ours"])
        medians = np.median(np.random.default_rng(0).choice(ratios, (2000, len(ratios))), axis=1)
        result = {name: {"seconds_per_image": float(np.median(t)) / batch, "all_seconds": t}
                  for name, t in times.items()}
        result["speed_up"] = {"median": float(np.median(ratios)), "interval_90": np.quantile(medians, [0.05, 0.95])
                              .tolist(), "rounds": ratios.tolist()}
    print("RESULT " + json.dumps({**result, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
