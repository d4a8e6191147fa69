"""Evaluate trained weights on a test set: accuracy, per-class table, confusion matrix, image grids.

Usage::

    python experiments/evaluate.py --weights weights/mnist_cnn.npz
    python experiments/evaluate.py --weights weights/symbols_cnn.npz --dataset symbols --json
    python experiments/evaluate.py --weights weights/mnist_cnn.npz --device gpu   # needs CuPy, else exit 7

Writes to --out-dir (default runs/eval_<weights name>/): confusion.png,
misclassified.png (mistakes with true/predicted labels), samples.png (random
test images with predicted and true labels) and summary.json. --json prints
the summary as JSON on stdout instead of the table.
"""

import json
import os
import time

import numpy as np

import nncore
from nncore import backend
from nncore.atomic import atomic_write, check_writable
from nncore.cli import ArgumentParser, compile_kernels, default_weights, nonnegative_int, positive_int, run_cli
from nncore.data import load_data
from nncore.errors import UsageError
from nncore.json_values import finite_or_none
from nncore.sequential import PREDICT_BATCH
from nncore.training import evaluate


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=default_weights("mnist_cnn.npz"), help="weights file")
    p.add_argument("--dataset", default=None,
                   help="mnist, symbols or PATH.npz (default: the one the weights were trained on)")
    p.add_argument("--data-dir", default=None, help="data root (default: $NNCORE_DATA_DIR or ./data)")
    p.add_argument("--out-dir", default=None, help="output folder (default runs/eval_<weights name>)")
    p.add_argument("--batch-size", type=positive_int, default=PREDICT_BATCH)
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="evaluate only the first N test images")
    p.add_argument("--grid", type=positive_int, default=40, help="images per grid")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for picking the random sample grid")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="where to run the model")
    p.add_argument("--merge", action="append", default=[], metavar="A,B[,...]",
                   help="also report the accuracy with these classes counted as one (repeatable), "
                        "e.g. --merge x,times for two symbols drawn alike")
    return p


def merge_groups(specs, class_names):
    """--merge values -> list of class-index lists; unknown names are a UsageError."""
    groups = []
    for spec in specs:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in class_names]
        if len(names) < 2 or unknown:
            raise UsageError(f"--merge {spec!r}: give two or more class names from {list(class_names)}, "
                             f"separated by commas" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        groups.append([list(class_names).index(n) for n in names])
    return groups


def merged_accuracy(y, pred, groups, k):
    """Accuracy when each group of class indices counts as one class."""
    to = np.arange(k)
    for g in groups:
        to[g] = g[0]
    return float((to[y] == to[pred]).mean())


def top_confusions(cm, names, n=5):
    """The n largest off-diagonal cells of the confusion matrix as (true, predicted, count)."""
    off = np.array(cm, dtype=np.int64)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    return [(names[i], names[j], int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape)) if off[i, j]]


def per_class(cm):
    """Per-class support, precision, recall (= per-class accuracy) and F1 from a confusion matrix (K, K)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
    return support.astype(int), precision, recall, f1


def check_classes(model, d, weights, dataset):
    if model.input_shape != (1, 28, 28):
        raise UsageError(f"{weights} expects inputs of shape {model.input_shape}, not 28x28 images")
    if list(model.class_names) != list(d["class_names"]):
        raise UsageError(f"{weights} was trained on classes {model.class_names} but dataset {dataset} has "
                         f"{d['class_names']}; pass the matching --dataset")


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    with parser.flag_errors():  # library errors name settings (dataset=...); users see flags (--dataset)
        return evaluate_weights(args)


def evaluate_weights(args):
    start = time.perf_counter()
    if args.device == "gpu":
        backend.import_cupy()  # DeviceError (exit 7) with the reason when no usable GPU
    model, header, _ = nncore.load_model(args.weights, return_extra=True)
    model.to(args.device)
    compile_kernels(model)
    groups = merge_groups(args.merge, model.class_names)   # a bad --merge fails before the dataset loads
    dataset = args.dataset or header.get("metadata", {}).get("dataset") or "mnist"
    name = os.path.splitext(os.path.basename(args.weights))[0]
    out_dir = args.out_dir or os.path.join("runs", f"eval_{name}")
    check_writable(os.path.join(out_dir, "summary.json"))
    d = load_data(dataset, args.data_dir, log=None)
    check_classes(model, d, args.weights, dataset)
    x, y = d["x_test"], np.asarray(d["y_test"]).astype(np.int64)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    if not len(y):
        raise UsageError(f"dataset {dataset} has no test images")
    ev = evaluate(model, x, y, args.batch_size)
    pred, conf = ev["pred"], ev["proba"].max(axis=1)
    k = model.num_classes
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    support, precision, recall, f1 = per_class(cm)
    labels = list(model.symbols)

    from nncore.plots import plot_confusion, plot_image_grid
    files = {"confusion": os.path.join(out_dir, "confusion.png"),
             "misclassified": os.path.join(out_dir, "misclassified.png"),
             "samples": os.path.join(out_dir, "samples.png"),
             "summary": os.path.join(out_dir, "summary.json")}
    plot_confusion(cm, labels, files["confusion"],
                   title=f"{name} on {dataset}: {100 * ev['accuracy']:.2f}% of {len(y)}")
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:args.grid]  # most confident mistakes first
    plot_image_grid(x[wrong], [f"{labels[y[i]]} -> {labels[pred[i]]} ({100 * conf[i]:.0f}%)" for i in wrong],
                    files["misclassified"],
                    title=f"misclassified: true -> predicted ({len(np.flatnonzero(pred != y))} in all)")
    pick = np.sort(np.random.default_rng(args.seed).choice(len(y), size=min(args.grid, len(y)), replace=False))
    plot_image_grid(x[pick], [f"pred {labels[pred[i]]} / true {labels[y[i]]}" for i in pick], files["samples"],
                    colors=["black" if pred[i] == y[i] else "red" for i in pick], title="random test images")

    summary = {
        "weights": args.weights, "dataset": dataset, "images": int(len(y)), "accuracy": round(ev["accuracy"], 6),
        "loss": round(ev["loss"], 6), "errors": int((pred != y).sum()),
        "per_class": [{"class": c, "symbol": s, "support": int(n), "precision": finite_or_none(p, 6),
                       "recall": finite_or_none(r, 6), "accuracy": finite_or_none(r, 6), "f1": finite_or_none(f, 6)}
                      for c, s, n, p, r, f in zip(model.class_names, model.symbols, support, precision, recall, f1)],
        "merged": [{"classes": [model.class_names[i] for i in g],
                    "accuracy": round(merged_accuracy(y, pred, [g], k), 6)}
                   for g in groups],
        "top_confusions": [{"true": a, "predicted": b, "count": n}
                           for a, b, n in top_confusions(cm, model.class_names)],
        "confusion_matrix": cm.tolist(), "class_names": list(model.class_names), "files": files,
        "seconds": round(time.perf_counter() - start, 2),
    }
    with atomic_write(files["summary"], "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    print(f"{name} on {dataset}: accuracy {100 * ev['accuracy']:.2f}% ({summary['errors']} errors in {len(y)} images)")
    print(f"{'class':<8} {'symbol':<7} {'n':>6} {'precision':>9} {'recall':>7} {'f1':>6}")
    for row in summary["per_class"]:
        fmt = lambda v: "   -  " if v is None else f"{100 * v:6.2f}"  # noqa: E731
        print(f"{row['class']:<8} {row['symbol']:<7} {row['support']:>6} {fmt(row['precision']):>9} "
              f"{fmt(row['recall']):>7} {fmt(row['f1']):>6}")
    print("(recall = per-class accuracy: the share of that class's images classified correctly)")
    if summary["top_confusions"]:
        print("most frequent mistakes (true -> predicted): " +
              ", ".join(f"{c['true']} -> {c['predicted']} {c['count']}" for c in summary["top_confusions"]))
    for m in summary["merged"]:
        print(f"accuracy with {' + '.join(m['classes'])} counted as one class: {100 * m['accuracy']:.2f}%")
    print(f"wrote {', '.join(files.values())}")
    return 0


if __name__ == "__main__":
    run_cli(main)
