"""A run killed (SIGKILL) anywhere in training and resumed ends bit-identical to a run that was never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import image_folder
from safetensors.torch import load_file

# Small, but with several epochs per phase so that a stop can fall inside each phase (phase 2 runs a one-cycle
# schedule, whose position must survive the stop).
SETTINGS = ["--size", "32", "--epochs-adv", "2", "--epochs-ae", "3", "--epochs-classif", "2", "--explain-images", "2",
            "--ig-steps", "4", "--causal-iterations", "2", "--batch-size", "8", "--encoding-dims", "8"]

# Runs `tmw run`, killing itself with SIGKILL at the point named by argv[1] (argv[2] says where exactly).
KILLER = r"""
import os, signal, sys
point, where, data, out, *settings = sys.argv[1:]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "after-epoch":  # right after an epoch's resume checkpoint: phase:epoch
    from tell_me_why.xaaenet import resume
    phase, epoch = where.split(":")
    save = resume.EpochCheckpoint.after_epoch
    def after_epoch(self):
        save(self)
        if self.phase == phase and self.learn.epoch == int(epoch):
            die()
    resume.EpochCheckpoint.after_epoch = after_epoch
elif point == "mid-epoch":  # inside an epoch, after some training batches: phase:batch
    from fastai.learner import Learner
    phase, batch = where.split(":")
    one_batch = Learner.one_batch
    def killing_one_batch(self, i, b):
        one_batch(self, i, b)
        cbs = [type(cb).__name__ for cb in self.cbs]
        names = {"UnfreezeFcCritAdaptative": "adversarial", "CorruptionCallback": "autoencoder"}
        current = next((names[n] for n in cbs if n in names), "classifier")
        if self.training and current == phase and self.epoch == 1 and i == int(batch):
            die()
    Learner.one_batch = killing_one_batch
elif point == "writing":  # while the n-th checkpoint is written: its temporary file is complete, not yet in place
    replace = os.replace
    count = [0]
    def killing_replace(source, target):
        if str(target).endswith(".safetensors"):
            count[0] += 1
            if count[0] == int(where):
                die()
        return replace(source, target)
    os.replace = killing_replace
elif point == "phase-end":  # right after the training state records the n-th finished phase
    from tell_me_why.xaaenet import training
    write_json = training.write_json
    def killing_write_json(path, payload):
        result = write_json(path, payload)
        if path.name == training.STATE_FILE and len(payload["phases"]) == int(where):
            die()
        return result
    training.write_json = killing_write_json

from tell_me_why.app.cli import main
sys.exit(main(["run", data, "--out", out, *settings]))
"""


def _tmw(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _same_run(reference, other) -> list[str]:
    """What differs between two run directories, among everything a run computes (not timings)."""
    differences = []
    for path in sorted((reference / "models").glob("*.safetensors")):
        mine, theirs = load_file(path), load_file(other / "models" / path.name)
        if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
            differences.append(path.name)
    for name in ("latents.parquet", "features.parquet"):
        if not pd.read_parquet(reference / name).equals(pd.read_parquet(other / name)):
            differences.append(name)
    for name in ("metrics.json", "interpretation/axis.json"):
        if json.loads((reference / name).read_text()) != json.loads((other / name).read_text()):
            differences.append(name)
    if (reference / "interpretation/stats.csv").read_text() != (other / "interpretation/stats.csv").read_text():
        differences.append("interpretation/stats.csv")
    kept = ("metric_names", "values", "best_epoch", "best_value", "epochs_run", "modes")  # all but timings
    mine, theirs = ([{key: phase.get(key) for key in kept} for phase in json.loads((run / "training.json").read_text())]
                    for run in (reference, other))
    if mine != theirs:
        differences.append("training.json")
    return differences


@pytest.mark.slow
def test_a_run_killed_anywhere_in_training_resumes_bit_identical(tmp_path):
    data = image_folder(tmp_path / "data", per_class=24)  # 36 training images: 4 batches per epoch
    reference = tmp_path / "reference"
    finished = _tmw("none", "", str(data), str(reference), *SETTINGS)
    assert finished.returncode == 0, finished.stderr[-3000:]
    stops = [
        ("after-epoch", "adversarial:0"),  # inside phase 1
        ("mid-epoch", "autoencoder:2"),  # inside phase 2, mid-epoch, mid one-cycle schedule
        ("after-epoch", "autoencoder:1"),
        ("phase-end", "2"),  # at a phase boundary
        ("mid-epoch", "classifier:1"),  # inside phase 3, in its last epoch
        ("writing", "4"),  # during a checkpoint write
    ]
    for point, where in stops:
        out = tmp_path / f"{point}-{where.replace(':', '-')}"
        killed = _tmw(point, where, str(data), str(out), *SETTINGS)
        assert killed.returncode == -signal.SIGKILL, (point, where, killed.stderr[-3000:])
        resumed = _tmw("none", "", str(data), str(out), *SETTINGS)
        assert resumed.returncode == 0, (point, where, resumed.stderr[-3000:])
        assert not list((out / "models").glob(".*.tmp")), "partial files of the killed run are removed"
        assert not list((out / "models").glob("*.resume.safetensors")), "epoch checkpoints go once a phase ends"
        assert _same_run(reference, out) == [], (point, where)
