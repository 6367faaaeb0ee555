"""How each pixel cue lines up with the decision axis: signed r2, bootstrap interval, permutation p, BH q.

Two permutation tests, two questions:

- Is there a decision axis at all? The axis is refitted on permuted labels
  (:func:`tell_me_why.decision_axis.fit_decision_axis`); only an axis whose held-out scores predict the label
  better than those refits is ``reliable``. This is what accounts for the axis having been fitted to the labels.
- Does a feature line up with it? Its correlation with the held-out axis scores is compared with the
  correlations after permuting the feature across images. (Refitting on permuted labels cannot answer this one:
  in a latent space whose main structure is the class, axes fitted to random labels find the same direction, so
  every feature would look no better than chance however strongly it tracks the decision.)

A feature's ``p_value`` is the larger of the two (``p_alignment`` and the axis's p-value): an intersection-union
test of "the axis is real *and* the feature lines up with it", so every feature p-value accounts for the axis
having been fitted to the labels. q-values control the false discovery rate over the features (Benjamini-
Hochberg). A feature is called significant only when its q-value is below ``alpha`` *and* the axis is reliable:
alignment with an axis that does not predict the label is not evidence about the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._utils.stats import columnwise_correlation
from .axis import AxisFit

__all__ = ["benjamini_hochberg", "feature_axis_statistics", "STAT_COLUMNS"]

STAT_COLUMNS = ("r", "r2_signed", "ci_low", "ci_high", "p_alignment", "p_value", "q_value", "significant", "n")
_BOOTSTRAP_CHUNK = 25


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    return q


def _bootstrap_signed_r2(
    axis: np.ndarray, feature: np.ndarray, n_bootstrap: int, rng: np.random.Generator, level: float
) -> tuple[float, float]:
    draws = []
    n = len(axis)
    for start in range(0, n_bootstrap, _BOOTSTRAP_CHUNK):
        index = rng.integers(0, n, (min(_BOOTSTRAP_CHUNK, n_bootstrap - start), n))
        r = columnwise_correlation(axis[index].T, feature[index].T)
        draws.append(np.sign(r) * r**2)
    signed = np.concatenate(draws)
    tail = (1 - level) / 2
    low, high = np.quantile(signed, [tail, 1 - tail])
    return float(low), float(high)


def feature_axis_statistics(
    axis: AxisFit,
    features: pd.DataFrame,
    *,
    n_permutations: int = 999,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    confidence: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """One row per feature column of ``features`` (rows aligned with the axis scores), ranked by |signed r2|.

    Each feature uses the rows where it is finite. Columns: ``r`` (correlation with the held-out axis; positive
    means the feature grows toward class A), ``r2_signed``, the bootstrap interval ``ci_low``/``ci_high`` of
    the signed r2, ``p_alignment`` (feature permutations against the held-out scores), ``p_value`` (the larger
    of ``p_alignment`` and the axis's label-permutation p-value), ``q_value``, ``significant``
    (``q_value < alpha`` on a reliable axis) and ``n``.
    """
    rng = np.random.default_rng(random_state)
    orders: dict[int, np.ndarray] = {}  # one set of permutations per row count, shared by the features
    rows = []
    for name in features.columns:
        values = features[name].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        scores, values = axis.scores[finite], values[finite]
        r = float(columnwise_correlation(scores[:, None], values)[0])
        if len(values) not in orders:
            orders[len(values)] = np.argsort(rng.random((n_permutations, len(values))), axis=1)
        permuted_r = columnwise_correlation(values[orders[len(values)]].T, scores)
        p_alignment = float((1 + np.sum(np.abs(permuted_r) >= abs(r) - 1e-12)) / (1 + n_permutations))
        ci_low, ci_high = _bootstrap_signed_r2(scores, values, n_bootstrap, rng, confidence)
        rows.append({"feature": name, "r": r, "r2_signed": float(np.sign(r) * r**2), "ci_low": ci_low,
                     "ci_high": ci_high, "p_alignment": p_alignment, "p_value": max(p_alignment, axis.p_value),
                     "n": int(finite.sum())})
    table = pd.DataFrame(rows, columns=["feature", "r", "r2_signed", "ci_low", "ci_high", "p_alignment", "p_value",
                                        "n"])
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    table["significant"] = (table["q_value"] < alpha) & axis.reliable
    order = np.argsort(-np.abs(table["r2_signed"].to_numpy()), kind="stable")
    return table.iloc[order].set_index("feature")[list(STAT_COLUMNS)]
