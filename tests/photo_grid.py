"""Accuracy of the shipped MNIST weights on the photo grid of tests/photos.py, per cell.

Usage::

    python tests/photo_grid.py --report [--per-cell 40] [--seed 0]
    python tests/photo_grid.py --blank-report [--seeds 12]

Prints one row per cell (ink, paper, contrast, size): accuracy, how many came back blank,
and the totals over the realistic cells and over all cells. ``--blank-report`` counts the
photos of empty paper (every paper and size, seeds 0..N-1) that come back with ink, per JPEG
quality and shadow. It uses whatever
``nncore`` is on PYTHONPATH, so the same command measures another checkout.
"""

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import photos  # noqa: E402


def mnist_sample(n, seed=0):
    """n MNIST test digits (uint8 (n, 28, 28)) and labels (n,), drawn with a seed."""
    from nncore.data import read_idx
    root = os.path.join(os.environ["NNCORE_DATA_DIR"], "mnist")
    x = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return x[idx], y[idx]


def run_grid(model, preprocess, glyphs, labels, seed=0):
    """Per cell: dict cell -> (accuracy, number blank, n). Same glyphs in every cell."""
    table = {}
    for cell in photos.cells():
        imgs = np.stack([preprocess(Image.open(p)) for p in photos.cell_photos(glyphs, cell, seed)])
        blank = ~imgs.reshape(len(imgs), -1).any(1)
        pred = model.predict(imgs)
        pred[blank] = -1
        table[cell] = (float((pred == labels).mean()), int(blank.sum()), len(labels))
    return table


def summary(table):
    """(accuracy over realistic cells, accuracy over all cells, total blank)."""
    real = [v for c, v in table.items() if photos.realistic(c)]
    acc = lambda vs: sum(a * n for a, _, n in vs) / sum(n for *_, n in vs)  # noqa: E731
    return acc(real), acc(list(table.values())), sum(b for _, b, _ in table.values())


def blank_report(seeds=12):
    """Print, per (JPEG quality, shadow), how many photos of empty paper come back with ink."""
    import nncore
    for quality, shadow in ((95, 0.5), (60, 0.25), (60, 0.5), (30, 0.25), (30, 0.5)):
        bad = total = 0
        for seed in range(seeds):
            for paper in photos.PAPERS:
                for size in photos.SIZES:
                    buf = photos.render_blank(paper, size, quality, seed=seed, shadow=shadow)
                    bad += bool(nncore.preprocess_image(Image.open(buf)).any())
                    total += 1
        print(f"JPEG quality {quality}, shadow {int(shadow * 100)}%: false ink on {bad} of {total} blank sheets")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="print the full table")
    ap.add_argument("--per-cell", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blank-report", action="store_true", help="false ink on photos of empty paper")
    ap.add_argument("--seeds", type=int, default=12, help="seeds of --blank-report")
    args = ap.parse_args(argv)
    if args.blank_report:
        return blank_report(args.seeds)
    if not args.report:
        ap.print_help()
        return
    import nncore
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = nncore.load_model(os.path.join(root, "weights", "mnist_cnn.npz"))
    x, y = mnist_sample(args.per_cell, args.seed)
    t = time.perf_counter()
    table = run_grid(model, nncore.preprocess_image, x, y, args.seed)
    dt = time.perf_counter() - t
    print("| ink | paper | contrast | size | accuracy | blank |")
    print("|---|---|---|---|---|---|")
    for (ink, paper, c, s), (a, b, n) in table.items():
        print(f"| {ink} | {paper} | {int(c * 100)}% | {s[0]}x{s[1]} | {100 * a:.1f}% | {b}/{n} |")
    real, allc, blank = summary(table)
    print(f"\nrealistic cells (contrast >= 25%): {100 * real:.2f}%; all cells: {100 * allc:.2f}%; "
          f"blank: {blank} of {sum(n for *_, n in table.values())}; {dt:.0f} s")


if __name__ == "__main__":
    main()
