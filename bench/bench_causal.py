"""Causal explanations: Tell Me Why against rex-xai 0.4.1 on the planted-evidence task, side by side.

    .venv/bin/python bench/bench_causal.py [--n64 20] [--n224 4] [--iterations 20] [--threads 2]

Trains the small CNN of ``tell_me_why.testing`` on 64x64 planted-evidence images (a 6-10 px bright square
decides the class; bright bars are distractors) and explains positive test images at 64x64 and 224x224 (the
CNN is fully convolutional; the square and bars keep their size). The reference runs in bench/.venv-rex (created
on first use) with its pytorch prediction function, ``--iterations`` iterations and its defaults otherwise; ours
runs in this process, once with the same number of iterations and once with 5. Both use ``--threads`` torch
threads. Time per image covers the landscape, the minimal explanation and the metrics (ReX's ``analyze``; our
``metrics()``). Prints medians and the pointing game; writes bench/results/causal.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _venvs import ensure_rex_venv, run_json_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from tell_me_why.causal import CausalExplainer  # noqa: E402
from tell_me_why.testing import planted_evidence_images, train_small_cnn  # noqa: E402


def run_reference(python: Path, work: Path, iterations: int, threads: int) -> list[dict]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONPATH": str(ROOT / "src"), "TQDM_DISABLE": "1"}
    command = [str(python), str(HERE / "_causal_rex_worker.py"), str(work), str(iterations), str(threads)]
    return run_json_worker(command, env, cwd=work, label="rex-xai worker")


def run_ours(model, images: torch.Tensor, iterations: int) -> list[dict]:
    explainer = CausalExplainer(model, iterations=iterations, seed=0)
    results = []
    for image in images:
        start = time.perf_counter()
        explanation = explainer.explain(image)
        metrics = explanation.metrics()
        seconds = time.perf_counter() - start
        size = image.shape[-1]
        peak = int(np.argmax(explanation.responsibility))
        mask = explanation.explanation if explanation.explanation is not None else np.zeros((size, size), bool)
        results.append({
            "seconds": seconds, "landscape_passes": explanation.stats["landscape_forward_passes"],
            "passes": explanation._occluder.predictor.forward_passes,  # landscape, extraction and metrics
            "model_calls": explanation.stats["model_calls"], "peak": [peak // size, peak % size],
            "mask": np.argwhere(mask).tolist(), "target": explanation.target,
            "insertion": metrics["insertion_auc"], "deletion": metrics["deletion_auc"],
        })
    return results


def summarise(results: list[dict], squares: list[np.ndarray]) -> dict:
    pointing = sum(bool(square[tuple(r["peak"])]) for r, square in zip(results, squares))
    inside = [
        float(np.mean([square[tuple(p)] for p in r["mask"]])) if r["mask"] else 0.0
        for r, square in zip(results, squares)
    ]
    return {
        "seconds_median": statistics.median(r["seconds"] for r in results),
        "landscape_passes_median": statistics.median(r["landscape_passes"] for r in results),
        "passes_median": statistics.median(r["passes"] for r in results),
        "pointing_game": f"{pointing}/{len(results)}",
        "pointing_hits": pointing,
        "explanation_inside_median": statistics.median(inside),
        "area_median": statistics.median(len(r["mask"]) for r in results),
        "insertion_median": statistics.median(r["insertion"] for r in results),
        "deletion_median": statistics.median(r["deletion"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n64", type=int, default=20, help="positive images explained at 64x64")
    parser.add_argument("--n224", type=int, default=4, help="positive images explained at 224x224")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rex_python = ensure_rex_venv()
    print("Training the planted-evidence CNN...", flush=True)
    model = train_small_cnn(planted_evidence_images(800, 64, seed=0), epochs=3)
    summary: dict = {"settings": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(model.state_dict(), work / "model.pt")
        for size, count in ((64, args.n64), (224, args.n224)):
            data = planted_evidence_images(4 * count + 8, size, seed=1)
            positives = [i for i in range(len(data.labels)) if data.labels[i] == 1][:count]
            images = data.images[positives].clone()
            squares = [data.square_mask(i) for i in positives]
            torch.save(images, work / "images.pt")
            print(f"{size}x{size}: rex-xai 0.4.1...", flush=True)
            reference = summarise(run_reference(rex_python, work, args.iterations, args.threads), squares)
            print(f"{size}x{size}: Tell Me Why...", flush=True)
            same = summarise(run_ours(model, images, args.iterations), squares)
            fewer = summarise(run_ours(model, images, 5), squares)
            summary[str(size)] = {"rex-xai": reference, f"ours_{args.iterations}": same, "ours_5": fewer}

    print(f"\nSmall CNN, planted square, {args.threads} torch threads, medians per image")
    header = f"{'':<10}{'config':<22}{'seconds':>9}{'time ratio':>11}{'passes':>8}{'pointing':>10}{'inside':>8}" \
             f"{'ins AUC':>9}{'del AUC':>9}"
    print(header)
    for size in ("64", "224"):
        base = summary[size]["rex-xai"]["seconds_median"]
        for name, row in summary[size].items():
            print(f"{size + 'x' + size:<10}{name:<22}{row['seconds_median']:>9.3f}{row['seconds_median'] / base:>11.2f}"
                  f"{row['passes_median']:>8.0f}{row['pointing_game']:>10}{row['explanation_inside_median']:>8.2f}"
                  f"{row['insertion_median']:>9.3f}{row['deletion_median']:>9.3f}")
    out = HERE / "results" / "causal.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
