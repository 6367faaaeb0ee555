"""The cost of explainability: what a plain model reaches on the same split, shown beside xAAEnet's accuracy."""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ..xaaenet.encoders import Pretrained
from .data import seed_loaders

if TYPE_CHECKING:
    from fastai.data.core import DataLoaders

__all__ = ["pixel_logistic_regression", "PIXEL_BASELINE_SIDE", "EncoderClassifier", "encoder_cross_entropy"]

logger = logging.getLogger(__name__)

# Images are shrunk to at most this side first: seconds on a laptop CPU for a few thousand images, and small
# images are where a linear model on pixels is a fair baseline.
PIXEL_BASELINE_SIDE = 32


def _pixels(images: torch.Tensor, side: int) -> np.ndarray:
    if max(images.shape[-2:]) > side:
        images = functional.adaptive_avg_pool2d(images.float(), side)
    return images.flatten(1).numpy()


def pixel_logistic_regression(train_images: torch.Tensor, train_labels: torch.Tensor, valid_images: torch.Tensor,
                              valid_labels: torch.Tensor, side: int = PIXEL_BASELINE_SIDE, seed: int = 0) -> float:
    """Validation accuracy of an L2-regularised logistic regression on standardised raw pixels (images shrunk to
    at most ``side`` pixels a side), trained on the training images: the plainest model of the same data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000, random_state=seed))
    model.fit(_pixels(train_images, side), train_labels.numpy())
    return float((model.predict(_pixels(valid_images, side)) == valid_labels.numpy()).mean())


class EncoderClassifier(nn.Module):
    """A plain classifier: a built-in encoder (the one xAAEnet would use, with the same input normalisation) and
    one linear layer on its flattened feature map, the features xAAEnet's latent head reads. No decoder, no critic,
    no latent bottleneck: what the encoder alone reaches with cross-entropy."""

    def __init__(self, encoder: str, input_size: int | tuple[int, int], input_channels: int = 3,
                 pretrained: Pretrained = False, classes: int = 2) -> None:
        from ..xaaenet.blocks import ImageNetNormalize
        from ..xaaenet.encoders import build_encoder, encoder_normalisation

        super().__init__()
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        mean, std = encoder_normalisation(encoder)
        self.input_transform = ImageNetNormalize(input_channels, mean=mean, std=std)
        self.encoder = build_encoder(encoder, pretrained=pretrained, in_channels=input_channels)
        self.imagenet_weights = bool(self.encoder.imagenet_weights)
        with torch.no_grad():  # the feature map's size, from one dry pass (in eval mode: BatchNorm stays as it is)
            features = self.encoder.eval()(torch.zeros(1, input_channels, height, width)).numel()
        self.encoder.train()
        self.head = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.input_transform(x)).flatten(1))


@contextmanager
def _own_random_state(seed: int, loaders: Sequence[Any]) -> Iterator[None]:
    """Seed every generator the baseline draws from, and put them back afterwards: training the baseline must not
    change what the run draws next (its later steps, or a resumed run, stay as they were without ``--baseline``).
    The generators are those a resumed training restores (torch's, CUDA's, MPS's, NumPy's, Python's and each data
    loader's)."""
    from ..xaaenet.resume import random_states, restore_random_states  # fastai: imported when a baseline trains

    saved = random_states(loaders)
    try:
        torch.manual_seed(seed)  # the CPU's and every accelerator's
        random.seed(seed)
        np.random.seed(seed)
        seed_loaders(loaders, seed)
        yield
    finally:
        restore_random_states(saved, loaders)


def encoder_cross_entropy(dls: DataLoaders, *, encoder: str, pretrained: Pretrained, input_channels: int,
                          epochs: int, lr_max: float, lr_max_factor: float = 3.0, patience: int = 3,
                          seed: int = 0) -> dict[str, Any]:
    """Train :class:`EncoderClassifier` with cross-entropy alone on ``dls`` (the run's own split, input size and
    preprocessing) and return its validation ``accuracy``, training ``seconds``, ``epochs`` planned,
    ``epochs_run`` and ``best_epoch`` (counted from 0), and whether it started from ``imagenet_weights``.

    The optimiser and learning rates are xAAEnet's classifier phase's (Adam, constant ``lr_max`` for the head and
    ``lr_max / lr_max_factor`` for the encoder); early stopping after ``patience`` epochs without a lower validation
    cross-entropy, and the epoch with the lowest one is kept, as xAAEnet's classifier phase keeps its own."""
    for name, value in (("epochs", epochs), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    from fastai.callback.tracker import EarlyStoppingCallback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy

    from .._utils.files import load_weights
    from ..xaaenet.callbacks import BestWeightsCheckpoint

    with _own_random_state(seed, dls.loaders), tempfile.TemporaryDirectory() as folder:
        size = tuple(dls.valid.one_batch()[0].shape[-2:])
        model = EncoderClassifier(encoder, size, input_channels, pretrained)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy],
                        splitter=lambda m: [list(m.encoder.parameters()), list(m.head.parameters())])
        best = BestWeightsCheckpoint(Path(folder) / "best.safetensors", "valid_loss", lower_is_better=True)
        early = EarlyStoppingCallback(monitor="valid_loss", comp=np.less, min_delta=1e-4, patience=patience)
        started = time.perf_counter()
        learn.fit(epochs, lr=slice(lr_max / lr_max_factor, lr_max), cbs=[best, early])
        seconds = time.perf_counter() - started
        load_weights(model, best.path)
        model.eval()
        right = total = 0
        with torch.no_grad():
            for xb, yb in dls.valid:
                right += int((model(xb).argmax(1) == yb.view(-1)).sum())
                total += len(yb)
    result = {"accuracy": right / total, "seconds": round(seconds, 2), "epochs": epochs,
              "epochs_run": len(learn.recorder.values), "best_epoch": best.best_epoch,
              "imagenet_weights": model.imagenet_weights}
    logger.info("baseline: the same encoder with cross-entropy alone reaches %.1f%% validation accuracy (epoch %d of "
                "%d kept, %.0f s)", 100 * result["accuracy"], best.best_epoch + 1, result["epochs_run"], seconds)
    return result
