"""``python -m tell_me_why.demo``: train xAAEnet on the embedded faces-vs-non-faces data, relate its decision
axis to pixel cues, and write the figures.

The data is scikit-image's ``lfw_subset`` (100 face and 100 non-face photos, shipped inside its wheel), so the
demo runs offline. It uses a random-init ResNet-18 at 64 px so that it finishes in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from .datasets import folder_dataloaders, write_lfw_subset
from .feature_scores import compute_feature_score_table
from .model_aae import AAE
from .training import train_xaaenet
from .visualization import run_pls_feature_figures

CLASS_A = "face"


def interpret(latent_path: Path, out_dir: Path) -> dict:
    """Pixel cues of the validation images against the decision axis fitted on the training latents."""
    latents = pd.read_parquet(latent_path)
    train, valid = latents[latents["split"] == "train"], latents[latents["split"] == "valid"]
    features = compute_feature_score_table(valid["path"].tolist(), progress=False)
    return run_pls_feature_figures(
        valid, (valid["label"] == CLASS_A).to_numpy(float), features, target_label=CLASS_A,
        positive_label=CLASS_A, negative_label="non-face", z_train=train,
        target_train=(train["label"] == CLASS_A).to_numpy(float), save_dir=out_dir, show=False,
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--epochs", type=int, nargs=3, default=(3, 6, 8), metavar=("ADV", "AE", "CLASSIF"),
                        help="epochs of the three phases (default: 3 6 8)")
    parser.add_argument("--resume", action="store_true", help="skip phases finished by an earlier run in --out")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data_dir = write_lfw_subset(args.out / "data", size=args.size)
    dls = folder_dataloaders(data_dir, size=args.size, bs=16, valid_pct=0.25, seed=42, grey=True)
    print(f"Data: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, classes {list(dls.vocab)}")
    torch.manual_seed(0)
    model = AAE(input_size=args.size, input_channels=1, encoding_dims=32, encoder="resnet18", pretrained=False)
    epochs_adv, epochs_ae, epochs_classif = args.epochs
    learn = train_xaaenet(
        model, dls, epochs_adv=epochs_adv, epochs_ae=epochs_ae, epochs_classif=epochs_classif, lr_max=3e-3,
        classif_class_weight=0.1, grad_accum=1, models_dir=args.out / "models", pls_target_class=CLASS_A,
        show_latent_figures=False, resume=args.resume, seed=0,
    )
    models_dir = args.out / "models"
    figures = sorted(p.name for p in models_dir.glob("*.png"))
    history = learn.xaaenet_history[-1]
    accuracy = history["values"][history["best_epoch"]][history["metric_names"].index("accuracy")] \
        if history.get("best_epoch") is not None else float("nan")
    result = interpret(learn.latent_path, args.out / "interpretation")
    axis = result["axis"]
    print(f"\nDecision axis ({axis['method']}): held-out r = {axis['r']:.2f}, permutation p = {axis['p_value']:.3f}, "
          f"{'reliable' if axis['reliable'] else 'NOT reliable'}")
    for name, row in result["stats"].head(5).iterrows():
        print(f"  {name:<28} signed r2 {row['r2_signed']:+.3f}  q {row['q_value']:.3g}"
              f"{'  significant' if row['significant'] else ''}")
    print(f"\nDone in {time.perf_counter() - start:.0f} s. Validation accuracy (kept epoch): {accuracy:.3f}")
    print(f"Checkpoints, latent table and figures in {models_dir}: {', '.join(figures)}")
    print(f"Pixel-cue figures in {args.out / 'interpretation'}")
    return models_dir


if __name__ == "__main__":
    main()
