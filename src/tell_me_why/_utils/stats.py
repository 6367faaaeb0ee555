"""Pearson correlation, vectorised: the one implementation every statistic of the package uses; and the test of
whether a classifier beats always answering the majority class."""

from __future__ import annotations

import numpy as np

__all__ = ["columnwise_correlation", "pearson_r", "better_than_chance", "CHANCE_ALPHA"]

# The classifier counts as better than chance when a one-sided binomial test of its validation accuracy against
# always answering the majority class gives p below this.
CHANCE_ALPHA = 0.05


def columnwise_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the matching column of ``b`` (or with a 1-D ``b``);
    0 where either column is constant."""
    if b.ndim == 1:
        b = b[:, None]
    a_c, b_c = a - a.mean(0), b - b.mean(0)
    denominator = np.sqrt((a_c**2).sum(0) * (b_c**2).sum(0))
    return np.where(denominator > 0, (a_c * b_c).sum(0) / np.where(denominator > 0, denominator, 1.0), 0.0)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 when either is constant."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    return float(columnwise_correlation(x[:, None], y)[0])


def better_than_chance(targets, predicted, alpha: float = CHANCE_ALPHA) -> dict:
    """Validation accuracy against always answering the majority class: a one-sided exact binomial test."""
    from scipy.stats import binomtest

    targets, predicted = np.asarray(targets), np.asarray(predicted)
    n, correct = len(targets), int((targets == predicted).sum())
    majority = float(np.bincount(targets).max() / n) if n else 1.0
    p_value = float(binomtest(correct, n, majority, alternative="greater").pvalue) if n else 1.0
    return {"accuracy": correct / n if n else float("nan"), "images": n, "majority_rate": majority,
            "p_value": p_value, "alpha": alpha, "better_than_chance": bool(p_value < alpha)}
