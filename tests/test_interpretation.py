"""The decision-axis interpretation: a noise control finds nothing, a planted cue is found with the right sign,
rows are aligned by path, and the figures are written and closed."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import colours, near, read_png

from tell_me_why.visualization import run_pls_feature_figures, supervised_pls_latent

FAST = {"n_permutations": 199, "n_bootstrap": 200, "show": False}


def _paths(n):
    return [f"/data/img_{i:04d}.png" for i in range(n)]


def _noise_case(seed, n=40, dims=64):
    """Latents of pure noise; features that correlate with the label (as real cues of a dataset do)."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(float)
    rng.shuffle(label)
    features = pd.DataFrame({"Source_File_Path": _paths(n)})
    for k, strength in enumerate([2.0, 1.0, 0.5, 0.0, 0.0, 0.0]):
        features[f"cue_{k}"] = strength * label + rng.normal(size=n)
    return rng.normal(size=(n, dims)), label, features


def _planted_case(seed=0, n=200, dims=16):
    """One latent dimension is driven by feature X; the label depends on X."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    label = (x + 0.5 * rng.normal(size=n) > 0).astype(float)
    z = rng.normal(size=(n, dims))
    z[:, 5] = 2 * x + 0.3 * rng.normal(size=n)
    features = pd.DataFrame({"Source_File_Path": _paths(n), "X": x + 0.2 * rng.normal(size=n)})
    for k in range(5):
        features[f"unrelated_{k}"] = rng.normal(size=n)
    return z, label, features


def test_noise_latents_give_no_reliable_axis_and_no_significant_feature():
    clean = 0
    for seed in range(20):
        z, label, features = _noise_case(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = run_pls_feature_figures(z, label, features, random_state=seed, **FAST)
        if not result["axis"]["reliable"] and not result["stats"]["significant"].any():
            clean += 1
        plt.close("all")
    assert clean >= 19


def test_the_in_sample_axis_of_the_original_would_separate_noise():
    """Why cross-fitting is needed: fitted and scored on the same 20 images, PLS 'explains' pure noise."""
    z, label, _ = _noise_case(0, n=20, dims=128)
    _, _, r2_in_sample, _ = supervised_pls_latent(z, label)
    assert r2_in_sample > 0.8


def test_planted_cue_ranks_first_significant_and_points_to_class_a():
    z, label, features = _planted_case()
    result = run_pls_feature_figures(z, label, features, **FAST)
    stats = result["stats"]
    assert result["axis"]["reliable"] and result["axis"]["r"] > 0.5
    assert result["importance_rank"][0] == "X"
    assert stats.loc["X", "significant"] and stats.loc["X", "r2_signed"] > 0.3
    assert stats.loc["X", "ci_low"] > 0
    assert not stats.drop(index="X")["significant"].any()
    assert result["alignment"]["X"]["r2_signed"] == pytest.approx(stats.loc["X", "r2_signed"])
    assert set(result) >= {"alignment_fig", "importance_fig", "importance_rank", "alignment", "stats", "axis"}


def test_swapping_the_classes_flips_every_sign():
    z, label, features = _planted_case()
    a = run_pls_feature_figures(z, label, features, **FAST)["stats"]
    b = run_pls_feature_figures(z, 1 - label, features, **FAST)["stats"].loc[a.index]
    np.testing.assert_allclose(b["r2_signed"], -a["r2_signed"], atol=1e-12)
    np.testing.assert_allclose(b["p_value"], a["p_value"])
    assert b.loc["X", "significant"] and b.loc["X", "r2_signed"] < 0


def test_axis_fitted_on_training_latents():
    z, label, features = _planted_case(n=300)
    result = run_pls_feature_figures(z[100:], label[100:], features.iloc[100:], z_train=z[:100],
                                     target_train=label[:100], **FAST)
    assert result["axis"]["method"] == "fitted on the training latents" and result["axis"]["reliable"]
    assert result["importance_rank"][0] == "X" and result["stats"].loc["X", "r2_signed"] > 0


def test_rows_are_matched_by_path_not_position():
    z, label, features = _planted_case()
    latent_table = pd.DataFrame(z, columns=[f"z_{i}" for i in range(z.shape[1])])
    latent_table.insert(0, "path", features["Source_File_Path"])
    aligned = run_pls_feature_figures(latent_table, label, features, **FAST)["stats"]
    shuffled = features.sample(frac=1.0, random_state=1)
    from_shuffled = run_pls_feature_figures(latent_table, label, shuffled, **FAST)["stats"]
    pd.testing.assert_frame_equal(aligned, from_shuffled)
    with pytest.raises(ValueError, match="img_0007.png"):
        run_pls_feature_figures(latent_table, label, features.drop(index=7), **FAST)
    with pytest.raises(ValueError, match="199 rows but z has 200"):
        run_pls_feature_figures(z, label, features.drop(index=7), **FAST)


def test_nan_and_constant_features_are_left_out_without_changing_the_ranking():
    z, label, features = _planted_case()
    reference = run_pls_feature_figures(z, label, features, **FAST)["importance_rank"]
    extended = features.assign(constant=1.0, empty=np.nan)
    extended.loc[::10, "unrelated_0"] = np.nan
    with pytest.warns(UserWarning, match=r"left out.*\['constant', 'empty'\]"):
        result = run_pls_feature_figures(z, label, extended, **FAST)
    assert "constant" not in result["stats"].index and "empty" not in result["stats"].index
    assert result["stats"].loc["unrelated_0", "n"] == 180
    assert [f for f in result["importance_rank"] if f != "unrelated_0"] == [
        f for f in reference if f != "unrelated_0"
    ]


def test_bad_labels_fail_clearly():
    z, label, features = _planted_case()
    with pytest.raises(ValueError, match="binary"):
        run_pls_feature_figures(z, label * 2, features, **FAST)
    with pytest.raises(ValueError, match="at least 2 images of each class"):
        run_pls_feature_figures(z, np.r_[1.0, np.zeros(len(label) - 1)], features, **FAST)
    with pytest.raises(KeyError, match="nope"):
        run_pls_feature_figures(z, label, features, feature_columns=["X", "nope"], **FAST)


def test_closed_form_axis_equals_scikit_learn_pls():
    from sklearn.cross_decomposition import PLSRegression

    from tell_me_why.cues.axis import pls_components

    z, label, _ = _planted_case(n=80)
    ours = pls_components(z, label, z, n_components=2)
    theirs = PLSRegression(n_components=2).fit(z, label).transform(z)
    for k in range(2):
        assert abs(np.corrcoef(ours[:, k], theirs[:, k])[0, 1]) == pytest.approx(1.0, abs=1e-9)
        assert np.corrcoef(ours[:, k], label)[0, 1] > 0  # anchored toward class A


def test_figures_are_saved_as_png_and_svg_coloured_by_class_and_closed(tmp_path):
    from matplotlib.colors import to_hex

    from tell_me_why._utils.plotting import CLASS_A_COLOR, CLASS_B_COLOR

    plt.close("all")
    z, label, features = _planted_case()
    result = run_pls_feature_figures(z, label, features, save_dir=tmp_path, **FAST)
    for name in ("feature_alignment_panels", "feature_importance_ranking"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / f"{name}.svg").read_text().startswith("<?xml")
    assert plt.get_fignums() == []
    panels = read_png(tmp_path / "feature_alignment_panels.png", result["alignment_fig"].get_size_inches(),
                      smallest=0.85)
    ranking = read_png(tmp_path / "feature_importance_ranking.png", result["importance_fig"].get_size_inches(),
                       smallest=0.85)
    assert colours(panels) > 500 and colours(ranking) > 100  # measured 1508 and 268
    # Scatter points (alpha 0.7 over white) of both classes: measured ~21,000 and ~23,000 pixels.
    for colour in (CLASS_A_COLOR, CLASS_B_COLOR):
        assert near(panels, colour, alpha=0.7).sum() > 5000, colour
    # Opaque bars: X (r2 +0.82, toward class A) dominates the small negative bars of the unrelated features
    # (measured 24,742 class-A pixels against 1,439 class-B ones).
    toward_a, toward_b = near(ranking, CLASS_A_COLOR).sum(), near(ranking, CLASS_B_COLOR).sum()
    assert toward_a > 5 * toward_b and toward_b > 0
    first_panel = result["alignment_fig"].axes[0]
    face_colours = {to_hex(c.get_facecolor()[0]) for c in first_panel.collections}
    assert {CLASS_A_COLOR.lower(), CLASS_B_COLOR.lower()} <= face_colours


@pytest.mark.parametrize("fit_on_training_latents", [False, True])
def test_a_latent_space_organised_by_class_is_reliable_and_its_cue_significant(fit_on_training_latents):
    """A trained model's latents: the class is their main structure, spread over every dimension. Axes refitted
    on random labels find that direction too, so the tests must not lose their power there."""
    rng = np.random.default_rng(5)
    n, dims = 240, 32
    label = (np.arange(n) % 2).astype(float)
    z = 3.0 * np.outer(label - 0.5, rng.normal(size=dims)) + rng.normal(size=(n, dims))
    features = pd.DataFrame({"cue": label + 0.5 * rng.normal(size=n), "unrelated": rng.normal(size=n)})
    if fit_on_training_latents:
        result = run_pls_feature_figures(z[120:], label[120:], features.iloc[120:], z_train=z[:120],
                                         target_train=label[:120], **FAST)
    else:
        result = run_pls_feature_figures(z, label, features, **FAST)
    assert result["axis"]["reliable"]
    assert result["stats"].loc["cue", "significant"] and result["stats"].loc["cue", "r2_signed"] > 0
    assert not result["stats"].loc["unrelated", "significant"]


def test_figures_name_cues_by_their_labels_and_the_ranking_can_keep_the_top_bars():
    """Registered cues appear under their neutral labels; other columns under their names; ``max_bars`` shortens
    the ranking figure only (the statistics keep every feature)."""
    z, label, features = _planted_case()
    features = features.rename(columns={"unrelated_0": "jaw_texture"})
    result = run_pls_feature_figures(z, label, features, max_bars=3, **FAST)
    ticks = [tick.get_text() for tick in result["importance_fig"].axes[0].get_yticklabels()]
    assert len(ticks) == 3 and ticks[0] == "X" and len(result["stats"]) == 6
    full = run_pls_feature_figures(z, label, features, **FAST)
    ticks = [tick.get_text() for tick in full["importance_fig"].axes[0].get_yticklabels()]
    assert "lower-band texture (jaw_texture)" in ticks and "jaw_texture" not in ticks
    titles = [ax.get_title() for ax in full["alignment_fig"].axes if ax.get_visible()]
    assert "lower-band texture (jaw_texture)" in titles
    renamed = run_pls_feature_figures(z, label, features, feature_labels={"X": "the planted cue"}, **FAST)
    assert "the planted cue" in [t.get_text() for t in renamed["importance_fig"].axes[0].get_yticklabels()]
    with pytest.raises(ValueError, match="max_bars"):
        run_pls_feature_figures(z, label, features, max_bars=0, **FAST)
    plt.close("all")
