"""Property-based hardening (hypothesis): hostile arrays and bytes never crash the data pipeline.

* ``preprocess_image`` on any array (shape, dtype, NaN/inf) returns a (28, 28) uint8 image or
  raises UsageError / ImageReadError with a one-line message;
* ``read_idx`` on any bytes (raw or gzip) returns an array or raises CorruptInputError;
* ``load_dataset`` on damaged dataset files raises CorruptInputError;
* BatchNorm in training mode on a batch of one raises a one-line UsageError.
"""

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nncore
from nncore.cli import run_cli
from nncore.data import load_dataset, save_dataset
from nncore.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from nncore.data.preprocess import ImageReadError
from nncore.errors import CorruptInputError, OutputError, UsageError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_, np.complex64])
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)


def one_line(exc):
    text = str(exc)
    assert text and "\n" not in text
    return text


@FAST
@given(hnp.arrays(dtype=dtypes, shape=shapes))
def test_preprocess_image_any_array(a):
    try:
        out = nncore.preprocess_image(a)
    except (UsageError, ImageReadError) as exc:
        one_line(exc)
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8


@FAST
@given(hnp.arrays(dtype=st.sampled_from([np.float32, np.float64]),
                  shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_preprocess_image_any_float_pixels(a):
    try:
        out = nncore.preprocess_image(a)
    except UsageError as exc:
        msg = one_line(exc)
        assert "NaN" in msg or "range" in msg
        return
    assert np.isfinite(a).all() and a.min() >= 0
    assert out.shape == (28, 28) and out.dtype == np.uint8


@FAST
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16]), shape=st.tuples(st.integers(1, 60), st.integers(1, 60),
                                                                                 st.sampled_from([1, 3, 4]))))
def test_preprocess_image_any_uint_pixels_with_channels(a):
    out = nncore.preprocess_image(a)
    assert out.shape == (28, 28) and out.dtype == np.uint8


def test_preprocess_image_huge_array_header_refused_without_allocating():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(20000, 20000), strides=(0, 0))
    with pytest.raises(ImageReadError, match="megapixel"):
        nncore.preprocess_image(big)


def idx_header(magic, dims):
    return struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in dims)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC, 0, -1, 2050]),
              st.lists(st.integers(-2**31, 2**31 - 1), max_size=3), st.binary(max_size=200))
    .map(lambda t: idx_header(t[0], t[1]) + t[2]),
    st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(-3, 3))
    .map(lambda t: idx_header(IMAGES_MAGIC, t[:3]) + bytes(max(0, t[0] * t[1] * t[2] + t[3])))),
    st.booleans())
def test_read_idx_any_bytes(tmp_path, raw, compress):
    path = tmp_path / "x.idx"
    data = gzip.compress(raw) if compress else raw
    path.write_bytes(data[:-3] if compress and len(raw) % 2 else data)  # sometimes a truncated gzip
    try:
        arr = read_idx(path)
    except CorruptInputError as exc:
        one_line(exc)
        return
    assert arr.dtype == np.uint8 and arr.ndim in (1, 3)


def test_read_idx_refuses_a_folder(tmp_path):
    from nncore.errors import MissingInputError
    with pytest.raises(MissingInputError):
        read_idx(tmp_path)


# -- datasets -------------------------------------------------------------------------------------------

@pytest.fixture
def good_dataset(tmp_path):
    x, y = np.zeros((6, 28, 28), np.uint8), np.array([0, 1, 2, 0, 1, 2])
    return save_dataset(tmp_path / "d.npz", x, y, x, y, x, y, ["a", "b", "c"])


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(y_val=d["y_val"] + 5), "labels lie in"),
    (lambda d: d.update(y_val=d["y_val"] - 5), "labels lie in"),
    (lambda d: d.update(y_train=d["y_train"].astype(np.float32)), "expected integers"),
    (lambda d: d.update(x_test=d["x_test"].astype(np.float64)), "expected uint8"),
    (lambda d: d.update(x_test=d["x_test"][:2]), "do not match"),
    (lambda d: d.update(meta=np.array('"text"')), "not a JSON object"),
    (lambda d: d.update(meta=np.array("{broken")), "unreadable metadata"),
    (lambda d: d.update(class_names=np.array(["a"]), symbols=np.array(["a"])), "at least 2 classes"),
    (lambda d: d.update(class_names=np.arange(3)), "array of strings"),
])
def test_damaged_dataset_files_are_corrupt_input(tmp_path, good_dataset, change, words):
    d = dict(np.load(good_dataset))
    change(d)
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(CorruptInputError, match=words) as exc:
        load_dataset(tmp_path / "bad.npz")
    one_line(exc.value)
    assert load_dataset(good_dataset)["y_train"].dtype == np.int64


def test_dataset_path_that_is_a_folder(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        load_dataset(tmp_path)


# -- numerics and the CLI wrapper ------------------------------------------------------------------------

def test_batchnorm_training_on_a_batch_of_one_is_a_usage_error():
    from nncore.layers import BatchNorm
    bn = BatchNorm(4)
    with pytest.raises(UsageError, match="at least 2") as exc:
        bn.forward(np.ones((1, 4), np.float32), training=True)
    one_line(exc.value)
    assert bn.forward(np.ones((1, 4), np.float32), training=False).shape == (1, 4)  # evaluation mode is fine


@pytest.mark.parametrize("label", [0, 1, 2])
@pytest.mark.parametrize("logits", [[[1e30, -1e30, 0.0]], [[-1e30, -1e30, -1e30]], [[1.5e38, 0.0, -1.5e38]]])
def test_cross_entropy_is_finite_for_extreme_logits(logits, label):
    """Finite while the spread of the logits fits in float32 (< 3.4e38); beyond that the trainer's
    divergence check stops the run (exit 6)."""
    loss_fn = nncore.SoftmaxCrossEntropy()
    loss = loss_fn.forward(np.array(logits, np.float32), np.array([label]))
    assert np.isfinite(loss) and np.isfinite(loss_fn.backward()).all()


def test_training_config_rejects_batch_of_one_with_batchnorm():
    from nncore.training import TrainConfig
    with pytest.raises(UsageError, match="BatchNorm"):
        TrainConfig(batch_size=1).validate()
    TrainConfig(batch_size=1, batchnorm=False).validate()


def test_run_cli_turns_a_failing_stdout_into_exit_5(monkeypatch, capsys):
    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def fileno(self):
            raise ValueError("no file")

    def main(argv):
        print("result")

    monkeypatch.setattr("sys.stdout", Full())
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, [])
    assert exit_.value.code == OutputError.exit_code
    assert capsys.readouterr().err.strip() == "error: cannot write to standard output: the disk is full"
