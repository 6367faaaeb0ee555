"""The model's decision axis in latent space, fitted honestly: cross-fitted, sign-anchored, permutation-tested.

The axis is the first PLS component of ``z`` against the binary label. Fitted and scored on the same images,
as the original did, PLS separates even pure-noise latents when there are fewer images than dimensions. Here each
image's axis score comes from a fit that did not see it (k-fold cross-fitting, or a fit on the training latents),
and every statistic is compared with the same procedure run on permuted labels.

For a single response the first PLS weight vector has a closed form, ``w = X'y / |X'y|`` on standardised ``X``
(what scikit-learn's NIPALS converges to in one step), so the fits of all permutations are one matrix product.
Its sign is anchored by construction: training scores ``Xw`` correlate positively with ``y``, so a positive
score always means "toward class A" (label 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from .._utils.stats import columnwise_correlation

__all__ = ["AxisFit", "fit_decision_axis", "standardise_columns", "pls_components"]


def standardise_columns(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std (ddof=1) of ``train``; constant columns get std 1 (as scikit-learn's PLS does)."""
    mean = train.mean(0)
    std = train.std(0, ddof=1) if len(train) > 1 else np.ones(train.shape[1])
    return mean, np.where(std > 0, std, 1.0)


def _first_weights(x_train: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """PLS1 weights (D, P) for each label column of ``labels`` (n, P): ``X'(y - mean y)``, unit norm."""
    weights = x_train.T @ (labels - labels.mean(0))
    norm = np.linalg.norm(weights, axis=0)
    return weights / np.where(norm > 0, norm, 1.0)


def pls_components(
    z_train: np.ndarray, y_train: np.ndarray, z_apply: np.ndarray, n_components: int = 2
) -> np.ndarray:
    """Scores (len(z_apply), n_components) of the first PLS components fitted on ``(z_train, y_train)``.

    Sequential PLS (deflation of X after each component), equal to scikit-learn's ``PLSRegression`` scores on
    the same data, with each component's sign anchored so that its training scores correlate positively with y.
    """
    mean, std = standardise_columns(z_train)
    x_train, x_apply = (z_train - mean) / std, (z_apply - mean) / std
    y = y_train.reshape(-1, 1).astype(np.float64)
    scores = np.empty((len(z_apply), n_components))
    for k in range(n_components):
        w = _first_weights(x_train, y)[:, 0]
        t_train, t_apply = x_train @ w, x_apply @ w
        scores[:, k] = t_apply
        denominator = t_train @ t_train
        if denominator == 0:
            scores[:, k + 1 :] = 0.0
            break
        loading = x_train.T @ t_train / denominator
        x_train = x_train - np.outer(t_train, loading)
        x_apply = x_apply - np.outer(t_apply, loading)
    return scores


@dataclass
class AxisFit:
    """Held-out axis scores and how well they predict the label.

    ``scores`` (N,) is PLS component 1 and ``second`` (N,) component 2, both held out. ``r`` is the held-out
    correlation of the axis with the label; ``p_value`` compares it with ``permuted_r``, the same statistic for
    axes refitted on permuted labels (one-sided: the axis is anchored toward class A); ``reliable`` is
    ``p_value < alpha``.
    """

    scores: np.ndarray
    second: np.ndarray
    r: float
    p_value: float
    reliable: bool
    method: str
    n_permutations: int
    alpha: float
    permuted_r: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {
            "r": self.r,
            "r2": self.r**2,
            "p_value": self.p_value,
            "reliable": self.reliable,
            "method": self.method,
            "n_permutations": self.n_permutations,
            "alpha": self.alpha,
        }


def _check_binary(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    values = set(np.unique(labels).tolist())
    if not values <= {0.0, 1.0}:
        raise ValueError(f"{name} must be binary (1 = class A, 0 = class B); found values {sorted(values)[:10]}.")
    counts = [int((labels == v).sum()) for v in (0.0, 1.0)]
    if min(counts) < 2:
        raise ValueError(f"{name} needs at least 2 images of each class; found {counts[1]} of class A and "
                         f"{counts[0]} of class B.")
    return labels


def fit_decision_axis(
    z: np.ndarray,
    target: np.ndarray,
    *,
    z_train: np.ndarray | None = None,
    target_train: np.ndarray | None = None,
    n_splits: int = 5,
    n_permutations: int = 999,
    alpha: float = 0.01,
    random_state: int = 0,
) -> AxisFit:
    """Fit the decision axis of ``z`` (N, D) against ``target`` (N,): held-out scores and a permutation test.

    With ``z_train``/``target_train`` the axis is fitted on the training latents and applied to ``z``;
    otherwise each of ``n_splits`` stratified folds is scored by a fit on the others. The axis is
    ``reliable`` when its permutation p-value is below ``alpha`` (default 0.01: everything read off the axis
    depends on this gate, so it is stricter than the usual 5 %).
    """
    z = np.asarray(z, dtype=np.float64)
    y = _check_binary(target, "target_score")
    rng = np.random.default_rng(random_state)
    if z_train is not None:
        if target_train is None:
            raise ValueError("z_train needs target_train (the training labels, 1 = class A).")
        z_fit = np.asarray(z_train, dtype=np.float64)
        y_fit = _check_binary(target_train, "target_train")
        if z_fit.shape[1] != z.shape[1]:
            raise ValueError(f"z_train has {z_fit.shape[1]} dimensions, z has {z.shape[1]}.")
        # Permute training and evaluation labels together: under the null the labels say nothing about z, on
        # either side. (Permuting only the training labels is not a null when z has class structure: axes
        # fitted to random labels then still find the class direction and separate the true labels.)
        pooled = np.concatenate([y_fit, y])
        labels = np.column_stack([pooled] + [rng.permutation(pooled) for _ in range(n_permutations)])
        mean, std = standardise_columns(z_fit)
        scores_all = ((z - mean) / std) @ _first_weights((z_fit - mean) / std, labels[: len(y_fit)])
        two = pls_components(z_fit, y_fit, z)
        evaluation_labels = labels[len(y_fit) :]
        method = "fitted on the training latents"
    else:
        splits = min(n_splits, int(min((y == 0).sum(), (y == 1).sum())))
        if splits < 2:
            raise ValueError("Cross-fitting needs at least 2 images of each class.")
        # Stratify on "same class as the first image", not on the label itself: the folds then do not depend
        # on which class is called A, and swapping A and B exactly negates the axis and every signed r2.
        strata = y == y[0]
        folds = list(StratifiedKFold(splits, shuffle=True, random_state=random_state).split(z, strata))
        labels = np.column_stack([y] + [rng.permutation(y) for _ in range(n_permutations)])
        scores_all = np.empty((len(z), n_permutations + 1))
        two = np.empty((len(z), 2))
        for train_index, test_index in folds:
            mean, std = standardise_columns(z[train_index])
            x_train, x_test = (z[train_index] - mean) / std, (z[test_index] - mean) / std
            scores_all[test_index] = x_test @ _first_weights(x_train, labels[train_index])
            two[test_index] = pls_components(z[train_index], y[train_index], z[test_index])
        evaluation_labels = labels
        method = f"cross-fitted, {splits}-fold"
    correlations = columnwise_correlation(scores_all, evaluation_labels)
    r, permuted_r = float(correlations[0]), correlations[1:]
    p_value = float((1 + np.sum(permuted_r >= r)) / (1 + n_permutations))
    return AxisFit(
        scores=scores_all[:, 0],
        second=two[:, 1],
        r=r,
        p_value=p_value,
        reliable=bool(p_value < alpha),
        method=method,
        n_permutations=n_permutations,
        alpha=alpha,
        permuted_r=permuted_r,
    )
