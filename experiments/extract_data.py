"""Extract a dataset into one .npz file (train/val/test splits) plus a class-balance chart.

Usage::

    python experiments/extract_data.py mnist [--data-dir DIR] [--out data/mnist.npz]
    python experiments/extract_data.py folders PATH [--out data/<name>.npz] [--val 0.15 --test 0.15 --seed 0]
    python experiments/extract_data.py folders symbols      # = <data root>/symbols

The data root is --data-dir, else $NNCORE_DATA_DIR, else ./data. It is only
read; outputs go to --out (default under ./data/). Every image of a folder
tree goes through nncore.data.preprocess_image, the function that also
prepares users' photos for classification. Unreadable files are listed and
skipped. The chart is written next to the .npz as <stem>_classes.png.
"""

import io
import os
import sys
import time

import numpy as np

from nncore.atomic import atomic_write, check_writable
from nncore.cli import ArgumentParser, fraction, nonnegative_int, positive_int, run_cli
from nncore.data import data_root, load_image_folder, mnist_dataset, save_dataset, stratified_split
from nncore.errors import UsageError


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", metavar="{mnist,folders}")
    sub.required = True
    m = sub.add_parser("mnist", help="the MNIST IDX files in <data root>/mnist")
    m.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: $NNCORE_DATA_DIR or ./data)")
    m.add_argument("--out", default=os.path.join("data", "mnist.npz"), help="output .npz file")
    m.add_argument("--val-size", type=nonnegative_int, default=5000, help="validation examples split off the 60k training set")
    m.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    m.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    f = sub.add_parser("folders", help="an image folder tree PATH/<class>/<images>")
    f.add_argument("path", help="the folder with one sub-folder per class ('symbols' = <data root>/symbols)")
    f.add_argument("--data-dir", default=None, help="data root used for the 'symbols' shorthand")
    f.add_argument("--out", default=None, help="output .npz file (default: data/<folder name>.npz)")
    f.add_argument("--val", type=fraction, default=0.15, help="validation fraction")
    f.add_argument("--test", type=fraction, default=0.15, help="test fraction")
    f.add_argument("--seed", type=int, default=0, help="seed of the split")
    f.add_argument("--workers", type=positive_int, default=2, help="preprocessing processes")
    return p


def check_output(path):
    """Fail early (before minutes of work) if ``path`` cannot be written."""
    check_writable(path, hint="choose another --out")


def chart_path(out):
    stem, _ = os.path.splitext(out)
    return stem + "_classes.png"


def save_chart(path, labels, counts, title):
    """Stacked bar chart of train/val/test counts per class, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels) + 2), 4))
    bottom = np.zeros(len(labels))
    for split, colour in zip(("train", "val", "test"), ("tab:blue", "tab:orange", "tab:green")):
        values = np.asarray(counts[split], dtype=float)
        ax.bar(range(len(labels)), values, bottom=bottom, label=split, color=colour)
        bottom += values
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 12 else 0)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def print_counts(class_names, symbols, counts):
    print(f"{'class':<10} {'symbol':<12} {'train':>7} {'val':>6} {'test':>6} {'total':>7}")
    for k, (name, sym) in enumerate(zip(class_names, symbols)):
        tr, va, te = counts["train"][k], counts["val"][k], counts["test"][k]
        print(f"{name:<10} {sym:<12} {tr:>7} {va:>6} {te:>6} {tr + va + te:>7}")
    tot = [sum(counts[s]) for s in ("train", "val", "test")]
    print(f"{'total':<10} {'':<12} {tot[0]:>7} {tot[1]:>6} {tot[2]:>6} {sum(tot):>7}")


def extract_mnist(args):
    check_output(args.out)
    d = mnist_dataset(args.data_dir, val_size=args.val_size, seed=args.seed, download=not args.no_download)
    d["meta"]["data_dir"] = os.path.abspath(os.path.join(data_root(args.data_dir), "mnist"))
    keys = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    save_dataset(args.out, *(d[k] for k in keys), d["class_names"], d["symbols"], d["meta"])
    return d["class_names"], d["symbols"], d["meta"]["counts"], "MNIST"


def extract_folders(args):
    path = args.path
    if path == "symbols" and not os.path.isdir(path):
        path = os.path.join(data_root(args.data_dir), "symbols")
    if args.val + args.test >= 1.0:
        raise UsageError(f"--val {args.val} plus --test {args.test} leaves no training data; make them sum below 1")
    out = args.out or os.path.join("data", os.path.basename(os.path.normpath(path)) + ".npz")
    args.out = out
    check_output(out)
    folder = load_image_folder(path, workers=args.workers, progress=sys.stderr.isatty())
    fractions = (1.0 - args.val - args.test, args.val, args.test)
    tr, va, te = stratified_split(folder.labels, fractions, args.seed)
    x, y = folder.images, folder.labels
    meta = {
        "source": os.path.abspath(path), "seed": args.seed, "fractions": list(fractions),
        "skipped": [p for p, _ in folder.skipped],
    }
    save_dataset(out, x[tr], y[tr], x[va], y[va], x[te], y[te], folder.class_names, folder.symbols, meta)
    if folder.skipped:
        print(f"skipped {len(folder.skipped)} file(s):")
        for _, reason in folder.skipped:
            print(f"  {reason}")
    counts = {s: np.bincount(y[i], minlength=len(folder.class_names)).tolist() for s, i in (("train", tr), ("val", va), ("test", te))}
    return folder.class_names, folder.symbols, counts, os.path.basename(os.path.normpath(path))


def main(argv):
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    extract = extract_mnist if args.command == "mnist" else extract_folders
    class_names, symbols, counts, title = extract(args)
    print_counts(class_names, symbols, counts)
    chart = chart_path(args.out)
    save_chart(chart, class_names, counts, f"{title}: images per class")
    print(f"wrote {args.out} and {chart} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
