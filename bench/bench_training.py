"""Training throughput and peak memory: Tell Me Why against the original tmw-xai 0.0.2, side by side.

    .venv/bin/python bench/bench_training.py [--size 192] [--bs 8] [--n-per-class 24] [--epochs 1]

Creates bench/.venv-tmw (torch, torchvision, then tmw-xai 0.0.2 from PyPI) on first use, writes one planted-cue
image folder, and trains both implementations on it with the same sizes, batch, epochs and random-init ResNet-34
encoder, each in its own process (so that peak memory is each one's own). The original's phase-1 freezing leak is
patched in the worker so that both train the whole model in phases 2-3. Prints images per second for each phase,
peak RSS and the ratios; writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from _venvs import ensure_original_venv, run_json_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def warm_shared_libraries(venv: Path) -> None:
    """Read every shared library of a venv once, so that both sides start with their libraries in the page cache
    (the RSS of a mapped library grows with how much of it is cached, not with what the program does)."""
    for library in venv.rglob("*.so*"):
        with open(library, "rb") as handle:
            while handle.read(1 << 24):
                pass


def run_worker(python: Path, impl: str, data: Path, work: Path, args) -> dict:
    command = [str(python), str(HERE / "_training_worker.py"), "--impl", impl, "--data", str(data),
               "--work", str(work), "--size", str(args.size), "--bs", str(args.bs), "--epochs", str(args.epochs)]
    # Each side imports its own `tell_me_why`: ours from src/, the original from its venv.
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(work)}
    if impl == "ours":
        env["PYTHONPATH"] = str(ROOT / "src")
    return run_json_worker(command, env, cwd=work, label=f"{impl} worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=192, help="image side (the original needs > 160 px)")
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--n-per-class", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from tell_me_why.testing import write_planted_cue_dataset

    original_python = ensure_original_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_planted_cue_dataset(tmp / "data", n_per_class=args.n_per_class, size=args.size, cue="square")
        results = {}
        for venv in (original_python.parent.parent, Path(sys.prefix)):
            warm_shared_libraries(venv)
        for impl, python in (("tmw-xai", original_python), ("ours", Path(sys.executable))):
            work = tmp / impl
            work.mkdir()
            print(f"Training {impl}...", flush=True)
            results[impl] = run_worker(python, impl, data, work, args)

    ours, original = results["ours"], results["tmw-xai"]
    print(f"\n{args.n_per_class * 2} images of {args.size}x{args.size}, batch {args.bs}, {args.epochs} epoch(s) per "
          f"phase, ResNet-34 random init, {platform.processor() or platform.machine()}, torch {ours['torch']}")
    print(f"{'phase':<14}{'tmw-xai img/s':>15}{'ours img/s':>12}{'speed-up':>10}")
    for phase in ("adversarial", "autoencoder", "classifier"):
        a, b = original["phases"][phase]["images_per_s"], ours["phases"][phase]["images_per_s"]
        print(f"{phase:<14}{a:>15.2f}{b:>12.2f}{b / a:>9.2f}x")
    total_a = sum(p["seconds"] for p in original["phases"].values())
    total_b = sum(p["seconds"] for p in ours["phases"].values())
    print(f"{'all phases':<14}{'':>15}{'':>12}{total_a / total_b:>9.2f}x  ({total_a:.1f} s vs {total_b:.1f} s)")
    ratio = ours["peak_rss_mib"] / original["peak_rss_mib"]
    print(f"peak RSS: tmw-xai {original['peak_rss_mib']:.0f} MiB, ours {ours['peak_rss_mib']:.0f} MiB "
          f"(ours / original = {ratio:.2f})")
    anon_ratio = ours["peak_anon_mib"] / original["peak_anon_mib"]
    print(f"peak anonymous (private) RSS: tmw-xai {original['peak_anon_mib']:.0f} MiB, ours "
          f"{ours['peak_anon_mib']:.0f} MiB (ours / original = {anon_ratio:.2f})")
    growth_a = original["peak_rss_mib"] - original["baseline_rss_mib"]
    growth_b = ours["peak_rss_mib"] - ours["baseline_rss_mib"]
    print(f"peak RSS above the pre-training baseline (imports, data): tmw-xai {growth_a:.0f} MiB, ours "
          f"{growth_b:.0f} MiB (ours / original = {growth_b / growth_a:.2f})")
    out = HERE / "results" / "training.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), **results}, indent=2))
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
