"""Relate the model's decision axis in latent space to pixel cues, with statistics that hold up.

``run_pls_feature_figures`` keeps the original call and returned keys (``alignment_fig``, ``importance_fig``,
``importance_rank``, ``alignment``) and adds ``stats`` (one row per feature) and ``axis`` (is the axis itself
worth interpreting?). See :mod:`tell_me_why.decision_axis` and :mod:`tell_me_why.feature_statistics` for the
method: a cross-fitted, sign-anchored PLS axis, a permutation test that refits it on permuted labels (is the
axis real?) and per-feature permutation tests against its held-out scores (which cues line up with it?).
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._utils.files import PATH_COLUMN
from .._utils.plotting import CLASS_A_COLOR, CLASS_B_COLOR, figure_style, finish_figure
from .._utils.stats import pearson_r
from .axis import AxisFit, fit_decision_axis, pls_components
from .definitions import ORIGINAL_SCORE_NAMES
from .statistics import feature_axis_statistics
from .table import describe_feature_scores

__all__ = [
    "DEFAULT_FEATURE_SCORE_COLUMNS",
    "run_pls_feature_figures",
    "supervised_pls_latent",
    "compute_pls_feature_alignment",
    "plot_feature_alignment_panels",
    "plot_feature_importance_ranking",
    "pearson_r2_signed",
]

DEFAULT_FEATURE_SCORE_COLUMNS: tuple[str, ...] = ORIGINAL_SCORE_NAMES
_LATENT_PATH_COLUMNS = ("path", PATH_COLUMN)
_NOT_RELIABLE_COLOR = "#9A9A9A"
_MIN_FEATURE_ROWS = 3


def pearson_r2_signed(x: np.ndarray, y: np.ndarray) -> float:
    """sign(r) * r**2 of the Pearson correlation of ``x`` and ``y`` (0 when either is constant)."""
    r = pearson_r(x, y)
    return float(np.sign(r) * r**2)


def supervised_pls_latent(
    z: np.ndarray, target_score: np.ndarray, *, n_components: int = 2
) -> tuple[np.ndarray, None, float, float]:
    """In-sample PLS scores of ``z`` against the target, sign-anchored toward class A (descriptive only).

    Returns ``(scores, None, r2_c1, r2_c2)``; the original returned the fitted scikit-learn model second.
    In-sample scores overfit when images are few relative to dimensions: use :func:`run_pls_feature_figures`
    (cross-fitted) for anything you want to conclude from.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(target_score, dtype=np.float64).ravel()
    scores = pls_components(z, y, z, n_components)
    r2 = [pearson_r(scores[:, k], y) ** 2 for k in range(n_components)]
    return scores, None, r2[0], r2[1] if n_components > 1 else float("nan")


def compute_pls_feature_alignment(
    pls_c1: np.ndarray, pls_c2: np.ndarray, features_z: np.ndarray, feature_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per feature: ``vector_xy`` (r with PLS 1 and PLS 2), ``r2_signed`` and ``linregress_r`` with PLS 1.

    ``p_value`` here is the naive slope t-test (as in the original); :func:`run_pls_feature_figures`
    replaces it with the permutation p-value that accounts for the axis fit.
    """
    from scipy import stats

    pls_c1, pls_c2 = np.asarray(pls_c1).ravel(), np.asarray(pls_c2).ravel()
    features_z = np.asarray(features_z, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(feature_names):
        finite = np.isfinite(features_z[:, j])
        values = features_z[finite, j]
        r_x, r_y = pearson_r(pls_c1[finite], values), pearson_r(pls_c2[finite], values)
        regression = stats.linregress(pls_c1[finite], values)
        out[name] = {
            "vector_xy": (float(r_x), float(r_y)),
            "r2_signed": float(np.sign(r_x) * r_x**2),
            "p_value": float(regression.pvalue),
            "linregress_r": float(regression.rvalue),
        }
    return out


# -- inputs ---------------------------------------------------------------------------------------------------


def _latent_matrix(z) -> tuple[np.ndarray, list[str] | None]:
    """``z`` as an (N, D) array, and its paths when ``z`` is a latent table (``path`` and ``z_*`` columns)."""
    if isinstance(z, pd.DataFrame):
        path_column = next((c for c in _LATENT_PATH_COLUMNS if c in z.columns), None)
        z_columns = [c for c in z.columns if str(c).startswith("z_")]
        if not z_columns:
            raise ValueError("A latent table needs z_0, z_1, ... columns (as written by train_xaaenet).")
        paths = z[path_column].astype(str).tolist() if path_column else None
        return z[z_columns].to_numpy(dtype=np.float64), paths
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (images x latent dimensions), got shape {z.shape}.")
    return z, None


def _align_features(table: pd.DataFrame, n: int, paths: list[str] | None) -> pd.DataFrame:
    """Rows of ``table`` in the order of the latents: by path when both sides have paths, else by position."""
    if paths is not None and PATH_COLUMN in table.columns:
        table_paths = table[PATH_COLUMN].astype(str)
        duplicated = table_paths[table_paths.duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(f"The feature table lists {len(duplicated)} path(s) twice, e.g. {duplicated[:3]}.")
        missing = sorted(set(paths) - set(table_paths))
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) of the latents are not in the feature table, e.g. {missing[:5]}; "
                f"score the same images (compute_feature_score_table on the latents' paths)."
            )
        return table.set_index(table_paths).loc[paths].reset_index(drop=True)
    if len(table) != n:
        raise ValueError(
            f"The feature table has {len(table)} rows but z has {n}; without paths on both sides rows are "
            f"matched by position, so they must be the same images in the same order."
        )
    return table.reset_index(drop=True)


def _usable_features(table: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    """The requested numeric feature columns, leaving out (with a warning) NaN-only or constant ones."""
    if columns is None:
        columns = [c for c in table.columns if c != PATH_COLUMN and pd.api.types.is_numeric_dtype(table[c])]
    else:
        columns = list(columns)
        unknown = [c for c in columns if c not in table.columns]
        if unknown:
            raise KeyError(f"Feature columns {unknown} are not in the feature table; it has {list(table.columns)}.")
    features = table[columns].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    left_out = []
    for name in columns:
        values = features[name].to_numpy()
        finite = values[np.isfinite(values)]
        if len(finite) < _MIN_FEATURE_ROWS or np.ptp(finite) == 0:
            left_out.append(name)
    if left_out:
        warnings.warn(f"Feature(s) left out (constant, or fewer than {_MIN_FEATURE_ROWS} finite values): "
                      f"{left_out}.", UserWarning, stacklevel=3)
    kept = features.drop(columns=left_out)
    if kept.shape[1] == 0:
        raise ValueError("No usable feature column remains (all are constant or missing).")
    return kept


def _standardised(features: pd.DataFrame) -> np.ndarray:
    values = features.to_numpy(dtype=np.float64)
    mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
    return (values - mean) / np.where(std > 0, std, 1.0)


# -- figures --------------------------------------------------------------------------------------------------


def _significance_mark(q: float) -> str:
    return "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""


def _axis_verdict(axis: dict | None) -> str | None:
    """The plain-language warning shown when the axis does not predict the label held out."""
    if axis is None or axis["reliable"]:
        return None
    return (f"Decision axis NOT reliable (held-out r = {axis['r']:.2f}, permutation p = {axis['p_value']:.3f}):\n"
            f"it does not predict the label on images it was not fitted on,\nso these alignments say nothing "
            f"about what the model uses.")


def plot_feature_importance_ranking(
    importance_rank: Sequence[str],
    alignment: dict[str, dict[str, Any]],
    *,
    target_label: str = "target",
    show: bool = True,
    stats: pd.DataFrame | None = None,
    axis: dict | None = None,
    labels: Mapping[str, str] | None = None,
    max_bars: int | None = None,
    other_label: str = "the other class",
):
    """Horizontal bars of signed r2 with PLS 1 (positive: grows toward ``target_label``, negative toward
    ``other_label``), ranked by |r2|, with bootstrap intervals and significance marks when ``stats`` is given.
    ``labels`` name the bars (default: the feature names); ``max_bars`` keeps the top-ranked ones (default: all)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ranked = list(importance_rank)
    names = ranked[:max_bars] if max_bars is not None else ranked
    labels = labels or {}
    values = np.array([alignment[f]["r2_signed"] for f in names])
    verdict = _axis_verdict(axis)
    with figure_style():
        fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 2.2))
        y = np.arange(len(names))[::-1]
        if verdict:
            colours = [_NOT_RELIABLE_COLOR] * len(names)
        else:
            colours = [CLASS_A_COLOR if v >= 0 else CLASS_B_COLOR for v in values]
        xerr = None
        if stats is not None:
            low, high = stats.loc[names, "ci_low"].to_numpy(), stats.loc[names, "ci_high"].to_numpy()
            xerr = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        ax.barh(y, values, color=colours, height=0.6, xerr=xerr, error_kw={"ecolor": "#333333", "capsize": 3,
                                                                         "lw": 1})
        ax.set_yticks(y, [labels.get(name, name) for name in names])
        ax.axvline(0, color="#333333", lw=1)
        # Wide enough for every bar and whisker end (adding a whisker's length to |value| overshot, up to 3).
        ends = np.r_[values, values - xerr[0], values + xerr[1]] if xerr is not None else values
        limit = max(0.05, float(np.abs(ends).max()) if len(ends) else 0) * 1.15
        ax.set_xlim(-limit, limit)
        if stats is not None:
            for yi, name, value in zip(y, names, values):
                mark = _significance_mark(stats.loc[name, "q_value"]) if stats.loc[name, "significant"] else ""
                if mark:
                    ax.text(value + np.sign(value or 1) * 0.02 * limit, yi, mark, va="center",
                            ha="left" if value >= 0 else "right", fontsize=11, fontweight="bold")
        ax.set_xlabel(f"signed r² with the decision axis (PLS 1)   ← toward {other_label} | toward {target_label} →")
        ax.grid(axis="y", visible=False)
        title = f"Which pixel cues line up with the decision axis toward '{target_label}'"
        if verdict:
            ax.set_title(f"{title}\n{verdict}", loc="left", color="#B00020", fontsize=10)
        else:
            ax.set_title(title, loc="left")
            handles = [Patch(color=CLASS_A_COLOR, label=f"higher toward {target_label}"),
                       Patch(color=CLASS_B_COLOR, label=f"lower toward {target_label}")]
            ax.legend(handles=handles, loc="lower right")
        if stats is not None and axis is not None:
            shown = f"; the top {len(names)} of {len(ranked)} cues" if len(names) < len(ranked) else ""
            ax.text(1.0, -0.12 - 0.2 / max(len(names), 1), f"bars: held-out axis ({axis['method']}){shown}; "
                    f"whiskers: 95% bootstrap interval; * q<0.05, ** q<0.01, *** q<0.001 (BH, permutation test)",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8, color="#555555")
        fig.tight_layout()
    if show:
        _show(fig)
    return fig


def plot_feature_alignment_panels(
    pls_c1: np.ndarray,
    features_z: np.ndarray,
    feature_names: Sequence[str],
    alignment: dict[str, dict[str, Any]],
    *,
    mask_positive: np.ndarray | None = None,
    positive_label: str = "positive",
    negative_label: str = "negative",
    cols: int = 3,
    title: str | None = None,
    show: bool = True,
    stats: pd.DataFrame | None = None,
    axis: dict | None = None,
    labels: Mapping[str, str] | None = None,
):
    """One scatter per feature: held-out PLS 1 (x) against the standardised feature (y), coloured by class;
    ``labels`` title the panels (default: the feature names)."""
    import matplotlib.pyplot as plt

    pls_c1 = np.asarray(pls_c1).ravel()
    features_z = np.asarray(features_z, dtype=np.float64)
    positive = np.ones(len(pls_c1), bool) if mask_positive is None else np.asarray(mask_positive, bool)
    n = len(feature_names)
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    size = 16 if len(pls_c1) < 300 else 6
    verdict = _axis_verdict(axis)
    with figure_style():
        fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 4.0 * rows + 0.8), squeeze=False)
        for index, name in enumerate(feature_names):
            ax = axes.flat[index]
            values = features_z[:, index]
            finite = np.isfinite(values)
            for chosen, colour, label in ((~positive, CLASS_B_COLOR, negative_label),
                                          (positive, CLASS_A_COLOR, positive_label)):
                keep = chosen & finite
                ax.scatter(pls_c1[keep], values[keep], s=size, color=colour, alpha=0.7, linewidths=0,
                           label=f"{label} (n={int(keep.sum())})")
            if finite.sum() > 1 and np.ptp(pls_c1[finite]) > 0:
                slope, intercept = np.polyfit(pls_c1[finite], values[finite], 1)
                xs = np.linspace(pls_c1.min(), pls_c1.max(), 50)
                ax.plot(xs, slope * xs + intercept, color="#222222", lw=1.5)
            r2 = alignment[name]["r2_signed"]
            detail = f"signed r² = {r2:+.3f}"
            if stats is not None:
                detail += f", q = {stats.loc[name, 'q_value']:.3g}"
            # Sized to stay readable when the figure is shown at a page's width (the report's 1100 px).
            ax.set_title(textwrap.fill((labels or {}).get(name, name), 34), fontsize=13)
            ax.tick_params(labelsize=11)
            ax.text(0.02, 0.97, detail, transform=ax.transAxes, va="top", fontsize=11,
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#cccccc", "alpha": 0.9})
            ax.set_xlabel("PLS 1 (held out)", fontsize=11)
            ax.set_ylabel("standardised score", fontsize=11)
            if index == 0:
                ax.legend(loc="lower right", fontsize=10, markerscale=1.5)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        heading = title or f"Pixel cues against the decision axis (right = toward {positive_label})"
        heading += f"\n{verdict}" if verdict else ""
        fig.suptitle(heading, fontsize=12, color="#B00020" if verdict else "black")
        # Keep the heading's lines (about 0.25 inch each) clear of the first row's titles.
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 * (heading.count("\n") + 1.5) / fig.get_figheight()))
    if show:
        _show(fig)
    return fig


def _show(fig) -> None:
    """Show ``fig`` where a display exists (notebook or interactive backend); never warn under Agg."""
    finish_figure(fig, None, show=True, close=False)


# -- entry point ----------------------------------------------------------------------------------------------


def run_pls_feature_figures(
    z,
    target_score,
    feature_table: pd.DataFrame,
    *,
    feature_columns: Sequence[str] | None = None,
    target_label: str = "target",
    mask_positive: np.ndarray | None = None,
    positive_label: str = "positive",
    negative_label: str = "negative",
    save_dir: str | Path | None = None,
    show: bool = True,
    paths: Sequence[str] | None = None,
    z_train=None,
    target_train=None,
    n_splits: int = 5,
    n_permutations: int = 999,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    axis_alpha: float = 0.01,
    max_panels: int = 12,
    max_bars: int | None = None,
    feature_labels: Mapping[str, str] | None = None,
    random_state: int = 0,
) -> dict[str, Any]:
    """Relate the decision axis of ``z`` to pixel cues; draw the ranking and the alignment panels.

    Parameters
    ----------
    z
        Latent vectors (N, D) as an array or tensor, or the latent table written by ``train_xaaenet`` (its
        ``path`` column then aligns the feature table by path).
    target_score
        1 for class A (the class the axis points to), 0 for class B.
    feature_table
        Output of ``compute_feature_score_table``. With paths on both sides rows are matched by path and a
        missing image is an error; otherwise by position.
    feature_columns
        Features to relate (default: every numeric column). NaN-only or constant ones are left out with a warning.
    paths
        Paths of the rows of ``z`` when ``z`` is an array.
    z_train, target_train
        Training latents and labels: the axis is then fitted on them and applied to ``z``; without them it is
        cross-fitted over ``n_splits`` folds of ``z``.
    n_permutations, n_bootstrap
        Permutations for the p-values (of the labels, each refitting the axis, for the axis test; of each
        feature for the feature tests) and bootstrap draws for the intervals.
    alpha, axis_alpha
        False discovery rate for ``significant`` features, and the level of the permutation test that makes the
        axis ``reliable`` (stricter by default: no feature is significant on an unreliable axis).
    max_panels
        Alignment panels drawn (the top-ranked features).
    max_bars
        Bars of the ranking figure (the top-ranked features; default: all). ``stats`` always lists every feature.
    feature_labels
        What the figures call each feature (default: the registered cue's label, e.g. "lower-band texture
        (jaw_texture)", and the column name for any other column).
    save_dir
        Where to write ``feature_importance_ranking`` and ``feature_alignment_panels`` as PNG and SVG.

    Returns
    -------
    dict with ``alignment_fig``, ``importance_fig``, ``importance_rank`` (features by decreasing |signed r2|),
    ``alignment`` (per feature: ``vector_xy``, ``r2_signed``, ``p_value`` (permutation), ``q_value``,
    ``linregress_r``, ``significant``), ``stats`` (DataFrame: r, r2_signed, ci_low, ci_high, p_alignment, p_value,
    q_value, significant, n), ``axis`` (r, r2, p_value, reliable, method, n_permutations, alpha) and ``scores``
    (each image's held-out score on the axis, in the order of ``z``).
    """
    if n_permutations < 0 or n_bootstrap < 1:
        raise ValueError("n_permutations must be >= 0 and n_bootstrap >= 1.")
    if max_bars is not None and max_bars < 1:
        raise ValueError(f"max_bars must be >= 1 (or None for every feature), got {max_bars}.")
    z_matrix, z_paths = _latent_matrix(z)
    if paths is not None:
        if len(paths) != len(z_matrix):
            raise ValueError(f"paths has {len(paths)} entries but z has {len(z_matrix)} rows.")
        z_paths = [str(p) for p in paths]
    target = np.asarray(target_score.detach().cpu() if isinstance(target_score, torch.Tensor) else target_score,
                        dtype=np.float64).ravel()
    if len(target) != len(z_matrix):
        raise ValueError(f"target_score has {len(target)} values but z has {len(z_matrix)} rows.")
    features = _usable_features(_align_features(feature_table, len(z_matrix), z_paths), feature_columns)
    z_train_matrix = _latent_matrix(z_train)[0] if z_train is not None else None

    fit: AxisFit = fit_decision_axis(
        z_matrix, target, z_train=z_train_matrix, target_train=target_train, n_splits=n_splits,
        n_permutations=n_permutations, alpha=axis_alpha, random_state=random_state,
    )
    stats = feature_axis_statistics(fit, features, n_permutations=n_permutations, n_bootstrap=n_bootstrap,
                                    alpha=alpha, random_state=random_state)
    axis = fit.as_dict()
    importance_rank = stats.index.tolist()
    labels = {**describe_feature_scores(importance_rank)["label"].to_dict(), **(feature_labels or {})}
    features_z = _standardised(features[importance_rank])
    alignment = compute_pls_feature_alignment(fit.scores, fit.second, features_z, importance_rank)
    for name in importance_rank:
        alignment[name].update(
            p_value=float(stats.loc[name, "p_value"]), q_value=float(stats.loc[name, "q_value"]),
            significant=bool(stats.loc[name, "significant"]),
        )
    if not fit.reliable:
        warnings.warn(_axis_verdict(axis).replace("\n", " "), UserWarning, stacklevel=2)

    positive = (target == 1) if mask_positive is None else np.asarray(mask_positive, bool)
    shown = importance_rank[:max_panels]
    alignment_fig = plot_feature_alignment_panels(
        fit.scores, features_z[:, : len(shown)], shown, alignment, mask_positive=positive,
        positive_label=positive_label, negative_label=negative_label, cols=min(3, len(shown)), show=False,
        stats=stats, axis=axis, labels=labels,
    )
    importance_fig = plot_feature_importance_ranking(
        importance_rank, alignment, target_label=target_label, show=False, stats=stats, axis=axis, labels=labels,
        max_bars=max_bars, other_label=negative_label,
    )
    save_dir = Path(save_dir) if save_dir is not None else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    for fig, name in ((alignment_fig, "feature_alignment_panels"), (importance_fig, "feature_importance_ranking")):
        finish_figure(fig, save_dir / name if save_dir else None, show=show, formats=("png", "svg"))
    return {
        "alignment_fig": alignment_fig,
        "importance_fig": importance_fig,
        "importance_rank": importance_rank,
        "alignment": alignment,
        "stats": stats,
        "axis": axis,
        "scores": fit.scores,
    }
