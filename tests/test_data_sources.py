"""Binary datasets from a folder per class, a CSV, or a file-name rule, with clear errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tell_me_why.app.data import DataSourceError, from_csv, from_filename_rule, from_folder


def _image(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    for name in ("cat", "dog"):
        for i in range(6):
            _image(tmp_path / "data" / name / f"{name}_{i}.png", 50 if name == "cat" else 200)
    return tmp_path / "data"


def test_folder_per_class(folder):
    data = from_folder(folder)
    assert data.classes == ("cat", "dog") and data.counts() == {"cat": 6, "dog": 6}
    assert all(path.parent.name == label for path, label in zip(data.paths, data.labels))
    dls = data.dataloaders(size=8, bs=4, valid_pct=0.25)
    assert list(dls.vocab) == ["cat", "dog"] and len(dls.train_ds) + len(dls.valid_ds) == 12


def test_same_seed_same_training_order_whatever_the_global_random_state(folder):
    import random

    data = from_folder(folder)
    orders = []
    for global_state, seed in ((1, 7), (2, 7), (1, 8)):
        random.seed(global_state)
        train = data.dataloaders(size=8, bs=4, valid_pct=0.25, seed=seed).train
        orders.append([train.get_idxs() for _ in range(2)])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_unreadable_files_are_listed_and_skipped_or_fatal(folder):
    broken = folder / "dog" / "broken.png"
    broken.write_bytes(b"definitely not a png")
    data = from_folder(folder)
    assert broken not in data.paths and [p for p, _ in data.skipped] == [broken]
    with pytest.raises(DataSourceError, match=r"1 unreadable image\(s\).*\n.*broken.png"):
        from_folder(folder, on_unreadable="raise")


def test_not_two_classes_and_too_few_images_are_clear_errors(folder, tmp_path):
    _image(folder / "bird" / "bird_0.png")
    with pytest.raises(DataSourceError, match=r"exactly two classes; found 3: 'bird' \(1\), 'cat' \(6\), 'dog' \(6\)"):
        from_folder(folder)
    one = tmp_path / "one"
    for i in range(6):
        _image(one / "only" / f"{i}.png")
    with pytest.raises(DataSourceError, match=r"found 1: 'only' \(6\)"):
        from_folder(one)
    few = tmp_path / "few"
    for name, count in (("a", 6), ("b", 2)):
        for i in range(count):
            _image(few / name / f"{i}.png")
    with pytest.raises(DataSourceError, match=r"Too few readable images.*'b': 2"):
        from_folder(few)
    with pytest.raises(DataSourceError, match="No images found"):
        from_folder(tmp_path / "one" / "only")


def test_csv_with_relative_paths_and_its_errors(folder, tmp_path):
    rows = ["path,label"] + [f"{p.relative_to(folder)},{p.parent.name}" for p in sorted(folder.rglob("*.png"))]
    csv = folder / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    data = from_csv(csv)
    assert data.counts() == {"cat": 6, "dog": 6} and all(p.is_file() for p in data.paths)
    (tmp_path / "bad.csv").write_text('path,label\n"unterminated,cat\n')
    with pytest.raises(DataSourceError, match="Cannot parse .*bad.csv"):
        from_csv(tmp_path / "bad.csv")
    (tmp_path / "columns.csv").write_text("file,class\na.png,cat\n")
    with pytest.raises(DataSourceError,
                       match=r"no column\(s\) \['path', 'label'\]; its columns are \['file', 'class'\]"):
        from_csv(tmp_path / "columns.csv")
    (tmp_path / "empty_label.csv").write_text("path,label\na.png,cat\nb.png,\n")
    with pytest.raises(DataSourceError, match=r"rows \[3\]"):
        from_csv(tmp_path / "empty_label.csv")
    with pytest.raises(DataSourceError, match="does not exist"):
        from_csv(tmp_path / "missing.csv")


def test_pets_file_name_rule(tmp_path):
    for i in range(5):
        _image(tmp_path / "pets" / f"Bengal_{i}.png")
        _image(tmp_path / "pets" / f"beagle_{i}.png")
    data = from_filename_rule(tmp_path / "pets", rule="pets")
    assert data.counts() == {"cat": 5, "dog": 5}
    assert all((label == "cat") == path.name[0].isupper() for path, label in zip(data.paths, data.labels))
    with pytest.raises(DataSourceError, match="Unknown labelling rule 'birds'"):
        from_filename_rule(tmp_path / "pets", rule="birds")


def _pixels(path, pixels, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def _grey_folder(root, colour_image=False):
    """Textured images whose three channels are equal (saved as RGB), and single-channel ones."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        for i in range(6):
            grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            if i % 2:
                _pixels(root / name / f"{name}_{i}.png", grey)  # mode L
            else:
                _pixels(root / name / f"{name}_{i}.png", np.stack([grey] * 3, -1))  # RGB, R = G = B
    if colour_image:
        pixels = np.stack([rng.integers(0, 256, (16, 16), dtype=np.uint8)] * 3, -1)
        pixels[3, 5, 2] ^= 1  # one pixel of one channel differs: the image has colour
        _pixels(root / "dog" / "dog_colour.png", pixels)
    return root


def test_the_data_says_whether_every_image_is_grey(tmp_path):
    assert from_folder(_grey_folder(tmp_path / "grey")).grey is True
    assert from_folder(_grey_folder(tmp_path / "mixed", colour_image=True)).grey is False
    # An unreadable file is skipped and has no say in the verdict.
    (tmp_path / "grey" / "cat" / "broken.png").write_bytes(b"not a png")
    data = from_folder(tmp_path / "grey")
    assert data.grey is True and len(data.skipped) == 1


def test_the_grey_verdict_is_the_colour_cues_rule(tmp_path):
    """The data step and the colour cues (NaN on grey images) decide with one rule, image by image."""
    from tell_me_why.cues.decoding import decode_image
    from tell_me_why.cues.definitions import ImageBatch

    root = _grey_folder(tmp_path / "mixed", colour_image=True)
    paths = sorted(root.rglob("*.png"))
    decoded = [decode_image(p) for p in paths]
    per_image = [image.is_grey for image in decoded]
    assert per_image.count(False) == 1 and not per_image[paths.index(root / "dog" / "dog_colour.png")]
    assert ImageBatch(decoded).is_grey.tolist() == per_image
