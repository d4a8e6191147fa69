"""Image-folder extraction, stratified splits and the .npz dataset format."""

import json
import os
import zipfile

import numpy as np
import pytest
from conftest import glyph
from PIL import Image

from nncore.data import list_classes, load_dataset, load_image_folder, mnist_dataset, save_dataset, stratified_split
from nncore.errors import CorruptInputError, MissingInputError, UsageError


def make_tree(root, per_class=4, extra_bad=True, csv=False):
    """root/{ell,plus,ring}/ with light-background PNG/JPEG glyphs, plus a broken file."""
    kinds = {"ring": "ring", "plus": "plus", "ell": "ell"}
    for name, kind in kinds.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(glyph(kind, size=(40 + 7 * i, 45), width=2 + i % 3))
            ext = "jpg" if i % 2 else "png"
            img.save(os.path.join(root, name, f"{name}_{i:03d}.{ext}"))
    if extra_bad:
        with open(os.path.join(root, "plus", "broken.png"), "w") as f:
            f.write("not really a png")
        with open(os.path.join(root, "ring", ".hidden.png"), "w") as f:
            f.write("ignored")
    if csv:
        with open(os.path.join(root, "classes.csv"), "w", encoding="utf-8") as f:
            f.write("class,original_class,symbol,count\nring,o,○,4\nplus,+,+,4\nell,L,L,4\n")
    return str(root)


def test_load_image_folder(tmp_path):
    root = make_tree(tmp_path / "tree")
    images, labels, names, symbols, skipped = load_image_folder(root, workers=1)
    assert names == ["ell", "plus", "ring"] and symbols == names
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [4, 4, 4]
    assert len(skipped) == 1 and skipped[0][0].endswith("broken.png") and "broken.png" in skipped[0][1]
    assert all(img.any() for img in images) and images[:, 0, :].mean() < 5
    # same class -> similar pictures, different classes -> different
    mean = np.stack([images[labels == k].mean(0) for k in range(3)]).reshape(3, -1)
    c = np.corrcoef(mean)
    assert c[0, 0] > c[0, 1] and c[1, 1] > c[1, 2]


def test_classes_csv_sets_order_and_symbols(tmp_path):
    root = make_tree(tmp_path / "tree", per_class=2, extra_bad=False, csv=True)
    names, symbols = list_classes(root)
    assert names == ["ring", "plus", "ell"] and symbols == ["○", "+", "L"]
    res = load_image_folder(root, workers=1)
    assert res.class_names == names and res.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_pool_gives_the_same_result(tmp_path):
    root = str(tmp_path / "big")
    for _k, kind in enumerate(("ring", "plus")):
        os.makedirs(os.path.join(root, kind))
        base = glyph(kind, size=(32, 32), width=2)
        for i in range(110):
            Image.fromarray(np.roll(base, i % 5, axis=1)).save(os.path.join(root, kind, f"{i}.png"))
    one = load_image_folder(root, workers=1)
    two = load_image_folder(root, workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.labels, two.labels)


def test_folder_errors(tmp_path):
    with pytest.raises(MissingInputError, match="not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(MissingInputError, match="no image files"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "a" / "x.png").write_text("junk")
    with pytest.raises(CorruptInputError, match="none of the 1 files"):
        load_image_folder(tmp_path / "empty")
    root = make_tree(tmp_path / "csvtree", per_class=1, extra_bad=False)
    with open(os.path.join(root, "classes.csv"), "w") as f:
        f.write("class,symbol\nring,o\nsquare,[]\n")
    with pytest.raises(MissingInputError, match="square"):
        load_image_folder(root)


# --------------------------------------------------------------------------- splits


def test_stratified_split_is_deterministic_and_stratified():
    labels = np.repeat(np.arange(5), [100, 50, 20, 3, 7])
    a = stratified_split(labels, (0.7, 0.15, 0.15), seed=3)
    b = stratified_split(labels, (0.7, 0.15, 0.15), seed=3)
    c = stratified_split(labels, (0.7, 0.15, 0.15), seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    allidx = np.concatenate(a)
    assert sorted(allidx.tolist()) == list(range(len(labels)))  # a partition
    for part in a:
        assert set(labels[part].tolist()) == set(range(5))  # every class in every split
    counts = [np.bincount(labels[p], minlength=5) for p in a]
    assert counts[1][0] == 15 and counts[2][0] == 15 and counts[0][0] == 70
    assert counts[0][3] == 1 and counts[1][3] == 1 and counts[2][3] == 1


def test_stratified_split_small_classes_and_zero_fraction():
    labels = np.array([0, 1, 1, 2, 2, 2])
    tr, va, te = stratified_split(labels, (0.5, 0.5, 0.0), seed=0)
    assert len(te) == 0 and 0 in labels[tr]
    tr, va, te = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert set(labels[tr]) == {0, 1, 2}


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.5, 0.3, 0.3), (-0.1, 0.6, 0.5), (0.0, 0.5, 0.5), ("a", 1, 2)])
def test_stratified_split_bad_fractions(bad):
    with pytest.raises(UsageError):
        stratified_split(np.zeros(10, np.int64), bad)


# --------------------------------------------------------------------------- save / load


def small_dataset():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (10, 28, 28), dtype=np.uint8)
    y = np.arange(10) % 2
    return x[:6], y[:6], x[6:8], y[6:8], x[8:], y[8:]


def test_save_load_roundtrip(tmp_path):
    path = tmp_path / "sub" / "d.npz"
    save_dataset(path, *small_dataset(), ["plus", "minus"], ["+", "−"], {"source": "test", "seed": 1})
    d = load_dataset(path)
    np.testing.assert_array_equal(d["x_val"], small_dataset()[2])
    assert d["y_train"].dtype == np.int64 and d["x_train"].dtype == np.uint8
    assert d["class_names"] == ["plus", "minus"] and d["symbols"] == ["+", "−"]
    assert d["meta"]["seed"] == 1 and d["meta"]["counts"]["train"] == [3, 3]
    with np.load(path, allow_pickle=False) as raw:  # no object arrays
        assert all(raw[k].dtype != object for k in raw.files)
        assert raw["class_names"].dtype.kind == "U" and json.loads(str(raw["meta"]))["source"] == "test"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["d.npz"]  # no temp files left


def test_load_dataset_errors(tmp_path):
    with pytest.raises(MissingInputError, match="extract_data.py"):
        load_dataset(tmp_path / "none.npz")
    path = tmp_path / "d.npz"
    save_dataset(path, *small_dataset(), ["a", "b"])
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", x_train=np.zeros(3))
    for name in ("cut.npz", "text.npz", "other.npz"):
        with pytest.raises(CorruptInputError) as exc:
            load_dataset(tmp_path / name)
        msg = str(exc.value)
        assert "not an nncore dataset" in msg and "extract_data.py" in msg and "\n" not in msg
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.writestr("x_train.npy", b"garbage")
    with pytest.raises(CorruptInputError):
        load_dataset(tmp_path / "bad.npz")


def test_mnist_dataset(data_dir, mnist_dir):
    d = mnist_dataset(data_dir, val_size=5000, seed=0, download=False)
    assert d["x_train"].shape == (55000, 28, 28) and d["x_val"].shape == (5000, 28, 28)
    assert d["x_test"].shape == (10000, 28, 28) and d["y_val"].dtype == np.int64
    p_train = np.bincount(d["y_train"]) / 55000
    p_val = np.bincount(d["y_val"]) / 5000
    assert np.abs(p_train - p_val).max() < 0.002
    again = mnist_dataset(data_dir, val_size=5000, seed=0, download=False)
    np.testing.assert_array_equal(again["y_val"], d["y_val"])
