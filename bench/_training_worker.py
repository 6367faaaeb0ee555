"""One side of bench_training.py: train one implementation on a prepared image folder and print JSON.

Run by bench_training.py inside the interpreter of each implementation (ours: the project's .venv; the original:
a separate venv with tmw-xai 0.0.2). Both are timed the same way: every ``Learner.fit`` call (one per phase) is
wrapped, and the process's peak resident memory is read at the end. A sampling thread also records the peak of
the process's anonymous (private) resident memory, which, unlike the whole RSS, does not count shared-library
pages whose residency depends on the page cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from _memory import AnonymousMemoryPeak
from fastai.learner import Learner
from fastai.vision.all import (
    CategoryBlock,
    DataBlock,
    ImageBlock,
    RandomSplitter,
    Resize,
    get_image_files,
    parent_label,
)

PHASES = ("adversarial", "autoencoder", "classifier")


def patch_original() -> None:
    """Make tmw-xai 0.0.2 run offline and do the intended work in phases 2-3."""
    import torchvision

    import tell_me_why.model_aae as original_model
    import tell_me_why.training as original_training

    # Its encoder hard-codes ImageNet weights (a download); start both from random weights.
    original_model.resnet34 = lambda weights=None: torchvision.models.resnet34(weights=None)

    # Its phase-1 freezing leaks into phases 2-3 (only the critic would train): unfreeze when phase 1 ends.
    def unfreeze_after_phase_one(callback) -> None:
        callback.learn.model.gen_train = True
        for parameter in callback.learn.model.parameters():
            parameter.requires_grad_(True)

    original_training.UnfreezeFcCritAdaptative.after_fit = unfreeze_after_phase_one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("ours", "tmw-xai"), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    anonymous = AnonymousMemoryPeak()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.impl == "tmw-xai":
        patch_original()
    from tell_me_why.model_aae import AAE
    from tell_me_why.training import train_xaaenet

    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
        splitter=RandomSplitter(valid_pct=0.25, seed=42), item_tfms=Resize(args.size),
    )
    dls = block.dataloaders(args.data, bs=args.bs, num_workers=0, path=args.work)
    images_per_epoch = len(dls.train) * args.bs + len(dls.valid_ds)

    # Memory held before training starts (interpreter, torch, fastai, the dataloaders), to tell apart from training.
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit_times: list[float] = []
    original_fit = Learner.fit

    def timed_fit(self, *a, **k):
        start = time.perf_counter()
        try:
            return original_fit(self, *a, **k)
        finally:
            fit_times.append(time.perf_counter() - start)

    Learner.fit = timed_fit
    common = dict(epochs_adv=args.epochs, epochs_ae=args.epochs, epochs_classif=args.epochs,
                  save_tsne=False, save_pls=False, extract_latent=False, show_latent_figures=False)
    if args.impl == "ours":
        model = AAE(input_size=args.size, encoding_dims=128, encoder="resnet34", pretrained=False)
        train_xaaenet(model, dls, models_dir=args.work / "models", **common)
    else:
        model = AAE(input_size=args.size, encoding_dims=128)
        train_xaaenet(model, dls, **common)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "impl": args.impl,
        "images_per_epoch": images_per_epoch,
        "phases": {
            phase: {"seconds": t, "images_per_s": images_per_epoch * args.epochs / t}
            for phase, t in zip(PHASES, fit_times)
        },
        "peak_rss_mib": peak_mib,
        "peak_anon_mib": anonymous.stop(),
        "baseline_rss_mib": baseline_mib,
        "torch": torch.__version__,
    }
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
