"""Pixel cues: definitions checked against independent NumPy/SciPy/scikit-image code, decoding of every format,
error policies, order, streaming and the provenance table."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image

from tell_me_why.cues.decoding import decode_image
from tell_me_why.feature_scores import (
    ORIGINAL_SCORE_NAMES,
    PATH_COLUMN,
    ImageDecodeError,
    available_feature_scores,
    compute_feature_score_table,
    register_feature_score,
    unregister_feature_score,
)


def luma_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The grey definition, independently: libpng's integer rule, rounded down."""
    return ((rgb.astype(np.int64) @ np.array([9794, 19234, 3740])) >> 15).astype(np.uint8)


def _smooth_rgb(rng, height, width):
    """Smooth colour noise with some saturated pixels: realistic statistics, every score non-trivial."""
    coarse = rng.random((height // 4 + 2, width // 4 + 2, 3))
    image = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC), dtype=np.float64
    )
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb_images(tmp_path_factory):
    """RGB PNGs of several sizes (odd, non-square, 200x200 so the FFT resize is the identity)."""
    folder = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(0)
    paths, arrays = [], []
    for index, (h, w) in enumerate([(200, 200), (48, 37), (64, 64), (200, 200), (33, 80)]):
        array = _smooth_rgb(rng, h, w)
        path = folder / f"img_{index}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
        arrays.append(array)
    return paths, arrays


def _reference_scores(rgb: np.ndarray) -> dict[str, float]:
    """The 11 original definitions, written independently in float64 NumPy."""
    r, g_, b = (rgb[..., c].astype(np.float64) / 255 for c in range(3))
    grey = luma_from_rgb(rgb) / 255
    h, w = grey.shape
    mean, std = grey.mean(), grey.std(ddof=1)
    jaw = grey[int(h * 0.7) :]
    out = {
        "brightness": mean,
        "variance": grey.var(ddof=1),
        "skewness": ((grey - mean) ** 3).mean() / std**3,
        "color_covariance_red_blue": np.cov(r.ravel(), b.ravel())[0, 1],
        "redness_dominance": r.mean() / (g_.mean() + b.mean() + 1e-6),
        "symmetry_error": np.abs(grey - grey[:, ::-1]).mean(),
        "top_bottom_brightness_ratio": grey[: h // 2].mean() / (grey[h // 2 :].mean() + 1e-6),
        "center_texture": grey[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].var(ddof=1),
        "eye_region_contrast": grey[int(h * 0.3) : int(h * 0.5)].var(ddof=1),
        "jaw_texture": np.abs(np.diff(jaw, axis=1)).mean() + np.abs(np.diff(jaw, axis=0)).mean(),
    }
    if (h, w) == (200, 200):
        magnitude = np.abs(np.fft.fftshift(np.fft.fft2(grey)))
        y, x = np.mgrid[-100:100, -100:100]
        out["fft_high_frequency_ratio"] = 1 - magnitude[x**2 + y**2 <= 900].sum() / magnitude.sum()
    return out


def test_original_scores_match_an_independent_numpy_computation(rgb_images):
    paths, arrays = rgb_images
    table = compute_feature_score_table(paths, score_names=list(ORIGINAL_SCORE_NAMES), progress=False)
    assert list(table.columns) == [PATH_COLUMN, *ORIGINAL_SCORE_NAMES]
    assert table[PATH_COLUMN].tolist() == [str(p) for p in paths]
    checked = 0
    for row, array in zip(table.itertuples(index=False), arrays):
        for name, expected in _reference_scores(array).items():
            assert getattr(row, name) == pytest.approx(expected, abs=1e-6, rel=1e-6), name
            checked += 1
    assert checked == 5 * 10 + 2


def test_fft_score_resizes_like_the_original(rgb_images):
    """Off 200x200 the original resized with torchvision's antialiased bilinear resize; so do we."""
    import torch
    import torchvision.transforms.functional as TF

    paths, arrays = rgb_images
    table = compute_feature_score_table(paths[1:3], score_names=["fft_high_frequency_ratio"], progress=False)
    for value, array in zip(table["fft_high_frequency_ratio"], arrays[1:3]):
        grey = torch.from_numpy(luma_from_rgb(array)).float()[None] / 255
        resized = TF.resize(grey, [200, 200], antialias=True)[0].double().numpy()
        magnitude = np.abs(np.fft.fftshift(np.fft.fft2(resized)))
        y, x = np.mgrid[-100:100, -100:100]
        assert value == pytest.approx(1 - magnitude[x**2 + y**2 <= 900].sum() / magnitude.sum(), abs=1e-6)


def test_grey_is_the_originals_decoded_grey(rgb_images):
    """The original read grey with torchvision's GRAY mode; our decoder gives the same bytes."""
    from torchvision.io import ImageReadMode, read_image

    for path in rgb_images[0]:
        original = read_image(str(path), mode=ImageReadMode.GRAY)[0].numpy()
        np.testing.assert_array_equal(decode_image(path).grey, original)


def test_fast_luma_equals_the_integer_rule_on_every_colour():
    codes = np.arange(2**24, dtype=np.uint32)
    rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], -1).astype(np.uint8)
    rgb = rgb.reshape(4096, 4096, 3)
    expected = luma_from_rgb(rgb)
    from tell_me_why.cues.decoding import _luma_image

    np.testing.assert_array_equal(_luma_image(Image.fromarray(rgb)), expected)


def test_added_scores_match_independent_implementations(rgb_images):
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.feature import graycomatrix, graycoprops

    paths, arrays = rgb_images
    table = compute_feature_score_table(paths, progress=False)
    added = [n for names in available_feature_scores().values() for n in names if n not in ORIGINAL_SCORE_NAMES]
    assert len(added) >= 8
    for row, rgb8 in zip(table.itertuples(index=False), arrays):
        rgb = rgb8.astype(np.float64) / 255
        grey8 = luma_from_rgb(rgb8)
        grey = grey8 / 255
        counts = np.bincount(grey8.ravel(), minlength=256) / grey8.size
        interior = (slice(1, -1), slice(1, -1))
        # Sobel on the integer levels, so that pixels at the threshold compare exactly.
        level = grey8.astype(np.int64)
        sobel_squared = (ndimage.sobel(level, axis=1) ** 2 + ndimage.sobel(level, axis=0) ** 2)[interior]
        glcm = graycomatrix(np.minimum(grey8 // 16, 15), [1], [0, np.pi / 2], levels=16, normed=True)
        rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
        alpha = rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2])
        beta = np.sqrt(3) / 2 * (rgb[..., 1] - rgb[..., 2])
        h, w = grey.shape
        centre = np.zeros_like(grey, dtype=bool)
        centre[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        expected = {
            "rms_contrast": grey.std(),
            "entropy": -(counts[counts > 0] * np.log2(counts[counts > 0])).sum(),
            "colorfulness": np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()),
            "saturation_mean": rgb2hsv(rgb)[..., 1].mean(),
            "hue_concentration": np.hypot(alpha.sum(), beta.sum()) / np.hypot(alpha, beta).sum(),
            "center_surround_brightness": grey[centre].mean() - grey[~centre].mean(),
            "laplacian_variance": ndimage.laplace(grey)[interior].var(ddof=1),
            "edge_density": (sobel_squared > (4 * 0.1 * 255) ** 2).mean(),
            "glcm_contrast": graycoprops(glcm, "contrast").mean(),
            "glcm_homogeneity": graycoprops(glcm, "homogeneity").mean(),
        }
        for name, value in expected.items():
            assert getattr(row, name) == pytest.approx(value, abs=1e-5, rel=1e-5), name


def test_dc_free_frequency_ratio_does_not_fall_with_brightness(tmp_path):
    """The original ratio counts the DC term, so brightening an image lowers it; the AC ratio does not move."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 100, (200, 200), dtype=np.uint8)
    Image.fromarray(base).save(tmp_path / "dark.png")
    Image.fromarray(base + 150).save(tmp_path / "bright.png")
    table = compute_feature_score_table([tmp_path / "dark.png", tmp_path / "bright.png"], progress=False)
    assert table["fft_high_frequency_ratio"][1] < table["fft_high_frequency_ratio"][0] - 0.01
    assert table["high_frequency_ratio_ac"][1] == pytest.approx(table["high_frequency_ratio_ac"][0], abs=1e-6)


def test_every_pillow_format_and_mode_decodes_to_the_same_pixels(tmp_path):
    rng = np.random.default_rng(2)
    # At most 256 colours so that GIF and palette PNG are lossless.
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    rgb = palette[rng.integers(0, 200, (40, 30))]
    reference = decode_image(_save(tmp_path / "ref.png", Image.fromarray(rgb)))
    lossless = {
        "ref.bmp": Image.fromarray(rgb),
        "ref.tiff": Image.fromarray(rgb),
        "ref.webp": Image.fromarray(rgb),
        "ref.gif": Image.fromarray(rgb).quantize(256, dither=Image.Dither.NONE),
        "palette.png": Image.fromarray(rgb).quantize(256, dither=Image.Dither.NONE),
        "rgba.png": Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (40, 30), dtype=np.uint8)])),
    }
    for name, image in lossless.items():
        options = {"lossless": True} if name.endswith(".webp") else {}
        decoded = decode_image(_save(tmp_path / name, image, **options))
        np.testing.assert_array_equal(decoded.rgb, reference.rgb, err_msg=name)
        np.testing.assert_array_equal(decoded.grey, reference.grey, err_msg=name)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((30, 40), Image.BICUBIC))
    jpeg = decode_image(_save(tmp_path / "smooth.jpg", Image.fromarray(smooth), quality=95))
    assert np.abs(jpeg.rgb.astype(int) - smooth.transpose(2, 0, 1)).mean() < 8  # lossy, chroma subsampled
    cmyk = decode_image(_save(tmp_path / "cmyk.tiff", Image.fromarray(rgb).convert("CMYK")))
    np.testing.assert_allclose(cmyk.rgb, reference.rgb, atol=1)


def _save(path, image, **options):
    image.save(path, **options)
    return path


def test_sixteen_bit_images_are_scaled_by_65535(tmp_path):
    rng = np.random.default_rng(3)
    eight = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.tiff")
    assert decode_image(tmp_path / "sixteen.png").max_value == 65535
    table = compute_feature_score_table(
        [tmp_path / "eight.png", tmp_path / "sixteen.png", tmp_path / "sixteen.tiff"], progress=False
    )
    scores = table.drop(columns=PATH_COLUMN).to_numpy()
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-6)
    np.testing.assert_allclose(scores[2], scores[0], atol=1e-6)
    assert 0.3 < table["brightness"][1] < 0.7


@pytest.fixture
def with_broken(rgb_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    paths = rgb_images[0]
    return [paths[0], broken, paths[1], tmp_path / "missing.png", paths[2]], broken


def test_raise_names_the_unreadable_file(with_broken):
    paths, broken = with_broken
    with pytest.raises(ImageDecodeError, match="broken.png"):
        compute_feature_score_table(paths, progress=False)


def test_nan_and_skip_policies_list_the_files(with_broken):
    paths, _ = with_broken
    with pytest.warns(UserWarning, match=r"2 unreadable image\(s\) scored NaN:\n.*broken.png.*\n.*missing.png"):
        nan_table = compute_feature_score_table(paths, on_error="nan", progress=False)
    assert nan_table[PATH_COLUMN].tolist() == [str(p) for p in paths]
    scores = nan_table.drop(columns=PATH_COLUMN)
    assert scores.iloc[[1, 3]].isna().all().all() and not scores.iloc[[0, 2, 4]].isna().any().any()
    with pytest.warns(UserWarning, match="dropped"):
        skip_table = compute_feature_score_table(paths, on_error="skip", progress=False)
    assert skip_table[PATH_COLUMN].tolist() == [str(paths[i]) for i in (0, 2, 4)]
    np.testing.assert_array_equal(skip_table.drop(columns=PATH_COLUMN).to_numpy(), scores.iloc[[0, 2, 4]].to_numpy())


def test_previous_policy_is_deprecated_and_never_copies_a_neighbour(with_broken):
    paths, _ = with_broken
    with pytest.warns(FutureWarning, match="deprecated"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = compute_feature_score_table(paths, on_error="previous", progress=False)
    assert table.drop(columns=PATH_COLUMN).iloc[1].isna().all()


def test_bad_arguments_fail_before_any_image_is_read(monkeypatch, rgb_images):
    import tell_me_why.cues.table as module

    def must_not_decode(path):
        raise AssertionError("decoded before validating the arguments")

    monkeypatch.setattr(module, "decode_image", must_not_decode)
    paths = rgb_images[0]
    with pytest.raises(KeyError, match="no_such_score"):
        compute_feature_score_table(paths, score_names=["brightness", "no_such_score"])
    with pytest.raises(ValueError, match="on_error"):
        compute_feature_score_table(paths, on_error="ignore")
    with pytest.raises(TypeError, match="single path"):
        compute_feature_score_table(str(paths[0]))
    with pytest.raises(ValueError, match="batch_size"):
        compute_feature_score_table(paths, batch_size=0)


def test_order_and_values_do_not_depend_on_batching_or_workers(rgb_images):
    paths = list(rgb_images[0]) * 3  # mixed sizes, duplicates
    reference = compute_feature_score_table(paths, batch_size=1, num_workers=1, progress=False)
    for batch_size, workers in [(4, 2), (16, 3)]:
        table = compute_feature_score_table(paths, batch_size=batch_size, num_workers=workers, progress=False)
        assert table[PATH_COLUMN].tolist() == [str(p) for p in paths]
        np.testing.assert_allclose(
            table.drop(columns=PATH_COLUMN).to_numpy(), reference.drop(columns=PATH_COLUMN).to_numpy(), atol=1e-6
        )


def test_user_scores_run_on_the_decoded_batch(rgb_images):
    calls = []

    def green_fraction(batch):
        calls.append(len(batch))
        return (batch.rgb[:, 1] > batch.rgb[:, 0]).float().mean(dim=(1, 2))

    register_feature_score("green_fraction", green_fraction, category="color", label="green share")
    try:
        assert "green_fraction" in available_feature_scores()["color"]
        from tell_me_why.cues import describe_feature_scores

        described = describe_feature_scores(["green_fraction", "jaw_texture", "not_a_cue"])
        assert described["label"].tolist() == ["green share", "lower-band texture (jaw_texture)", "not_a_cue"]
        assert described["category"].tolist() == ["color", "spatial", ""]
        paths, arrays = rgb_images
        table = compute_feature_score_table(paths, score_names=["green_fraction"], batch_size=8, progress=False)
        expected = [(a[..., 1] > a[..., 0]).mean() for a in arrays]
        np.testing.assert_allclose(table["green_fraction"], expected, atol=1e-7)
        assert sum(calls) == len(paths) and len(calls) < len(paths)  # batched: two 200x200 images share a call
        with pytest.raises(ValueError, match="already registered"):
            register_feature_score("green_fraction", green_fraction)
    finally:
        unregister_feature_score("green_fraction")
    with pytest.raises(ValueError, match="built-in"):
        register_feature_score("brightness", green_fraction)
    register_feature_score("bad_shape", lambda batch: [1.0])
    try:
        with pytest.raises(ValueError, match="bad_shape.*one value per image"):
            compute_feature_score_table(rgb_images[0][::3], score_names=["bad_shape"], progress=False)
    finally:
        unregister_feature_score("bad_shape")


def test_memory_stays_bounded_as_the_number_of_images_grows(tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(_smooth_rgb(np.random.default_rng(4), 96, 96)).save(image)

    def peak_bytes(n):
        tracemalloc.start()
        compute_feature_score_table([image] * n, score_names=["brightness"], batch_size=8, num_workers=2,
                                    progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_bytes(100), peak_bytes(2000)
    per_row = 400  # the path string and score row kept for the table
    assert large < small + 2000 * per_row


def test_provenance_table_matches_files_in_both_splits(planted_dls, small_model):
    """Each row's input is the image of the file it names, in the train split too (the original paired the
    shuffled training rows with another shuffle's file order)."""
    from fastai.learner import Learner

    from tell_me_why.feature_scores import map_learner_predictions

    learn = Learner(planted_dls, small_model(), loss_func=lambda *a: 0)
    inputs, table = map_learner_predictions(learn, include_predictions=True)
    n_train, n_valid = len(planted_dls.train_ds), len(planted_dls.valid_ds)
    assert table["Set"].tolist() == ["Train"] * n_train + ["Valid"] * n_valid
    assert len(inputs) == len(table)
    vocab = list(planted_dls.vocab)
    for row, image in zip(table.itertuples(index=False), inputs):
        from pathlib import Path

        path = Path(row.Source_File_Path)
        assert vocab[row.Real_Target_ID] == path.parent.name
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        np.testing.assert_allclose(image.numpy(), pixels, atol=1e-5)
    assert table["Correct_Prediction"].dtype == bool
    assert set(table["Predicted_Class_Name"]) <= set(vocab)
