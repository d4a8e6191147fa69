"""Shared pytest fixtures.

Real-data fixtures read ``NNCORE_DATA_DIR`` (a folder holding ``mnist/`` and
``symbols/``). When the data is missing the test is skipped, except on CI
(``CI`` set), where it fails, so a misconfigured runner cannot silently skip
the real-data tests.
"""

import os

import numpy as np
import pytest


def unavailable(msg):
    """Something a test needs is missing: a failure under CI (where everything must be there), else a skip."""
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _need(path, what):
    if path and os.path.isdir(path) and os.listdir(path):
        return path
    unavailable(f"{what} not found at {path!r}; set NNCORE_DATA_DIR to the folder holding mnist/ and symbols/")


@pytest.fixture(scope="session")
def data_dir():
    """Absolute path of $NNCORE_DATA_DIR (fails on CI, skips elsewhere if unset/missing)."""
    root = os.environ.get("NNCORE_DATA_DIR")
    return _need(os.path.abspath(root) if root else None, "NNCORE_DATA_DIR")


@pytest.fixture(scope="session")
def mnist_dir(data_dir):
    """<data dir>/mnist, holding the four original MNIST .gz files."""
    path = _need(os.path.join(data_dir, "mnist"), "MNIST folder")
    if len([f for f in os.listdir(path) if f.endswith(".gz")]) < 4:
        _need(None, f"the four MNIST .gz files in {path}")
    return path


@pytest.fixture(scope="session")
def symbols_dir(data_dir):
    """<data dir>/symbols, one sub-folder of 45x45 JPEGs per class."""
    return _need(os.path.join(data_dir, "symbols"), "symbols folder")


@pytest.fixture(scope="session")
def mnist_test_digits(mnist_dir):
    """(x, y): the first 200 MNIST test digits, uint8 (200, 28, 28) and labels (200,)."""
    from nncore.data.mnist import read_idx

    x = read_idx(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"))[:200]
    y = read_idx(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"))[:200]
    return x, y


def glyph(kind="seven", size=(200, 200), width=12, ink=0, paper=255):
    """Draw a synthetic handwritten-like character: uint8 (H, W) array, ink on paper."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("L", (w, h), paper)
    d = ImageDraw.Draw(img)
    s = min(w, h)
    ox, oy = (w - s) // 2, (h - s) // 2

    def p(x, y):
        return (ox + x * s, oy + y * s)

    if kind == "seven":
        d.line([p(0.25, 0.2), p(0.75, 0.2), p(0.45, 0.85)], fill=ink, width=width, joint="curve")
    elif kind == "ring":
        d.ellipse([p(0.3, 0.15), p(0.7, 0.85)], outline=ink, width=width)
    elif kind == "plus":
        d.line([p(0.2, 0.5), p(0.8, 0.5)], fill=ink, width=width)
        d.line([p(0.5, 0.2), p(0.5, 0.8)], fill=ink, width=width)
    elif kind == "ell":
        d.line([p(0.3, 0.15), p(0.3, 0.85), p(0.7, 0.85)], fill=ink, width=width, joint="curve")
    else:
        raise ValueError(kind)
    return np.asarray(img)


@pytest.fixture
def draw():
    """The :func:`glyph` drawing helper."""
    return glyph


def corr(a, b):
    """Pearson correlation of two images (any shapes with equal size)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture
def correlation():
    """The :func:`corr` helper."""
    return corr
