"""How far above the bare passes are Grad-CAM and SmoothGrad? Ours, captum and the same passes written inline.

    .venv/bin/python bench/bench_attribution_floor.py [--calls 60] [--smoothgrad-calls 8]

Saliency-type methods cannot beat the forward and backward passes they need; this script measures that floor
in the same process as ours and captum (calls alternated, order reversed every round) on random-init
torchvision resnet18, batch 8 at 224 px, 2 torch threads. Grad-CAM at ``layer4``; SmoothGrad: 24 samples, 8 per
batch, noise 0.15. Prints the median time per call of each and the median per-round ratios against ours.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision
from captum import attr

from tell_me_why import attribution

SAMPLES, PER_BATCH, NOISE = 24, 8, 0.15


def bare_gradcam(model, inputs):
    captured = []
    handle = model.layer4.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        outputs = model(inputs)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(outputs[:, 1].sum(), captured[0])
    return torch.relu((gradient.mean((2, 3), keepdim=True) * captured[0]).sum(1, keepdim=True))


def bare_smoothgrad(model, inputs):
    total = 0.0
    for _ in range(SAMPLES // PER_BATCH):
        noisy = inputs.repeat(PER_BATCH, 1, 1, 1) + NOISE * torch.randn(PER_BATCH * len(inputs), *inputs.shape[1:])
        noisy.requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(noisy)[:, 1].sum(), noisy)
        total = total + gradient.view(PER_BATCH, *inputs.shape).sum(0)
    return total / SAMPLES


def runners(model, inputs) -> dict[str, dict]:
    return {
        "gradcam": {
            "ours": lambda: attribution.GradCAM(model, layer=model.layer4).attribute(inputs, target=1),
            "captum": lambda: attr.LayerGradCam(model, model.layer4).attribute(inputs, target=1,
                                                                                relu_attributions=True),
            "bare passes": lambda: bare_gradcam(model, inputs),
        },
        "smoothgrad": {
            "ours": lambda: attribution.SmoothGrad(model).attribute(inputs, target=1, n_samples=SAMPLES,
                                                                     stdev_spread=NOISE, samples_per_batch=PER_BATCH),
            "captum": lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
                inputs, target=1, nt_samples=SAMPLES, stdevs=NOISE, nt_samples_batch_size=PER_BATCH, abs=False),
            "bare passes": lambda: bare_smoothgrad(model, inputs),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60, help="alternated calls of each for Grad-CAM")
    parser.add_argument("--smoothgrad-calls", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    inputs = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    for method, calls in runners(model, inputs).items():
        for run in calls.values():  # warm-up
            run()
        times = {name: [] for name in calls}
        for round_index in range(args.calls if method == "gradcam" else args.smoothgrad_calls):
            order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
            for name in order:
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
        ours = np.array(times["ours"])
        print(f"{method}: median ms per call (batch 8), and median per-round time / ours")
        for name, seconds in times.items():
            print(f"  {name:<12}{1000 * np.median(seconds):9.1f} ms {np.median(np.array(seconds) / ours):7.3f}")


if __name__ == "__main__":
    main()
