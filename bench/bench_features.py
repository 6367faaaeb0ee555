"""Pixel-cue throughput: Tell Me Why against the original tmw-xai 0.0.2 on the same images, side by side.

    .venv/bin/python bench/bench_features.py [--n 200] [--size 300] [--repeats 3]

Writes ``--n`` RGB PNG images of ``--size`` x ``--size`` (random crops of the colour photographs shipped in
scikit-image), then times ``compute_feature_score_table`` with the 11 original scores for each implementation, each
in its own process and venv (the original's in bench/.venv-tmw, created on first use). Prints images per second,
the speed-up and the largest absolute difference between the two tables per score; writes
bench/results/features.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from _venvs import ensure_original_venv, run_json_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def write_photo_crops(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` PNG crops of ``size`` x ``size`` from scikit-image's colour photographs, randomly placed and flipped."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        photo = photos[index % len(photos)]
        if min(photo.shape[:2]) < size:
            photo = np.asarray(Image.fromarray(photo).resize((max(size, photo.shape[1]), max(size, photo.shape[0]))))
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crop = photo[top : top + size, left : left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        path = folder / f"crop_{index:04d}.png"
        Image.fromarray(np.ascontiguousarray(crop)).save(path)
        paths.append(path)
    return paths


def run_worker(python: Path, paths_file: Path, repeats: int, ours: bool) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(paths_file.parent), "TQDM_DISABLE": "1"}
    if ours:
        env["PYTHONPATH"] = str(ROOT / "src")
    command = [str(python), str(HERE / "_features_worker.py"), str(paths_file), str(repeats)]
    return run_json_worker(command, env, cwd=paths_file.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (best kept)")
    args = parser.parse_args()

    original_python = ensure_original_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_photo_crops(tmp / "images", args.n, args.size)
        paths_file = tmp / "paths.txt"
        paths_file.write_text("\n".join(str(p) for p in paths))
        results = {}
        for name, python, ours in (("tmw-xai", original_python, False), ("ours", Path(sys.executable), True)):
            print(f"Scoring with {name}...", flush=True)
            results[name] = run_worker(python, paths_file, args.repeats, ours)

    ours, original = results["ours"], results["tmw-xai"]
    assert ours["paths"] == original["paths"], "row order differs between implementations"
    rate = {name: args.n / result["seconds"] for name, result in results.items()}
    differences = {
        score: float(np.max(np.abs(np.array(ours["values"][score]) - np.array(original["values"][score]))))
        for score in ours["values"]
    }
    print(f"\n{args.n} RGB PNG images of {args.size}x{args.size}, 11 original scores, "
          f"{platform.processor() or platform.machine()}, torch threads {ours['torch_threads']}")
    print(f"{'':<24}{'tmw-xai 0.0.2':>15}{'Tell Me Why':>14}{'speed-up':>10}")
    print(f"{'images per second':<24}{rate['tmw-xai']:>15.1f}{rate['ours']:>14.1f}"
          f"{rate['ours'] / rate['tmw-xai']:>9.1f}x")
    print("\nlargest |ours - original| per score:")
    for score, difference in differences.items():
        print(f"  {score:<30}{difference:.2e}")
    print(f"  {'all scores':<30}{max(differences.values()):.2e}")

    out = HERE / "results" / "features.json"
    out.parent.mkdir(exist_ok=True)
    summary = {
        "n": args.n, "size": args.size, "images_per_second": rate, "speedup": rate["ours"] / rate["tmw-xai"],
        "max_abs_difference": differences, "seconds": {k: v["all_seconds"] for k, v in results.items()},
    }
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
