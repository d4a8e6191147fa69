"""Datasets by name (nncore.data.load_data): the symbols extraction and its per-root cache."""

import os
import shutil

import numpy as np
import pytest
from test_data_folders import make_tree

from nncore.data import (
    dataset_name,
    extract_image_folder,
    folder_content_digest,
    folder_fingerprint,
    load_data,
    load_dataset,
)
from nncore.errors import MissingInputError, SettingError


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Two data roots whose symbols/ trees differ in one class name; the working folder is tmp_path."""
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a / "symbols", per_class=3, extra_bad=False)
    make_tree(b / "symbols", per_class=3, extra_bad=False)
    os.rename(b / "symbols" / "ring", b / "symbols" / "zero")
    monkeypatch.chdir(tmp_path)
    return str(a), str(b)


def test_symbols_cache_follows_the_data_root(roots, tmp_path):
    """A second data root used to reuse data/symbols.npz extracted from the first one."""
    a, b = roots
    lines = []
    assert load_data("symbols", a, log=lines.append)["class_names"] == ["ell", "plus", "ring"]
    assert (tmp_path / "data" / "symbols.npz").is_file() and "first use" in lines[-1]
    d = load_data("symbols", b, log=lines.append)
    assert d["class_names"] == ["ell", "plus", "zero"]
    assert "was extracted from" in lines[-1] and os.path.join(a, "symbols") in lines[-1]
    assert (load_dataset(tmp_path / "data" / "symbols.npz")["meta"]["source"]
            == os.path.abspath(os.path.join(b, "symbols")))
    again = load_data("symbols", b, log=lines.append)  # unchanged: the cache is used, and the log says from where
    assert "using" in lines[-1] and os.path.abspath(os.path.join(b, "symbols")) in lines[-1]
    for k in ("x_train", "y_train", "x_test"):
        np.testing.assert_array_equal(again[k], d[k])


def test_symbols_cache_is_redone_when_the_files_change(roots):
    a, _ = roots
    lines = []
    before = load_data("symbols", a, log=lines.append)
    shutil.copy(os.path.join(a, "symbols", "ell", "ell_000.png"), os.path.join(a, "symbols", "ell", "ell_new.png"))
    after = load_data("symbols", a, log=lines.append)
    assert "does not match the files" in lines[-1]
    assert sum(len(after[f"y_{s}"]) for s in ("train", "val", "test")) == \
        sum(len(before[f"y_{s}"]) for s in ("train", "val", "test")) + 1


def _touch_all(folder, seconds_later=1000):
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds_later * 10**9))


def test_a_folder_with_new_times_but_the_same_bytes_keeps_its_extraction(roots, tmp_path):
    """Copied, synced or touched: every modification time new, no byte changed. The cache is kept (its
    recorded content digest matches), and its fingerprint updated, so that the next load is quick again."""
    a, _ = roots
    lines = []
    before = load_data("symbols", a, log=lines.append)
    cache = tmp_path / "data" / "symbols.npz"
    _touch_all(os.path.join(a, "symbols"))
    after = load_data("symbols", a, log=lines.append)
    assert "same contents" in lines[-1] and "extracting" not in lines[-1]
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(after[k], before[k])
    assert load_dataset(cache)["meta"]["fingerprint"] == folder_fingerprint(os.path.join(a, "symbols"))
    load_data("symbols", a, log=lines.append)
    assert "unchanged since" in lines[-1]


def test_a_file_rewritten_with_other_bytes_is_extracted_again(roots, tmp_path):
    """Same names, same count: one image replaced by another one's bytes. The content digest differs, so the
    extraction is redone; a cache from before the digest existed is redone too when its fingerprint differs."""
    a, _ = roots
    folder = os.path.join(a, "symbols")
    lines = []
    load_data("symbols", a, log=lines.append)
    digest = folder_content_digest(folder)
    shutil.copy(os.path.join(folder, "ell", "ell_002.png"), os.path.join(folder, "ell", "ell_000.png"))
    assert folder_content_digest(folder) != digest
    load_data("symbols", a, log=lines.append)
    assert "does not match the files" in lines[-1]
    assert load_dataset(tmp_path / "data" / "symbols.npz")["meta"]["content"] == folder_content_digest(folder)
    from nncore.data import save_dataset_dict
    d = load_dataset(tmp_path / "data" / "symbols.npz")
    d["meta"].pop("content")                           # written by an nncore before the digest existed
    save_dataset_dict(tmp_path / "data" / "symbols.npz", d)
    _touch_all(folder)
    load_data("symbols", a, log=lines.append)
    assert "does not match the files" in lines[-1]


def test_a_cache_that_cannot_be_read_is_extracted_again(roots, tmp_path):
    """A truncated or overwritten data/symbols.npz: one log line saying so, then a fresh extraction."""
    a, _ = roots
    lines = []
    before = load_data("symbols", a, log=lines.append)
    (tmp_path / "data" / "symbols.npz").write_bytes(b"not a zip file")
    after = load_data("symbols", a, log=lines.append)
    assert "cannot be read" in lines[-1] and "extracting" in lines[-1]
    np.testing.assert_array_equal(after["x_test"], before["x_test"])
    assert load_dataset(tmp_path / "data" / "symbols.npz")["meta"]["fingerprint"] == \
        folder_fingerprint(os.path.join(a, "symbols"))


def test_a_cache_without_fingerprint_or_with_another_split_is_redone(roots, tmp_path):
    a, _ = roots
    from nncore.data import save_dataset_dict
    d, _ = extract_image_folder(os.path.join(a, "symbols"), (0.5, 0.25, 0.25), seed=3, workers=1)
    save_dataset_dict(tmp_path / "data" / "symbols.npz", d)  # e.g. extract_data.py folders symbols --seed 3
    lines = []
    load_data("symbols", a, log=lines.append)
    assert "another split" in lines[-1]
    d, _ = extract_image_folder(os.path.join(a, "symbols"), (0.7, 0.15, 0.15), seed=0, workers=1)
    d["meta"].pop("fingerprint")  # written by an nncore before the fingerprint existed
    save_dataset_dict(tmp_path / "data" / "symbols.npz", d)
    load_data("symbols", a, log=lines.append)
    assert "no file fingerprint" in lines[-1]
    load_data("symbols", a, log=lines.append)
    assert "using" in lines[-1]


def test_a_missing_symbols_folder_is_not_covered_up_by_the_cache(roots, tmp_path):
    a, _ = roots
    load_data("symbols", a, log=None)
    with pytest.raises(MissingInputError, match="symbols.npz"):
        load_data("symbols", str(tmp_path / "elsewhere"), log=None)


def test_fingerprint_sees_classes_csv_and_file_changes(tmp_path):
    root = make_tree(tmp_path / "t", per_class=2, extra_bad=False)
    first = folder_fingerprint(root)
    assert first == folder_fingerprint(root) and first.startswith("6-")
    with open(os.path.join(root, "classes.csv"), "w") as f:
        f.write("class,symbol\nring,o\nplus,+\nell,L\n")
    assert folder_fingerprint(root) != first


def test_dataset_names_and_bad_spec():
    assert [dataset_name(s) for s in ("MNIST", "symbols", "x/foo.npz")] == ["mnist", "symbols", "foo"]
    with pytest.raises(SettingError) as err:
        load_data("nope")
    assert err.value.setting == "dataset" and "--" not in str(err.value)
