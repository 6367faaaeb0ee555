"""Attribution methods: time per image and peak memory, Tell Me Why against captum and pytorch-grad-cam.

    .venv/bin/python bench/bench_attribution.py [--batch 8] [--size 224] [--rounds 7]

Random-init torchvision resnet18, a batch of ``--batch`` images of ``--size`` px, 2 torch threads. Times: ours
and captum in one process (``_attribution_worker.py ours+captum``), ``--rounds`` paired rounds in ABBA order
(five times as many for the one-pass methods);
the speed-up is the median per-round ratio with a bootstrap 90 % interval (this VM's speed drifts by 20 %
between runs, so separate processes compare badly); peak memory: each implementation in its own process.
captum comes from this venv (the test extra, from PyPI); pytorch-grad-cam (the peer for Grad-CAM++)
from bench/.venv-gradcam, created on first use, and is timed in its own process. IG: 50
Gauss-Legendre steps, both with an internal batch of 64; SmoothGrad: 25 samples, 8 per batch; GradientSHAP: 50
samples from 10 random baselines (captum's has no internal batch: all samples at once). Prints seconds per image
the peak of private memory during the call, and the ratios; writes
bench/results/attribution.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _venvs import ensure_gradcam_venv, run_json_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# One pass each: five times the rounds, since a call is short and the VM's jitter is not.
CHEAP = {"saliency", "input_x_gradient", "gradcam"}
METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradcam", "gradcam++",
           "gradient_shap")


def run(python: Path, impl: str, method: str, args) -> dict:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HOME": str(HERE)}
    rounds = args.rounds * 5 if method in CHEAP else args.rounds
    command = [str(python), str(HERE / "_attribution_worker.py"), impl, method, str(args.batch), str(args.size),
               str(rounds)]
    try:
        return run_json_worker(command, env, label=f"{impl} {method}")
    except RuntimeError as error:  # one failing method should not hide the others' figures
        return {"error": str(error)[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7, help="paired timing rounds against captum")
    args = parser.parse_args()
    gradcam_python = ensure_gradcam_venv()
    ours_python = Path(sys.executable)
    results = {}
    for method in METHODS:
        peer, peer_python = ("pytorch-grad-cam", gradcam_python) if method == "gradcam++" else ("captum", ours_python)
        print(f"{method}...", flush=True)
        pair = {"ours": run(ours_python, "ours", method, args), peer: run(peer_python, peer, method, args)}
        if peer == "captum":  # replace the separate-process times by the interleaved ones
            timed = run(ours_python, "ours+captum", method, args)
            for name in pair:
                if "error" not in timed and "error" not in pair[name]:
                    pair[name]["seconds_per_image"] = timed[name]["seconds_per_image"]
            pair["speed_up"] = timed.get("speed_up")
        results[method] = pair
    print(f"\nresnet18, batch {args.batch}, {args.size} px, 2 torch threads")
    print(f"{'method':<22}{'peer':<18}{'ours s/img':>11}{'peer s/img':>11}{'speed-up':>9}{'90 % interval':>15}"
          f"{'ours MiB':>10}{'peer MiB':>10}")
    for method, pair in results.items():
        peer = next(k for k in pair if k not in ("ours", "speed_up"))
        a, b = pair["ours"], pair[peer]
        if "error" in a or "error" in b:
            print(f"{method:<22}{peer:<18} error: {a.get('error') or b.get('error')}")
            continue
        paired = pair.get("speed_up")
        speed_up = paired["median"] if paired else b["seconds_per_image"] / a["seconds_per_image"]
        interval = "{:.2f}-{:.2f}x".format(*paired["interval_90"]) if paired else "(1 call)"
        print(f"{method:<22}{peer:<18}{a['seconds_per_image']:>11.3f}{b['seconds_per_image']:>11.3f}"
              f"{speed_up:>8.2f}x{interval:>15}{a['peak_mib']:>10.0f}{b['peak_mib']:>10.0f}")
    out = HERE / "results" / "attribution.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
