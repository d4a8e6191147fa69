"""preprocess_image on photo-like re-renderings of MNIST digits (tests/photos.py), with the shipped weights.

The grid: ink/paper pairs (black/white, blue/light grey, red/pink, blue/beige, thick marker/mid grey) x
contrast (100%, 50%, 25%, 15% of the ink-paper difference) x crop size (60x80, 160x160, 500x420), each
image also drawn with random blur, JPEG quality, offset and 15% touching the border. The full table:
``python tests/photo_grid.py --report`` (README). Here a modest sample per cell, with floors set
below the measured values (see the README table), so that regressions fail.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nncore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photo_grid  # noqa: E402
import photos  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PER_CELL = 6


@pytest.fixture(scope="module")
def table(mnist_dir):
    model = nncore.load_model(ROOT / "weights" / "mnist_cnn.npz")
    x, y = photo_grid.mnist_sample(PER_CELL, seed=3)
    return photo_grid.run_grid(model, nncore.preprocess_image, x, y, seed=3)


def test_grid_accuracy_floors(table):
    """The issue's 98% target over the realistic cells, on this sample (99.6%; 99.5% and 98.6% at 40 a cell)."""
    real, allc, _ = photo_grid.summary(table)
    assert real >= 0.98, f"realistic cells {real:.3f}"
    assert allc >= 0.97, f"all cells {allc:.3f}"
    for cell, (acc, _, _) in table.items():
        floor = 0.65 if cell[0] == "marker" else 0.8  # at most two (marker) or one (pen) of six wrong
        assert acc >= floor, (cell, acc)


def test_visible_ink_is_not_blank(table):
    """No blank result with pen ink at >= 25% contrast: small crops, blur and border-touching included."""
    blanks = {c: b for c, (_, b, _) in table.items() if b and c[0] != "marker" and c[2] >= 0.25}
    assert not blanks, blanks
    assert sum(b for _, b, _ in table.values()) <= 0.03 * sum(n for *_, n in table.values())


def test_nothing_visible_is_ever_blank(table):
    """Not even at 15% contrast or with thick marker blobs (at 40 a cell: 1 and 2 of 2,400, all marker at 15%)."""
    assert not {c: b for c, (_, b, _) in table.items() if b}


@pytest.mark.parametrize("paper", list(photos.PAPERS))
def test_blank_paper_has_no_false_ink(paper):
    """Paper texture, shadow gradients (up to 50% across the sheet), noise and JPEG (quality >= 60): blank."""
    for size in photos.SIZES:
        for quality in (95, 60):
            for shadow in (0.0, 0.25, 0.5):
                buf = photos.render_blank(paper, size, quality, seed=1, shadow=shadow)
                assert not nncore.preprocess_image(Image.open(buf)).any(), (paper, size, quality, shadow)


def test_blank_paper_heavy_jpeg_has_no_false_ink():
    """Heavy JPEG (quality 30) on a sheet with a 25% shadow: the steps between 8x8 blocks are not ink.
    Without the block-grid rule the 160x160 white sheet of seed 0 came back with a stroke (README)."""
    for paper in ("white", "beige"):
        for size in photos.SIZES:
            buf = photos.render_blank(paper, size, 30, seed=0, shadow=0.25)
            assert not nncore.preprocess_image(Image.open(buf)).any(), (paper, size)


@pytest.mark.parametrize("quality", [30, 50])
def test_heavy_jpeg_keeps_real_strokes(mnist_dir, quality):
    """The block-grid rule never takes a real stroke for blocking: MNIST digits and straight bars (which
    can lie along the grid) photographed at JPEG quality 30 or 50, strong and faint ink, every size: the
    picture is not blank and the largest candidate region (the glyph's main stroke) stays ink."""
    from scipy import ndimage

    from nncore.data import preprocess as pre
    x, _ = photo_grid.mnist_sample(6, seed=5)
    bar = np.zeros((28, 28), np.uint8)
    bar[12:16, 4:24] = 255
    for i, glyph in enumerate(list(x) + [bar, bar.T.copy()]):
        for ink, paper, contrast in (("black", "white", 1.0), ("blue", "lightgrey", 0.15), ("marker", "midgrey", 0.5)):
            for size in photos.SIZES:
                img = Image.open(photos.render(glyph, ink, paper, contrast, size, quality=quality, seed=i))
                assert nncore.preprocess_image(img).any(), (i, ink, paper, size)
                _, e, _ = pre._signed_contrast(pre._to_gray(img))
                sm = ndimage.uniform_filter(e, 3, mode="nearest")
                labels, _ = ndimage.label(sm > 0.5 * pre.DETECT_SIGMAS * pre._paper_noise(sm), np.ones((3, 3)))
                main = labels == np.bincount(labels.ravel())[1:].argmax() + 1
                assert pre._significant(e)[main].all(), (i, ink, paper, size)


def test_block_grid_share_tells_blocking_from_strokes():
    """8x8 blocks of constant grey stepping along a ramp: all their gradient is on the grid (share 1);
    a diagonal stroke crosses it anywhere (share near 1/8)."""
    from nncore.data.preprocess import _block_grid_share
    yy, xx = np.mgrid[0:64, 0:64]
    blocks = (xx // 8 + yy // 8).astype(np.float64)
    assert _block_grid_share(blocks, np.ones((64, 64), np.int32), 1)[0] == pytest.approx(1.0)
    stroke = np.exp(-((xx - yy * 0.7 - 9.3) ** 2) / 4.0)
    labels = (stroke > 0.2).astype(np.int32)
    assert 0.05 < _block_grid_share(stroke, labels, 1)[0] < 0.25


def test_generator_is_seeded():
    g = np.zeros((28, 28), np.uint8)
    g[5:23, 12:16] = 255
    a = photos.render(g, "blue", "beige", 0.5, (60, 80), blur=0.02, seed=4).getvalue()
    assert a == photos.render(g, "blue", "beige", 0.5, (60, 80), blur=0.02, seed=4).getvalue()
