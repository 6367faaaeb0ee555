"""How far above the bare passes are Grad-CAM and SmoothGrad? Ours, captum and the same passes written inline.

    .venv/bin/python bench/bench_attribution_floor.py [--calls 60] [--smoothgrad-calls 8]

Saliency-type methods cannot beat the forward and backward passes they need; this script measures that floor
in the same process as ours and captum, with the settings of ``bench_attribution.py`` (its worker's
implementations and alternated rounds): random-init torchvision resnet18, batch 8 at 224 px, 2 torch threads;
Grad-CAM at ``layer4``; SmoothGrad: 25 samples, 8 per batch, noise 0.15. Prints the median time per call of
each and the median per-round time relative to ours.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torchvision
from _attribution_worker import SETTINGS, alternated_times, captum, ours


def bare_gradcam(model):
    def run(inputs):
        captured = []
        handle = model.layer4.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            outputs = model(inputs)
        finally:
            handle.remove()
        (gradient,) = torch.autograd.grad(outputs[:, 1].sum(), captured[0])
        return torch.relu((gradient.mean((2, 3), keepdim=True) * captured[0]).sum(1, keepdim=True))

    return run


def bare_smoothgrad(model):
    def run(inputs):
        samples, per_batch, noise = (SETTINGS[f"smoothgrad_{key}"] for key in ("samples", "per_batch", "noise"))
        total = 0.0
        for start in range(0, samples, per_batch):
            count = min(per_batch, samples - start)
            noisy = inputs.repeat(count, 1, 1, 1) + noise * torch.randn(count * len(inputs), *inputs.shape[1:])
            noisy.requires_grad_(True)
            (gradient,) = torch.autograd.grad(model(noisy)[:, 1].sum(), noisy)
            total = total + gradient.view(count, *inputs.shape).sum(0)
        return total / samples

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60, help="alternated calls of each for Grad-CAM")
    parser.add_argument("--smoothgrad-calls", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    inputs = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    for method, bare, rounds in (("gradcam", bare_gradcam, args.calls),
                                 ("smoothgrad", bare_smoothgrad, args.smoothgrad_calls)):
        runners = {"ours": ours(model, method), "captum": captum(model, method), "bare passes": bare(model)}
        for run in runners.values():  # warm-up
            run(inputs)
        times = alternated_times(runners, inputs, rounds)
        reference = np.array(times["ours"])
        print(f"{method}: median ms per call (batch 8), and median per-round time / ours")
        for name, seconds in times.items():
            print(f"  {name:<12}{1000 * np.median(seconds):9.1f} ms {np.median(np.array(seconds) / reference):7.3f}")


if __name__ == "__main__":
    main()
