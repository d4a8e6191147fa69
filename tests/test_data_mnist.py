"""MNIST IDX reading, checksum verification and the (offline, faked) download."""

import gzip
import hashlib
import io
import os
import struct
import urllib.error

import numpy as np
import pytest

import nncore.data.mnist as mn
from nncore.data import download_mnist, load_mnist, md5_file, read_idx
from nncore.errors import CorruptInputError, MissingInputError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real network access in this module is a test bug."""

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(mn.urllib.request, "urlopen", refuse)


def idx_bytes(array, magic=None, count=None):
    """Raw IDX bytes for a uint8 array (N,) or (N, R, C), with optional bad header fields."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    count = count if count is not None else len(array)
    header = struct.pack(">ii", magic, count) + b"".join(struct.pack(">i", d) for d in array.shape[1:])
    return header + array.tobytes()


def write(path, data, compress=True):
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if compress else data)
    return str(path)


def one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


# --------------------------------------------------------------------------- real data


def test_real_mnist_shapes_counts_and_md5(data_dir, mnist_dir):
    for name, md5 in mn.MNIST_FILES.items():
        assert md5_file(os.path.join(mnist_dir, name)) == md5
    d = load_mnist(data_dir, download=False)
    assert d["x_train"].shape == (60000, 28, 28) and d["x_train"].dtype == np.uint8
    assert d["x_test"].shape == (10000, 28, 28) and d["y_test"].shape == (10000,)
    assert np.bincount(d["y_train"]).tolist() == TRAIN_COUNTS
    assert np.bincount(d["y_test"]).tolist() == TEST_COUNTS
    assert d["x_train"].max() == 255 and d["x_train"][:, 0, :].mean() < 0.1  # white on black, (almost) empty border


def test_load_mnist_accepts_the_mnist_folder_itself(mnist_dir):
    d = load_mnist(mnist_dir, download=False, verify=False)
    assert len(d["y_test"]) == 10000


def test_env_var_is_the_default_root(monkeypatch, data_dir):
    monkeypatch.setenv("NNCORE_DATA_DIR", data_dir)
    assert len(load_mnist(download=False, verify=False)["y_train"]) == 60000


# --------------------------------------------------------------------------- read_idx


def test_read_idx_gz_and_raw(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    y = np.array([3, 7], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "x.gz", idx_bytes(x))), x)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "x.idx", idx_bytes(x), compress=False)), x)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "y.gz", idx_bytes(y))), y)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda b: gzip.compress(b)[: len(gzip.compress(b)) // 2], "gzip"),  # truncated gzip
        (lambda b: gzip.compress(b)[:12] + b"\x00" * 40 + gzip.compress(b)[52:], "gzip"),  # damaged stream
        (lambda b: gzip.compress(idx_bytes(np.zeros((4, 2, 2)), magic=1234)), "magic"),
        (lambda b: gzip.compress(idx_bytes(np.zeros((4, 2, 2)), count=5)), "bytes"),
        (lambda b: gzip.compress(b[:-3]), "bytes"),
        (lambda b: gzip.compress(b[:5]), "short"),
        (lambda b: gzip.compress(idx_bytes(np.zeros((4, 2, 2)), count=2**31 - 1)), "more than the file can hold"),
        (lambda b: idx_bytes(np.zeros((4, 2, 2)), count=2**31 - 1), "more than the file can hold"),  # raw IDX
        (lambda b: b + b"\x00", "holds more"),  # raw IDX with a trailing byte
        (lambda b: gzip.compress(b)[:-8], "truncated gzip"),  # all the data, no gzip trailer (CRC, size)
        (lambda b: gzip.compress(b + b"\x07"), "holds more"),  # one byte more than the header says
        (lambda b: gzip.compress(b) + gzip.compress(b"\x07"), "holds more"),  # a second gzip member
        (lambda b: gzip.compress(b) + bytes(200_000), "holds more"),  # far more file than its data needs
    ],
)
def test_read_idx_corrupt_files(tmp_path, make, words):
    good = idx_bytes(np.random.default_rng(0).integers(0, 255, (20, 8, 8)))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(make(good))
    with pytest.raises(CorruptInputError) as exc:
        read_idx(path)
    msg = one_line(exc)
    assert str(path) in msg and words in msg and "download" in msg


def test_read_idx_missing(tmp_path):
    with pytest.raises(MissingInputError) as exc:
        read_idx(tmp_path / "nope.gz")
    one_line(exc)


# --------------------------------------------------------------------------- load_mnist on fake files


def fake_mnist(folder, n_train=6, n_test=4, n_test_labels=None):
    """Write 4 tiny valid MNIST-like files; return {name: md5}."""
    rng = np.random.default_rng(1)
    os.makedirs(folder, exist_ok=True)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_bytes(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(np.arange(n_test_labels or n_test) % 10),
    }
    sums = {}
    for name, raw in files.items():
        write(os.path.join(folder, name), raw)
        sums[name] = md5_file(os.path.join(folder, name))
    return sums


def test_checksum_mismatch_is_corrupt(tmp_path):
    fake_mnist(tmp_path / "mnist")
    with pytest.raises(CorruptInputError) as exc:
        load_mnist(tmp_path, download=False)
    assert "md5" in one_line(exc)


def test_image_label_count_mismatch(tmp_path):
    fake_mnist(tmp_path / "mnist", n_test=4, n_test_labels=3)
    with pytest.raises(CorruptInputError) as exc:
        load_mnist(tmp_path, download=False, verify=False)
    assert "4 images but 3 labels" in one_line(exc)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(MissingInputError) as exc:
        load_mnist(tmp_path, download=False)
    assert "NNCORE_DATA_DIR" in one_line(exc)


# --------------------------------------------------------------------------- download (fake opener)


class FakeResponse(io.BytesIO):
    def __init__(self, data, length=None, fail_after=None, exc=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(length if length is not None else len(data))}
        self.fail_after, self.exc, self.sent = fail_after, exc, 0

    def read(self, n=-1):
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise self.exc
        block = super().read(n if self.fail_after is None else min(n, self.fail_after - self.sent) or 1)
        self.sent += len(block)
        return block


class FakeOpener:
    """urlopen stand-in: maps URL prefixes (mirror) to a behaviour."""

    def __init__(self, behaviours):
        self.behaviours, self.calls = behaviours, []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        mirror = url.rsplit("/", 1)[0] + "/"
        b = self.behaviours[mirror]
        if isinstance(b, BaseException):
            raise b
        return b()


NAME = "t10k-labels-idx1-ubyte.gz"
PAYLOAD = gzip.compress(idx_bytes(np.arange(10) % 10), mtime=0)
MIRRORS = ("https://a.example/mnist/", "https://b.example/mnist/", "https://c.example/mnist/")


@pytest.fixture
def fake_sums(monkeypatch):
    monkeypatch.setitem(mn.MNIST_FILES, NAME, hashlib.md5(PAYLOAD).hexdigest())


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_download_first_mirror(tmp_path, fake_sums):
    opener = FakeOpener({MIRRORS[0]: lambda: FakeResponse(PAYLOAD)})
    download_mnist(tmp_path, names=[NAME], mirrors=MIRRORS, opener=opener, progress=False)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD and opener.calls == [MIRRORS[0] + NAME]
    assert files_in(tmp_path) == [NAME]


def test_download_bad_checksum_then_good_mirror(tmp_path, fake_sums):
    opener = FakeOpener({
        MIRRORS[0]: lambda: FakeResponse(PAYLOAD[:-1] + b"x"),
        MIRRORS[1]: urllib.error.URLError("unreachable"),
        MIRRORS[2]: lambda: FakeResponse(PAYLOAD),
    })
    download_mnist(tmp_path, names=[NAME], mirrors=MIRRORS, opener=opener, progress=True)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD and len(opener.calls) == 3


def test_download_all_mirrors_fail(tmp_path, fake_sums):
    opener = FakeOpener({
        MIRRORS[0]: urllib.error.HTTPError(MIRRORS[0] + NAME, 404, "Not Found", {}, None),
        MIRRORS[1]: lambda: FakeResponse(b"<html>moved</html>"),
        MIRRORS[2]: lambda: FakeResponse(PAYLOAD[:20], length=len(PAYLOAD)),  # connection dropped
    })
    with pytest.raises(MissingInputError) as exc:
        download_mnist(tmp_path, names=[NAME], mirrors=MIRRORS, opener=opener, progress=False)
    msg = one_line(exc)
    assert all(m in msg for m in MIRRORS) and "md5" in msg and "404" in msg
    assert files_in(tmp_path) == []


def test_download_interrupted_leaves_no_file(tmp_path, fake_sums):
    opener = FakeOpener({MIRRORS[0]: lambda: FakeResponse(PAYLOAD, fail_after=10, exc=KeyboardInterrupt())})
    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path, names=[NAME], mirrors=MIRRORS, opener=opener, progress=False)
    assert files_in(tmp_path) == []


def test_load_mnist_downloads_missing_files(tmp_path, monkeypatch):
    src = tmp_path / "src"
    sums = fake_mnist(src, n_train=10, n_test=5)
    for name, md5 in sums.items():
        monkeypatch.setitem(mn.MNIST_FILES, name, md5)
    served = {name: (src / name).read_bytes() for name in sums}
    calls = []

    def opener(url, timeout=None):
        calls.append(url)
        return FakeResponse(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(mn.urllib.request, "urlopen", opener)
    d = load_mnist(tmp_path / "root", download=True)
    assert d["x_train"].shape == (10, 28, 28) and d["y_test"].shape == (5,)
    assert len(calls) == 4 and calls[0].startswith(mn.MIRRORS[0])
    load_mnist(tmp_path / "root", download=True)  # present now: no second download
    assert len(calls) == 4
