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
