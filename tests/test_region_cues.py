"""Region, shape and grey-aware cues: each checked against direct NumPy code, a planted "upper band covered" task
found with the right sign (and a control with nothing planted finding nothing), colour cues left out of a grey
run, and cues of your own from ``module:function``."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tell_me_why.cues.definitions import BUILTIN_CUES, REGION_NAMES, SHAPE_CUE_NAMES
from tell_me_why.feature_scores import (
    PATH_COLUMN,
    available_feature_scores,
    compute_feature_score_table,
    load_feature_scores,
)
from tell_me_why.visualization import run_pls_feature_figures

FAST = {"n_permutations": 199, "n_bootstrap": 200, "show": False}
COLOUR_CUES = [cue.name for cue in BUILTIN_CUES if cue.category == "color"]
REGION_CUES = [cue.name for cue in BUILTIN_CUES if cue.category in ("region", "shape")]


def _save(path, pixels) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


# -- direct NumPy references ----------------------------------------------------------------------------------


def otsu_reference(levels: np.ndarray) -> int | None:
    """Every split t of the grey levels, the between-class variance from the two groups' weights and means; the
    first best t, None for an image of one level."""
    values = levels.ravel().astype(np.float64)
    best, best_t = -1.0, None
    for t in range(int(values.min()), int(values.max())):
        low, high = values[values <= t], values[values > t]
        between = len(low) * len(high) * (low.mean() - high.mean()) ** 2 / len(values) ** 2
        if between > best:
            best, best_t = between, t
    return best_t


def _region_slices(h: int, w: int) -> dict[str, tuple[slice, slice]]:
    rows = [slice(0, h // 3), slice(h // 3, 2 * h // 3), slice(2 * h // 3, h)]
    cols = [slice(0, w // 3), slice(w // 3, 2 * w // 3), slice(2 * w // 3, w)]
    regions = {f"band_{name}": (rows[k], slice(0, w)) for k, name in enumerate(("top", "middle", "bottom"))}
    regions |= {f"band_{name}": (slice(0, h), cols[k]) for k, name in enumerate(("left", "center", "right"))}
    for r, row in enumerate(("top", "middle", "bottom")):
        for c, col in enumerate(("left", "center", "right")):
            regions[f"cell_{row}_{col}"] = (rows[r], cols[c])
    return regions


def region_and_shape_reference(grey8: np.ndarray) -> dict[str, float]:
    """The region and shape cues of an 8-bit grey image, written directly (float64 NumPy)."""
    grey = grey8 / 255
    h, w = grey.shape
    t = otsu_reference(grey8)
    foreground = grey8 > t if t is not None else np.zeros_like(grey8, dtype=bool)
    out = {}
    for name, (rows, cols) in _region_slices(h, w).items():
        block = grey[rows, cols]
        out[f"{name}_brightness"] = block.mean()
        out[f"{name}_coverage"] = foreground[rows, cols].mean()
        out[f"{name}_texture"] = np.abs(np.diff(block, axis=1)).mean() + np.abs(np.diff(block, axis=0)).mean()
    out["object_area"] = foreground.mean()
    ys, xs = np.nonzero(foreground)
    if len(ys) == 0:
        out |= dict.fromkeys(SHAPE_CUE_NAMES[1:], math.nan)
        return out
    out["object_centroid_row"] = (ys.mean() + 0.5) / h
    out["object_centroid_col"] = (xs.mean() + 0.5) / w
    out["object_extent_height"] = (ys.max() - ys.min() + 1) / h
    out["object_extent_width"] = (xs.max() - xs.min() + 1) / w
    # The principal axis as the leading eigenvector of the covariance of the displayed coordinates (x, y = -row).
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs, -ys]).astype(np.float64), bias=True))
    axis = vectors[:, np.argmax(values)]
    out["object_orientation"] = float(np.degrees(np.arctan2(axis[1], axis[0])))
    return out


def _angle_difference(a: float, b: float) -> float:
    """a - b for axis angles (modulo 180 degrees)."""
    return (a - b + 90) % 180 - 90


def _compare(table_row, expected: dict[str, float], label: str) -> None:
    for name, value in expected.items():
        got = getattr(table_row, name)
        if math.isnan(value):
            assert math.isnan(got), (label, name)
        elif name == "object_orientation":
            assert abs(_angle_difference(got, value)) < 1e-6, (label, got, value)
        else:
            assert got == pytest.approx(value, abs=1e-9), (label, name)


def _smooth_grey(rng, h: int, w: int) -> np.ndarray:
    coarse = rng.random((h // 6 + 2, w // 6 + 2))
    image = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), float)
    return np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)


def test_region_and_shape_cues_match_direct_numpy_code(tmp_path):
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    sizes = [(64, 64), (37, 50), (50, 37), (31, 31), (64, 64)]
    images = [_smooth_grey(rng, h, w) for h, w in sizes]
    images.append(np.full((20, 30), 90, np.uint8))  # one level: no foreground
    paths = [_save(tmp_path / f"grey_{i}.png", image) for i, image in enumerate(images)]
    colour = (rng.random((40, 45, 3)) * 255).astype(np.uint8)  # the cues read the luma of a colour image
    paths.append(_save(tmp_path / "colour.png", colour))
    from tell_me_why.cues.decoding import decode_image

    images.append(decode_image(paths[-1]).grey)
    table = compute_feature_score_table(paths, score_names=REGION_CUES, progress=False, batch_size=3)
    assert len(REGION_CUES) == 3 * len(REGION_NAMES) + len(SHAPE_CUE_NAMES) == 51
    for row, image, path in zip(table.itertuples(index=False), images, paths):
        expected = region_and_shape_reference(image)
        assert set(expected) == set(REGION_CUES)
        _compare(row, expected, path)
        if image.min() < image.max():  # the same threshold as scikit-image's
            assert otsu_reference(image) == threshold_otsu(image), path
    flat = table.iloc[5]
    assert flat["object_area"] == 0 and flat["band_top_coverage"] == 0 and math.isnan(flat["object_orientation"])


def test_shapes_of_known_geometry(tmp_path):
    """A white rectangle on black: known area, centroid, extent and orientation 0 (wide) or 90 (tall); a rotated
    ellipse: its angle; a black rectangle on white: the foreground is the brighter side, i.e. the ground."""
    wide = np.zeros((60, 80), np.uint8)
    wide[10:30, 20:70] = 255
    ellipses = {}
    rows, cols = np.mgrid[0:121, 0:121]
    x, y = cols - 60.0, 60.0 - rows  # displayed axes: y up
    for degrees in (30, -45, 75):
        theta = np.radians(degrees)
        u, v = x * np.cos(theta) + y * np.sin(theta), -x * np.sin(theta) + y * np.cos(theta)
        ellipses[degrees] = np.where((u / 45) ** 2 + (v / 12) ** 2 <= 1, 230, 20).astype(np.uint8)
    images = {"wide": wide, "tall": wide.T.copy(), "dark": 255 - wide, **{f"ellipse_{d}": e for d, e in
                                                                        ellipses.items()}}
    paths = [_save(tmp_path / f"{name}.png", image) for name, image in images.items()]
    table = compute_feature_score_table(paths, score_names=REGION_CUES, progress=False).set_index(
        pd.Index(list(images)))
    wide_row = table.loc["wide"]
    assert wide_row["object_area"] == pytest.approx(20 * 50 / (60 * 80))
    assert wide_row["object_centroid_row"] == pytest.approx(20 / 60)  # rows 10..29: centre 19.5 + 0.5
    assert wide_row["object_centroid_col"] == pytest.approx(45 / 80)
    assert wide_row["object_extent_height"] == pytest.approx(20 / 60)
    assert wide_row["object_extent_width"] == pytest.approx(50 / 80)
    assert wide_row["object_orientation"] == pytest.approx(0, abs=1e-9)
    assert abs(_angle_difference(table.loc["tall", "object_orientation"], 90)) < 1e-9
    assert table.loc["tall", "object_extent_height"] == pytest.approx(50 / 80)
    # Rows 10..19 of the top band (0..19) are white in 50 of 80 columns.
    assert wide_row["band_top_coverage"] == pytest.approx(10 * 50 / (20 * 80))
    assert wide_row["cell_bottom_left_coverage"] == 0
    assert table.loc["dark", "object_area"] == pytest.approx(1 - 20 * 50 / (60 * 80))
    for degrees in ellipses:
        assert abs(_angle_difference(table.loc[f"ellipse_{degrees}", "object_orientation"], degrees)) < 0.5
        assert table.loc[f"ellipse_{degrees}", "object_area"] == pytest.approx(math.pi * 45 * 12 / 121**2, rel=0.02)


# -- grey-aware colour cues ----------------------------------------------------------------------------------


def _colour_reference(rgb8: np.ndarray) -> dict[str, float]:
    rgb = rgb8.astype(np.float64) / 255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    alpha, beta = r - 0.5 * (g + b), np.sqrt(3) / 2 * (g - b)
    top = rgb.max(-1)
    return {
        "color_covariance_red_blue": np.cov(r.ravel(), b.ravel())[0, 1],
        "redness_dominance": r.mean() / (g.mean() + b.mean() + 1e-6),
        "colorfulness": np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()),
        "saturation_mean": np.where(top > 0, (top - rgb.min(-1)) / np.where(top > 0, top, 1), 0).mean(),
        "hue_concentration": np.hypot(alpha.sum(), beta.sum()) / np.hypot(alpha, beta).sum(),
    }


def test_colour_cues_are_nan_on_grey_images_and_unchanged_on_colour_ones(tmp_path):
    rng = np.random.default_rng(1)
    grey = _smooth_grey(rng, 32, 32)
    colour = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    nearly_grey = np.repeat(grey[..., None], 3, -1)
    nearly_grey[5, 5, 0] += 1  # one pixel off grey: a colour image
    paths = [_save(tmp_path / "grey_l.png", grey),  # decoded without colour planes
             _save(tmp_path / "grey_rgb.png", np.repeat(grey[..., None], 3, -1)),  # R = G = B everywhere
             _save(tmp_path / "colour.png", colour), _save(tmp_path / "nearly_grey.png", nearly_grey)]
    mixed = compute_feature_score_table(paths, score_names=COLOUR_CUES, progress=False)  # one batch of 32x32
    assert mixed.iloc[:2][COLOUR_CUES].isna().all().all()
    assert mixed.iloc[2:][COLOUR_CUES].notna().all().all()
    alone = compute_feature_score_table(paths[2:3], score_names=COLOUR_CUES, progress=False)
    for name, value in _colour_reference(colour).items():
        assert mixed.loc[2, name] == alone.loc[0, name] == pytest.approx(value, abs=1e-5, rel=1e-5), name
    # Before: on grey pixels the red-blue covariance was the variance; the other cues keep their grey values.
    grey_only = compute_feature_score_table(paths[:2], score_names=["variance", "brightness"], progress=False)
    assert grey_only.notna().all().all()


# -- a planted "upper band covered" task --------------------------------------------------------------------


def _band_task_image(rng, covered: bool, size: int = 64) -> np.ndarray:
    """Blocky random texture at a random brightness; ``covered``: a bright, nearly flat upper third."""
    texture = np.kron(rng.random((size // 8, size // 8)), np.ones((8, 8)))
    image = rng.uniform(50, 180) + 60 * (texture - 0.5) + rng.normal(0, rng.uniform(5, 25), (size, size))
    if covered:
        image[: size // 3] = rng.uniform(225, 250) + rng.normal(0, 2, (size // 3, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_band_task(root, n_per_class: int, planted: bool, seed: int, rgb: bool = False
                    ) -> tuple[list[str], np.ndarray]:
    """Class A ("covered", label 1) has a covered upper third when ``planted``; class B ("plain") never. Returns
    the paths and labels, classes alternating."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(2 * n_per_class):
        label = i % 2
        image = _band_task_image(rng, covered=planted and label == 1)
        folder = root / ("covered" if label else "plain")
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(_save(folder / f"{i:03d}.png", np.repeat(image[..., None], 3, -1) if rgb else image))
        labels.append(label)
    return paths, np.array(labels, dtype=float)


def _latents_tracking(labels: np.ndarray, seed: int, dims: int = 16) -> np.ndarray:
    """What a model that learnt the task gives: the first dimension tracks the label, the others are noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(labels), dims))
    z[:, 0] = labels + 0.5 * rng.normal(size=len(labels))
    return z


# The Otsu foreground of a covered image is the cover: less of the image, higher up and only as tall as the cover.
_SHAPE_SIGNS = {"object_area": -1, "object_centroid_row": -1, "object_extent_height": -1}


def implied_sign(name: str) -> int | None:
    """The direction that a covered upper third implies for a region or shape cue toward class A, or None when it
    does not touch the cue. Every region that holds the upper third gets brighter and flatter. Coverage is relative
    to each image's own Otsu threshold: in a covered image the bright cover is the foreground, so coverage rises in
    the upper third and falls in every region below it (a vertical band's drops to its upper third, 1/3)."""
    if name.startswith("object_"):
        return _SHAPE_SIGNS.get(name)
    region, statistic = name.rsplit("_", 1)
    if statistic == "coverage":
        return 1 if region == "band_top" or region.startswith("cell_top_") else -1
    holds_top = region in ("band_top", "band_left", "band_center", "band_right") or region.startswith("cell_top_")
    if not holds_top:
        return None
    return 1 if statistic == "brightness" else -1


def _untouched(name: str) -> bool:
    """Brightness and texture of the regions below the cover: the same in both classes."""
    return name.startswith(("band_", "cell_")) and implied_sign(name) is None


def _found_the_cover(stats: pd.DataFrame) -> None:
    """The planted cause is found: the top cue and the top band cue are region (or shape) cues pointing the way the
    cover implies, and so are the top band's three cues; no cue with an implied direction is significant the other
    way; and the regions below the cover line up far less than the top band (they differ between the classes only
    by chance, which the false discovery rate does not rule out)."""
    top = stats.index[0]
    top_band = next(name for name in stats.index if name.startswith("band_"))
    for name in (top, top_band, "band_top_brightness", "band_top_coverage", "band_top_texture"):
        assert name in REGION_CUES and stats.loc[name, "significant"], name
        assert np.sign(stats.loc[name, "r2_signed"]) == implied_sign(name), name
    wrong_way = [name for name in stats.index if name in REGION_CUES and implied_sign(name) is not None
                 and stats.loc[name, "significant"] and np.sign(stats.loc[name, "r2_signed"]) != implied_sign(name)]
    assert wrong_way == []
    untouched = stats.loc[[name for name in stats.index if _untouched(name)], "r2_signed"].abs()
    top_band_r2 = stats.loc[["band_top_brightness", "band_top_coverage", "band_top_texture"], "r2_signed"].abs()
    assert len(untouched) == 2 * 2 * 4 and untouched.max() < top_band_r2.min() / 3


@pytest.mark.parametrize("planted", [True, False])
def test_upper_band_covered_is_found_and_a_control_finds_nothing(tmp_path, planted):
    paths, labels = write_band_task(tmp_path, 60, planted=planted, seed=2)
    features = compute_feature_score_table(paths, progress=False)
    with pytest.warns(UserWarning, match=r"left out.*'color_covariance_red_blue'"):  # grey images: NaN colour cues
        result = run_pls_feature_figures(_latents_tracking(labels, seed=3), labels, features, paths=paths,
                                         target_label="covered", **FAST)
    stats = result["stats"]
    assert result["axis"]["reliable"]  # the latents track the label in both tasks
    if planted:
        _found_the_cover(stats)
    else:
        assert not stats.loc[stats.index.isin(REGION_CUES), "significant"].any()
        assert not stats["significant"].any()


# -- the run: grey data, labels, cues of your own ------------------------------------------------------------


def _fake_trained_run(tmp_path, paths, labels, **settings):
    """A run directory as the data and train steps leave it (data.csv, data.json, latents.parquet), with latents
    that track the label, so that the features and interpret steps run in seconds."""
    from tell_me_why.app.pipeline import Run, RunSettings

    out = tmp_path / "run"
    out.mkdir()
    names = np.where(labels == 1, "covered", "plain")
    pd.DataFrame({"path": paths, "label": names}).to_csv(out / "data.csv", index=False)
    (out / "data.json").write_text(json.dumps({"source": str(tmp_path), "classes": ["plain", "covered"],
                                               "counts": {}, "skipped": []}))
    z = _latents_tracking(labels, seed=4)
    latents = pd.DataFrame(z, columns=[f"z_{i}" for i in range(z.shape[1])])
    latents.insert(0, "path", paths)
    latents.insert(1, "split", np.where(np.arange(len(paths)) < 2 * len(paths) // 3, "train", "valid"))
    latents.insert(2, "label", names)
    latents.to_parquet(out / "latents.parquet")
    run = Run(out, RunSettings(data=str(tmp_path), class_a="covered", **settings))
    (out / "run_state.json").write_text(json.dumps({"done": ["data", "train"]}))
    return run


@pytest.fixture
def own_cue_module(tmp_path, monkeypatch):
    """A module of cues of your own, importable for this test only."""
    name = "tmw_test_own_cues"
    folder = tmp_path / "own_module"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        '"""Cues of a user."""\n\n\n'
        "def first_row_brightness(batch):\n"
        '    """Mean of the first row."""\n'
        "    return batch.grey[:, 0].mean(1)\n\n\n"
        "def brightness(batch):\n"
        "    return batch.grey.mean((1, 2))\n\n\n"
        "not_a_function = 3\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_grey_run_leaves_colour_cues_out_and_finds_the_planted_band(tmp_path, own_cue_module):
    # R = G = B in every pixel of RGB files: the run's grey setting is off, the feature table shows it.
    paths, labels = write_band_task(tmp_path / "data", 60, planted=True, seed=5, rgb=True)
    run = _fake_trained_run(tmp_path, paths, labels, cues=f"{own_cue_module}:first_row_brightness")
    assert not run.grey
    with run.writing():
        run.step_features()
        run.step_interpret()
    features = pd.read_parquet(run.dir / "features.parquet")
    assert features[COLOUR_CUES].isna().all().all() and "first_row_brightness" in features.columns
    stats = pd.read_csv(run.dir / "interpretation" / "stats.csv", index_col=0)
    axis = json.loads((run.dir / "interpretation" / "axis.json").read_text())
    assert not set(COLOUR_CUES) & set(stats.index)
    assert axis["notes"] == ["colour cues left out: the images are grey"]
    assert axis["reliable"]
    _found_the_cover(stats)
    # What the report shows: labels and categories, the run's own cue as "custom".
    assert stats.loc["jaw_texture", "label"] == "lower-band texture (jaw_texture)"
    assert stats.loc["band_top_brightness", "label"] == "top band brightness (band_top_brightness)"
    assert stats.loc["band_top_brightness", "category"] == "region"
    assert stats.loc["first_row_brightness", ["label", "category"]].tolist() == ["first_row_brightness", "custom"]
    assert json.loads((run.dir / "settings.json").read_text())["cues"] == f"{own_cue_module}:first_row_brightness"


def test_every_cue_has_a_neutral_label_grouped_by_category():
    labels = {cue.name: cue.label for cue in BUILTIN_CUES}
    assert labels["eye_region_contrast"] == "upper-middle band contrast (eye_region_contrast)"
    assert all(label.endswith(f"({name})") and label != f"({name})" for name, label in labels.items())
    assert not any(word in label.split("(")[0] for label in labels.values() for word in ("eye", "jaw", "face"))
    groups = available_feature_scores()
    assert set(groups) >= {"intensity", "color", "spatial", "texture", "frequency", "region", "shape"}
    assert groups["shape"] == list(SHAPE_CUE_NAMES)


def test_own_cues_load_from_module_function(tmp_path, own_cue_module):
    from tell_me_why._utils.settings import SettingsError
    from tell_me_why.app.pipeline import RunSettings

    cues = load_feature_scores(f" {own_cue_module}:first_row_brightness ")
    assert [(c.name, c.category, c.description) for c in cues] == [
        ("first_row_brightness", "custom", "Mean of the first row.")]
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (12, 10), dtype=np.uint8) for _ in range(3)]
    paths = [_save(tmp_path / f"{i}.png", image) for i, image in enumerate(images)]
    table = compute_feature_score_table(paths, score_names=["brightness", *cues], progress=False)
    assert list(table.columns) == [PATH_COLUMN, "brightness", "first_row_brightness"]
    np.testing.assert_allclose(table["first_row_brightness"], [image[0].mean() / 255 for image in images], atol=1e-6)
    assert "first_row_brightness" not in sum(available_feature_scores().values(), [])  # not registered

    assert RunSettings(cues=f"{own_cue_module}:first_row_brightness").cues.endswith("first_row_brightness")
    bad = {
        "no_such_module_tmw:f": "Cannot import module 'no_such_module_tmw'",
        f"{own_cue_module}:missing_fn": f"Module '{own_cue_module}' has no function 'missing_fn'",
        f"{own_cue_module}:not_a_function": "must be callable",
        f"{own_cue_module}:brightness": "built-in",
        "just_a_module": "must be written module:function",
        f"{own_cue_module}:first_row_brightness,{own_cue_module}:first_row_brightness": "Two cues are named",
    }
    for spec, message in bad.items():
        with pytest.raises(SettingsError, match=message) as caught:
            RunSettings(cues=spec)
        assert "\n" not in str(caught.value), spec


def test_a_bad_cue_fails_on_the_command_line_before_any_step(tmp_path, capsys, own_cue_module):
    from conftest import TINY, image_folder

    from tell_me_why.app.cli import main

    data, out = image_folder(tmp_path / "data", per_class=4), tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), *TINY, "--cues", f"{own_cue_module}:nope"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"has no function 'nope' (cue '{own_cue_module}:nope')" in error
    assert not out.exists()
