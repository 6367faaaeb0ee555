"""Resuming training exactly: everything a phase needs to continue as if it had never stopped.

After every epoch, :class:`EpochCheckpoint` writes one safetensors file (atomically) with the model's weights, the
optimiser's state, pending accumulated gradients, the random generators (torch, NumPy, Python and each data
loader's) and the state of the callbacks (best value, early-stopping counters, generator/critic modes, the
recorder's rows). :class:`ResumeAt` restores it and continues the phase at the next epoch with the same schedule.
Loading reads tensors and JSON only: nothing in the file can run code.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import TrackerCallback
from safetensors import safe_open
from safetensors.torch import save_file

from .._utils.devices import module_device
from .._utils.files import atomic_path

__all__ = ["random_states", "restore_random_states", "EpochCheckpoint", "ResumeAt", "read_epoch_checkpoint"]


def random_states(loaders) -> dict[str, Any]:
    """The state of every random generator a training epoch draws from, as JSON-ready values."""
    numpy_state = np.random.get_state()
    states = {
        "torch": _encoded(torch.get_rng_state()),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": _jsonable(random.getstate()),
        "loaders": [_jsonable(loader.rng.getstate()) for loader in loaders],
    }
    # Noise, masks and prior samples on an accelerator come from its own generators.
    if torch.cuda.is_available():
        states["cuda"] = [_encoded(state) for state in torch.cuda.get_rng_state_all()]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        states["mps"] = _encoded(torch.mps.get_rng_state())
    return states


def _encoded(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decoded(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def restore_random_states(states: dict[str, Any], loaders) -> None:
    """Put every generator back where :func:`random_states` found it."""
    torch.set_rng_state(_decoded(states["torch"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_decoded(state) for state in states["cuda"]])
    if "mps" in states and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.set_rng_state(_decoded(states["mps"]))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    random.setstate(_tuples(states["python"]))
    for loader, state in zip(loaders, states["loaders"], strict=True):
        loader.rng.setstate(_tuples(state))


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _stateful_callbacks(learn) -> dict[str, Callback]:
    """The callbacks that keep state between epochs, keyed by class and rank among those of its class (two early
    stoppings stay apart; stateless callbacks such as the progress bar may come and go)."""
    found: dict[str, Callback] = {}
    counts: dict[str, int] = {}
    for callback in learn.cbs:
        if hasattr(callback, "resume_state") or isinstance(callback, TrackerCallback):
            name = type(callback).__name__
            found[f"{name}#{counts.get(name, 0)}"] = callback
            counts[name] = counts.get(name, 0) + 1
    return found


def _tracker_state(callback: TrackerCallback) -> dict[str, Any]:
    return {name: float(getattr(callback, name)) if name == "best" else getattr(callback, name)
            for name in ("best", "wait") if hasattr(callback, name)}


class EpochCheckpoint(Callback):
    """After each epoch but the phase's last (once every other callback is done with it), write what
    :class:`ResumeAt` needs. (After the last epoch the phase's own checkpoint and state follow at once; a stop in
    between repeats that epoch, exactly.)"""

    order = 100

    def __init__(self, path: str | Path, phase: str, total_epochs: int) -> None:
        self.path, self.phase, self.total_epochs = Path(path), phase, total_epochs

    def after_epoch(self) -> None:
        learn = self.learn
        if learn.epoch + 1 >= self.total_epochs:
            return
        tensors: dict[str, torch.Tensor] = {}
        for name, value in learn.model.state_dict().items():
            tensors[f"model/{name}"] = value.detach().cpu().contiguous()
        parameters = [p for p, *_ in learn.opt.all_params(with_grad=False)]
        scalars: list[dict[str, Any]] = []
        for index, parameter in enumerate(parameters):
            state = learn.opt.state.get(parameter, {})
            scalars.append({})
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt/{index}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[-1][key] = value
            if parameter.grad is not None:
                tensors[f"grad/{index}"] = parameter.grad.detach().cpu().contiguous()
        callbacks: dict[str, Any] = {}
        for key, callback in _stateful_callbacks(learn).items():
            if hasattr(callback, "resume_state"):
                state, callback_tensors = callback.resume_state()
                callbacks[key] = state
                tensors.update({f"cb/{key}/{k}": v for k, v in callback_tensors.items()})
            else:
                callbacks[key] = _tracker_state(callback)
        state = {
            "phase": self.phase,
            "epoch": int(learn.epoch),
            "random": random_states(learn.dls.loaders),
            "optimizer": {"scalars": scalars, "hypers": _jsonable_hypers(learn.opt.hypers)},
            "callbacks": callbacks,
            "recorder": [[float(v) for v in row] for row in learn.recorder.values],
            "smooth_loss_count": learn.recorder.smooth_loss.count,
            # Per batch, for the recorder's plots (plot_loss): the smoothed losses, learning rates, epoch ends.
            "losses": [float(v) for v in learn.recorder.losses],
            "lrs": [float(v) for v in learn.recorder.lrs],
            "iters": [int(v) for v in learn.recorder.iters],
            "train_iter": int(learn.train_iter),
        }
        tensors["recorder/smooth_loss"] = learn.recorder.smooth_loss.val.detach().cpu().reshape(-1).contiguous()
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})


def _jsonable_hypers(hypers) -> list[dict[str, float]]:
    return [{key: float(value) for key, value in group.items()} for group in hypers]


def read_epoch_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON state and the tensors of an :class:`EpochCheckpoint` file."""
    with safe_open(str(path), framework="pt") as handle:
        state = json.loads(handle.metadata()["state"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return state, tensors


class ResumeAt(Callback):
    """Continue a phase of ``total_epochs`` after the epoch saved in ``state``/``tensors``: the fit it is given
    runs the remaining epochs, numbered and scheduled (``pct_train``) as in the uninterrupted run."""

    order = -5  # before every callback that reads the epoch number, after fastai's TrainEvalCallback

    def __init__(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], total_epochs: int) -> None:
        self.state, self.tensors, self.total_epochs = state, tensors, total_epochs
        self.offset = state["epoch"] + 1
        self.restored = False

    def before_fit(self) -> None:
        self.restored = False

    def before_epoch(self) -> None:
        learn = self.learn
        if not self.restored:
            self._restore()
            self.restored = True
        learn.n_epoch = self.total_epochs
        learn.epoch = learn.epoch + self.offset

    def _restore(self) -> None:
        learn = self.learn
        device = module_device(learn.model)
        parameters = [p for p, *_ in learn.opt.all_params(with_grad=False)]
        optimizer = self.state["optimizer"]
        for index, parameter in enumerate(parameters):
            state = dict(optimizer["scalars"][index])
            prefix = f"opt/{index}/"
            for key, value in self.tensors.items():
                if key.startswith(prefix):
                    state[key[len(prefix):]] = value.to(device).clone()
            if state:
                learn.opt.state[parameter] = state
            grad = self.tensors.get(f"grad/{index}")
            parameter.grad = None if grad is None else grad.to(device).clone()
        for group, saved in zip(learn.opt.hypers, optimizer["hypers"], strict=True):
            group.update(saved)
        present = _stateful_callbacks(learn)
        if set(present) != set(self.state["callbacks"]):
            raise ValueError(f"This phase runs other callbacks ({sorted(present)}) than the interrupted run did "
                             f"({sorted(self.state['callbacks'])}): resume with the same settings and callbacks.")
        for name, saved in self.state["callbacks"].items():
            callback = present[name]
            if hasattr(callback, "load_resume_state"):
                prefix = f"cb/{name}/"
                callback.load_resume_state(saved, {k[len(prefix):]: v for k, v in self.tensors.items()
                                                   if k.startswith(prefix)})
            else:
                for key, value in saved.items():
                    setattr(callback, key, value)
        learn.recorder.values = [list(row) for row in self.state["recorder"]]
        # The training loss the recorder logs is a running average over batches, carried across epochs.
        smooth = learn.recorder.smooth_loss
        smooth.count = self.state["smooth_loss_count"]
        smooth.val = self.tensors["recorder/smooth_loss"].reshape(smooth.val.shape).to(device).clone()
        learn.recorder.losses = [torch.tensor(v) for v in self.state["losses"]]
        learn.recorder.lrs, learn.recorder.iters = list(self.state["lrs"]), list(self.state["iters"])
        learn.train_iter = self.state["train_iter"]
        restore_random_states(self.state["random"], learn.dls.loaders)
