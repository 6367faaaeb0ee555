"""The cost of explainability: what a plain model reaches on the same split, shown beside xAAEnet's accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

__all__ = ["pixel_logistic_regression", "PIXEL_BASELINE_SIDE"]

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
