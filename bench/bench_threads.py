"""OpenMP waiting on a shared machine: a training step alone and beside busy processes, per wait setting.

    .venv/bin/python bench/bench_threads.py [--busy 2] [--threads 2]

Each setting runs in a fresh process (OpenMP reads its environment once, when torch loads it): libgomp's default
spin (300,000), ``GOMP_SPINCOUNT=10000`` (what ``import tell_me_why`` sets when nothing is set) and
``OMP_WAIT_POLICY=PASSIVE``. The step: a torchvision ResNet-18 (2 classes), batch 32 at 64 px, SGD, ``--threads``
torch threads; median of 3 rounds of 4 steps after a warm-up. "Busy" starts ``--busy`` pure-Python busy loops
first (other users' jobs). Prints seconds per step and the slowdown against the same setting alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

STEP = """
import json, statistics, time, torch, torchvision
torch.set_num_threads({threads})
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=2)
optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 2, (32,))
def step():
    optimiser.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
step()
rounds = []
for _ in range(3):
    start = time.perf_counter()
    for _ in range(4):
        step()
    rounds.append((time.perf_counter() - start) / 4)
print("RESULT", json.dumps(statistics.median(rounds)))
"""

SETTINGS = {"libgomp default spin": {}, "GOMP_SPINCOUNT=10000 (ours)": {"GOMP_SPINCOUNT": "10000"},
            "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}


def seconds_per_step(extra: dict[str, str], threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")} | extra
    out = subprocess.run([sys.executable, "-c", STEP.format(threads=threads)], capture_output=True, text=True,
                         env=env, check=True).stdout
    return json.loads(out.split("RESULT", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the step")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    alone = {name: seconds_per_step(extra, args.threads) for name, extra in SETTINGS.items()}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        busy = {name: seconds_per_step(extra, args.threads) for name, extra in SETTINGS.items()}
    finally:
        for hog in hogs:
            hog.kill()
    print(f"ResNet-18 training step, batch 32 at 64 px, {args.threads} torch threads, {os.cpu_count()} CPUs")
    print(f"{'setting':<30}{'alone (s)':>10}{f'{args.busy} busy (s)':>12}{'slowdown':>10}")
    for name in SETTINGS:
        print(f"{name:<30}{alone[name]:>10.3f}{busy[name]:>12.3f}{busy[name] / alone[name]:>9.1f}x")


if __name__ == "__main__":
    main()
