"""Weights files: a full round trip, atomic writes, and clear refusals of bad files."""

import json
import zipfile

import numpy as np
import pytest

import nncore
from nncore.errors import CorruptInputError, MissingInputError, OutputError, UsageError
from nncore.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from nncore.sequential import Sequential


def bn_model():
    layers = [Conv2D(1, 4, 3, padding=1, bias=False, rng=0), BatchNorm(4), ReLU(), MaxPool2D(2), Flatten(),
              Dense(4 * 4 * 4, 3, rng=1)]
    return Sequential(layers, (1, 8, 8), class_names=["plus", "minus", "div"], symbols=["+", "-", "÷"],
                      input_scaling={"mean": 0.2, "std": 0.3})


def test_round_trip_restores_everything(tmp_path):
    model = bn_model()
    model.forward(np.random.default_rng(0).standard_normal((6, 1, 8, 8)).astype(np.float32), training=True)
    path = tmp_path / "m.npz"
    nncore.save_model(model, path, metadata={"test_accuracy": 0.5})
    loaded = nncore.load_model(path)
    assert loaded.class_names == ["plus", "minus", "div"] and loaded.symbols == ["+", "-", "÷"]
    assert loaded.input_scaling == {"mean": 0.2, "std": 0.3} and not loaded.training
    for a, b in zip(model.layers, loaded.layers):
        for d1, d2 in ((a.params, b.params), (a.buffers, b.buffers)):
            for k in d1:
                np.testing.assert_array_equal(d1[k], d2[k])
    imgs = np.random.default_rng(1).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(model.eval().predict_proba(imgs), loaded.predict_proba(imgs))
    assert nncore.read_header(path)["metadata"] == {"test_accuracy": 0.5}


def test_file_holds_no_pickles(tmp_path):
    path = tmp_path / "m.npz"
    nncore.save_model(bn_model(), path)
    with np.load(path, allow_pickle=False) as data:  # would raise on any object array
        for key in data.files:
            assert data[key].dtype != object


def test_interrupted_save_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nncore.save_model(bn_model(), path, metadata={"v": 1})

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        nncore.save_model(bn_model(), path, metadata={"v": 2})
    monkeypatch.undo()
    assert nncore.read_header(path)["metadata"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


def test_missing_file(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        nncore.load_model(tmp_path / "nope.npz")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(UsageError, match="folder"):
        nncore.load_model(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", b"PK\x03\x04broken"])
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(CorruptInputError, match="not an nncore weights file"):
        nncore.load_model(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    nncore.save_model(bn_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInputError):
        nncore.load_model(path)


def test_npz_of_something_else(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CorruptInputError, match="no array '__nncore__'"):
        nncore.load_model(path)


def saved_arrays(tmp_path):
    """Save a model, return (path, its arrays as a dict) for a test to tamper with and re-save."""
    path = tmp_path / "m.npz"
    nncore.save_model(bn_model(), path)
    with np.load(path) as data:
        return path, {k: data[k] for k in data.files}


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path, arrays = saved_arrays(tmp_path)
    arrays["layers.0.W"] = np.array([{"x": 1}], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(CorruptInputError, match="cannot be loaded safely"):
        nncore.load_model(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    path, arrays = saved_arrays(tmp_path)
    arrays["layers.5.W"] = np.zeros((10, 3), np.float32)
    np.savez(path, **arrays)
    with pytest.raises(CorruptInputError, match="does not fit its architecture"):
        nncore.load_model(path)


def test_unknown_layer_type_and_version(tmp_path):
    path, arrays = saved_arrays(tmp_path)
    header = json.loads(str(arrays["__nncore__"]))
    header["architecture"][0]["type"] = "Transformer"
    arrays["__nncore__"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    with pytest.raises(CorruptInputError, match="unknown layer type"):
        nncore.load_model(path)
    header["version"] = 99
    arrays["__nncore__"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    with pytest.raises(CorruptInputError, match="version 99"):
        nncore.load_model(path)


def test_unwritable_folder(tmp_path):
    """A folder that cannot be created (its parent is a regular file): refused even for root."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        nncore.save_model(bn_model(), blocker / "sub" / "m.npz")


def test_saving_onto_a_folder(tmp_path):
    with pytest.raises(OutputError, match="folder"):
        nncore.save_model(bn_model(), tmp_path)


def test_is_a_zip_archive(tmp_path):
    path = tmp_path / "m.npz"
    nncore.save_model(bn_model(), path)
    assert zipfile.is_zipfile(path)
