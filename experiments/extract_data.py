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

import os
import sys
import time

from nncore.atomic import check_writable
from nncore.cli import ArgumentParser, fraction, nonnegative_int, positive_int, run_cli
from nncore.data import data_root, extract_image_folder, mnist_dataset, save_dataset_dict
from nncore.errors import UsageError
from nncore.plots import plot_class_counts


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", metavar="{mnist,folders}")
    sub.required = True
    m = sub.add_parser("mnist", help="the MNIST IDX files in <data root>/mnist")
    m.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: $NNCORE_DATA_DIR or ./data)")
    m.add_argument("--out", default=os.path.join("data", "mnist.npz"), help="output .npz file")
    m.add_argument("--val-size", type=nonnegative_int, default=5000,
                   help="validation examples split off the 60k training set")
    m.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the validation split")
    m.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    f = sub.add_parser("folders", help="an image folder tree PATH/<class>/<images>")
    f.add_argument("path", help="the folder with one sub-folder per class ('symbols' = <data root>/symbols)")
    f.add_argument("--data-dir", default=None, help="data root used for the 'symbols' shorthand")
    f.add_argument("--out", default=None, help="output .npz file (default: data/<folder name>.npz)")
    f.add_argument("--val", type=fraction, default=0.15, help="validation fraction")
    f.add_argument("--test", type=fraction, default=0.15, help="test fraction")
    f.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the split")
    f.add_argument("--workers", type=positive_int, default=2, help="preprocessing processes")
    return p


def check_output(path):
    """Fail early (before minutes of work) if ``path`` cannot be written."""
    check_writable(path, hint="choose another --out")


def chart_path(out):
    stem, _ = os.path.splitext(out)
    return stem + "_classes.png"


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
    return d, [], "MNIST"


def extract_folders(args):
    path = args.path
    if path == "symbols" and not os.path.isdir(path):
        path = os.path.join(data_root(args.data_dir), "symbols")
    if args.val + args.test >= 1.0:
        raise UsageError(f"--val {args.val} plus --test {args.test} leaves no training data; make them sum below 1")
    args.out = args.out or os.path.join("data", os.path.basename(os.path.normpath(path)) + ".npz")
    check_output(args.out)
    fractions = (1.0 - args.val - args.test, args.val, args.test)
    d, skipped = extract_image_folder(path, fractions, args.seed, workers=args.workers, progress=sys.stderr.isatty())
    return d, skipped, os.path.basename(os.path.normpath(path))


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with parser.flag_errors():  # library errors name settings (val_size=...); users see flags (--val-size)
        extract = extract_mnist if args.command == "mnist" else extract_folders
        d, skipped, title = extract(args)
    save_dataset_dict(args.out, d)
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for _, reason in skipped:
            print(f"  {reason}")
    counts = d["meta"]["counts"]
    print_counts(d["class_names"], d["symbols"], counts)
    chart = chart_path(args.out)
    plot_class_counts(d["class_names"], counts, chart, f"{title}: images per class")
    print(f"wrote {args.out} and {chart} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
