"""fastai callbacks, corruption transforms and metrics used by `train_xaaenet`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback, CancelBatchException
from fastai.learner import Metric
from torch import Tensor

from .._utils.files import save_weights
from .losses import critic_loss

__all__ = [
    "AddGaussianNoise",
    "RandomMasking",
    "CorruptionCallback",
    "UnfreezeFcCritAdaptative",
    "GetLatentSpace",
    "LossAttrMetric",
    "PriorGapMetric",
    "BatchGradientAccumulation",
    "BestWeightsCheckpoint",
    "LatentCriticStep",
]


class AddGaussianNoise:
    """Add Gaussian noise to a batch of images (values stay in [0, 1])."""

    def __init__(self, mean: float = 0.0, std: float = 0.05):
        self.mean, self.std = mean, std

    def __call__(self, x: Tensor) -> Tensor:
        return (x + torch.randn_like(x) * self.std + self.mean).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"AddGaussianNoise(mean={self.mean}, std={self.std})"


class RandomMasking:
    """Zero out random square patches independently per image (``mask_ratio`` of the patch grid)."""

    def __init__(self, mask_ratio: float = 0.3, patch_size: int = 16):
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}.")
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}.")
        self.mask_ratio, self.patch_size = mask_ratio, patch_size

    def __call__(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        rows, cols = height // self.patch_size, width // self.patch_size
        n_masked = int(rows * cols * self.mask_ratio)
        if n_masked == 0:
            return x
        # The n_masked smallest of B x (rows*cols) uniform draws: an independent random subset per image.
        ranks = torch.rand(batch, rows * cols, device=x.device).argsort(dim=1).argsort(dim=1)
        grid = (ranks >= n_masked).to(x.dtype).view(batch, 1, rows, cols)
        keep = grid.repeat_interleave(self.patch_size, dim=2).repeat_interleave(self.patch_size, dim=3)
        # Border pixels outside the whole-patch grid are never masked.
        keep = torch.nn.functional.pad(keep, (0, width - keep.shape[-1], 0, height - keep.shape[-2]), value=1.0)
        return x * keep

    def __repr__(self) -> str:
        return f"RandomMasking(mask_ratio={self.mask_ratio}, patch_size={self.patch_size})"


class CorruptionCallback(Callback):
    """Corrupt training batches in place of ``xb`` and keep the clean batch in ``self.clean`` for the loss.

    Validation batches are left untouched (``clean`` is then the batch itself), so validation losses and
    everything extracted from the model see real images.
    """

    def __init__(self, corruption_tfms: Sequence[Callable[[Tensor], Tensor]]):
        self.corruption_tfms = list(corruption_tfms)
        self.clean: Tensor | None = None

    def before_batch(self):
        self.clean = self.learn.xb[0]
        if not self.training:
            return
        corrupted = self.clean
        for tfm in self.corruption_tfms:
            corrupted = tfm(corrupted)
        self.learn.xb = (corrupted, *self.learn.xb[1:])


class UnfreezeFcCritAdaptative(Callback):
    """Alternate generator and critic epochs of the latent GAN, driven by the critic's validation loss.

    The decision always reads the same quantity, the critic's loss on validation batches (``crit_loss``, logged
    in both modes), averaged over the last ``window_size`` epochs: it is ``ln 2 = 0.693`` when the critic cannot
    tell encoded ``z`` from prior samples. Above ``high_threshold`` the critic is losing, so it trains; below
    ``low_threshold`` it is winning, so the encoder (generator) trains; in between the two alternate every
    ``switch_every`` epochs. The first ``switch_every`` epochs train the critic, the next ``switch_every`` the
    generator. ``modes`` records the mode of each epoch.
    """

    order = 60  # after_epoch must follow the Recorder's

    def __init__(
        self, switch_every: int = 3, low_threshold: float = 0.15, high_threshold: float = 0.6, window_size: int = 3
    ):
        if low_threshold >= high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) must be below high_threshold ({high_threshold}).")
        self.switch_every, self.window_size = switch_every, window_size
        self.low_threshold, self.high_threshold = low_threshold, high_threshold
        self.modes: list[str] = []
        self.critic_history: list[float] = []

    def before_fit(self):
        self.modes, self.critic_history = [], []

    def resume_state(self) -> tuple[dict, dict]:
        return {"modes": list(self.modes), "critic_history": list(self.critic_history)}, {}

    def load_resume_state(self, state: dict, tensors: dict) -> None:
        self.modes, self.critic_history = list(state["modes"]), list(state["critic_history"])

    def _set_mode(self, generator: bool) -> None:
        model = self.learn.model
        model.gen_train = generator
        model.set_trainable_groups({"encoder", "latent"} if generator else {"critic"})
        self.modes.append("generator" if generator else "critic")

    def next_mode_is_generator(self, epoch: int) -> bool:
        """The rule, from the epoch number and the critic losses seen so far."""
        if epoch < self.switch_every:
            return False
        if epoch < 2 * self.switch_every or not self.critic_history:
            return True
        window = float(np.mean(self.critic_history[-self.window_size :]))
        if window > self.high_threshold:
            return False
        if window < self.low_threshold:
            return True
        run = 0
        for mode in reversed(self.modes):
            if mode != self.modes[-1]:
                break
            run += 1
        switch = run >= self.switch_every
        return (self.modes[-1] == "generator") != switch

    def before_epoch(self):
        self._set_mode(self.next_mode_is_generator(self.epoch))

    def after_epoch(self):
        names = self.recorder.metric_names
        if "crit_loss" not in names:
            raise RuntimeError("UnfreezeFcCritAdaptative needs the LossAttrMetric('crit_loss') metric.")
        self.critic_history.append(float(self.recorder.values[-1][names.index("crit_loss") - 1]))


class GetLatentSpace(Callback):
    """Collect the latent vectors ``z`` of validation batches into ``learn.z_valid``."""

    def before_validate(self):
        self._parts: list[Tensor] = []

    def after_batch(self):
        if not self.training:
            self._parts.append(self.learn.model.z.detach())

    def after_validate(self):
        if self._parts:
            self.learn.z_valid = torch.cat(self._parts)


class LossAttrMetric(Metric):
    """Average (weighted by batch size) a scalar attribute the model sets in its loss (e.g. ``adv_loss``)."""

    def __init__(self, attr: str):
        self.attr = attr
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        value = getattr(learn.model, self.attr)
        batch = learn.xb[0].shape[0]
        self.total += float(value.detach() if isinstance(value, Tensor) else value) * batch
        self.count += batch

    @property
    def value(self):
        return self.total / self.count if self.count else float("nan")

    @property
    def name(self):
        return self.attr


class PriorGapMetric(Metric):
    """How far validation ``z`` is from N(0, I): mean over dimensions of ``mean_d**2 + (var_d - 1)**2``.

    It does not depend on the critic, so it compares epochs trained in either adversarial mode.
    """

    name = "prior_gap"

    def reset(self):
        self.parts: list[Tensor] = []

    def accumulate(self, learn):
        self.parts.append(learn.model.z.detach().double().cpu())

    @property
    def value(self):
        z = torch.cat(self.parts)
        if len(z) < 2:
            return float("nan")
        return float((z.mean(0) ** 2 + (z.var(0) - 1.0) ** 2).mean())


class BatchGradientAccumulation(Callback):
    """Step the optimizer once every ``n_batches`` training batches, with the averaged gradient.

    fastai's ``GradientAccumulation`` counts samples, not batches. Gradients left by an earlier fit (another
    phase) are cleared before the first batch.
    """

    order, run_valid = -10, False

    def __init__(self, n_batches: int):
        if n_batches < 1:
            raise ValueError(f"grad_accum must be a positive number of batches, got {n_batches}.")
        self.n_batches = n_batches

    def before_fit(self):
        self.count = 0
        for parameter in self.learn.model.parameters():
            parameter.grad = None

    def resume_state(self) -> tuple[dict, dict]:
        return {"count": self.count}, {}  # the pending gradients are saved with the parameters

    def load_resume_state(self, state: dict, tensors: dict) -> None:
        self.count = state["count"]

    def after_loss(self):
        self.learn.loss_grad = self.learn.loss_grad / self.n_batches

    def before_step(self):
        self.count += 1
        if self.count % self.n_batches:
            raise CancelBatchException()  # skips this step and the zero_grad after it


class BestWeightsCheckpoint(Callback):
    """Save the model's weights (safetensors, atomically) whenever the monitored validation value improves."""

    order = 60  # after the Recorder has logged the epoch

    def __init__(self, path: str | Path, monitor: str, lower_is_better: bool, metadata: dict[str, str] | None = None):
        self.path, self.monitor, self.lower_is_better = Path(path), monitor, lower_is_better
        self.metadata = metadata or {}
        self.best: float | None = None
        self.best_epoch: int | None = None

    def before_fit(self):
        names = self.recorder.metric_names[1:-1]
        if self.monitor not in names:
            raise ValueError(f"Cannot monitor {self.monitor!r}: the values logged in this phase are {names}.")
        self.index = names.index(self.monitor)
        self.best, self.best_epoch = None, None

    def resume_state(self) -> tuple[dict, dict]:
        return {"best": self.best, "best_epoch": self.best_epoch}, {}

    def load_resume_state(self, state: dict, tensors: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def after_epoch(self):
        value = float(self.recorder.values[-1][self.index])
        if math.isnan(value):
            improved = self.best is None
        elif self.best is None or math.isnan(self.best):
            improved = True
        else:
            improved = value < self.best if self.lower_is_better else value > self.best
        if improved:
            self.best, self.best_epoch = value, self.epoch
            save_weights(self.learn.model, self.path, {**self.metadata, "epoch": str(self.epoch)})


class LatentCriticStep(Callback):
    """Keep the critic learning while other parts train: one critic step after each training batch.

    The step uses the batch's ``z`` (detached) against fresh prior samples, with the critic's own Adam
    optimizer, so the critic only ever learns from its own loss; the generator term of the main loss reaches
    the encoder alone (the critic's parameters are frozen for the main step). Without it, a critic frozen after
    phase 1 is soon fooled by an encoder that drifts away from the prior.
    """

    order, run_valid = 70, False

    def __init__(self, lr: float):
        self.lr = lr

    def before_fit(self):
        self.optimizer = torch.optim.Adam(self.learn.model.critic.parameters(), lr=self.lr, betas=(0.5, 0.999))

    def resume_state(self) -> tuple[dict, dict]:
        saved = self.optimizer.state_dict()
        tensors = {f"{index}/{key}": value for index, state in saved["state"].items()
                   for key, value in state.items()}
        return {"param_groups": saved["param_groups"]}, tensors

    def load_resume_state(self, state: dict, tensors: dict) -> None:
        per_parameter: dict[int, dict] = {}
        for name, value in tensors.items():
            index, key = name.split("/", 1)
            per_parameter.setdefault(int(index), {})[key] = value
        self.optimizer.load_state_dict({"state": per_parameter, "param_groups": state["param_groups"]})

    def after_batch(self):
        if not self.training:
            return
        critic = self.learn.model.critic
        z = self.learn.model.z.detach()
        for parameter in critic.parameters():
            parameter.requires_grad_(True)
        try:
            with torch.enable_grad():
                loss = critic_loss(critic(torch.randn_like(z)), critic(z))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        finally:
            for parameter in critic.parameters():
                parameter.requires_grad_(False)
                parameter.grad = None
