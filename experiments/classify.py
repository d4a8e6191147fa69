"""Classify image files (or folders of them) with trained weights.

Usage::

    python experiments/classify.py digit.png photos/ --weights weights/mnist_cnn.npz --top 3
    python experiments/classify.py scans/ --json > predictions.jsonl
    python experiments/classify.py scans/ --device gpu   # needs CuPy and a CUDA GPU, else exit 7

Each picture (any size, dark-on-light or light-on-dark) goes through
nncore.preprocess_image, the same steps as the training data, and the
predictions are made in batches. One line per file on stdout, in input
order; with --json one JSON object per line:
{"file", "label", "symbol", "confidence", "top": [{"label", "symbol", "confidence"}, ...],
"ambiguous", "ambiguous_with": [...]}. Glyph pairs that are one drawing in isolation (x and
×; 1 and /, see nncore.predictions.AMBIGUOUS_PAIRS) are reported as ambiguous, e.g.
"x 81.0% ambiguous with times (×) 19.0%", instead of as a confident guess.
Files that cannot be read are listed on stderr (one line each); the good
ones are still printed, and the exit code is then 8.
"""

import json
import multiprocessing
import os
import sys

import numpy as np

import nncore
from nncore import backend
from nncore.cli import ArgumentParser, compile_kernels, default_weights, positive_int, run_cli
from nncore.errors import MissingInputError, NncoreError, PartialFailure, UsageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (searched recursively)")
    p.add_argument("--weights", default=default_weights("mnist_cnn.npz"), help="weights file")
    p.add_argument("--top", type=positive_int, default=3, help="list the N most likely classes (1: the best only)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="where to run the model")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per prediction batch")
    p.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="processes for preprocessing (used for more than 64 files)")
    return p


def expand(paths):
    """Files to classify, in order: files as given, folders expanded (sorted, recursive, image extensions).

    Returns (files, missing) where missing lists paths that do not exist.
    """
    files, missing = [], []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [os.path.join(dirpath, f) for f in sorted(filenames)
                          if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
            files += found
        elif os.path.exists(p):
            files.append(p)
        else:
            missing.append(p)
    return files, missing


def preprocess(path):
    """(path, image (28, 28) uint8 or None, error message or None); never raises."""
    try:
        img = nncore.preprocess_image(path)
    except NncoreError as exc:
        return path, None, str(exc)
    except Exception as exc:  # one odd file must not stop thousands
        return path, None, f"cannot read {path}: {type(exc).__name__}: {exc}"
    if not img.any():
        return path, None, f"{path}: no ink found (blank image)"
    return path, img, None


def chunks(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _named(entry):
    """'times (×)' for a class whose symbol differs from its name, else the name."""
    return entry["label"] if entry["symbol"] == entry["label"] else f"{entry['label']} ({entry['symbol']})"


def format_result(path, probs, model, top, as_json):
    """One output line: text, or a JSON object with ``ambiguous`` and ``ambiguous_with``."""
    pred = nncore.describe(probs, model.class_names, model.symbols, max(top, 1))
    if as_json:
        return json.dumps({"file": path, **pred}, ensure_ascii=False)
    line = f"{path}: {_named(pred)} {100 * pred['confidence']:.1f}%"
    if pred["ambiguous"]:
        line += " ambiguous with " + ", ".join(f"{_named(o)} {100 * o['confidence']:.1f}%"
                                               for o in pred["ambiguous_with"])
    if top > 1:
        line += "  [" + ", ".join(f"{o['symbol']} {100 * o['confidence']:.1f}%" for o in pred["top"]) + "]"
    return line


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "gpu":
        with parser.flag_errors():  # the library says device=cpu; users see --device cpu
            backend.import_cupy()  # DeviceError (exit 7) with the reason when no usable GPU
    model = nncore.load_model(args.weights).to(args.device)
    if model.input_shape != (1, 28, 28):
        raise UsageError(f"{args.weights} expects inputs of shape {model.input_shape}, not 28x28 images")
    compile_kernels(model)
    files, missing = expand(args.images)
    failures = 0
    for p in missing:
        print(f"error: {p} not found", file=sys.stderr)
        failures += 1
    if not files and not missing:
        raise MissingInputError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {' '.join(args.images)}")
    pool = None
    if args.workers > 1 and len(files) > 64:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(args.workers)
    try:
        for group in chunks(files, args.batch_size):
            results = pool.map(preprocess, group, chunksize=8) if pool else [preprocess(p) for p in group]
            good = [(p, img) for p, img, _ in results if img is not None]
            probs = model.predict_proba(np.stack([img for _, img in good])) if good else []
            it = iter(range(len(good)))
            for path, img, err in results:
                if img is None:
                    failures += 1
                    sys.stdout.flush()
                    print(f"error: {err}", file=sys.stderr)
                else:
                    print(format_result(path, probs[next(it)], model, args.top, args.json))
            sys.stdout.flush()
    finally:
        if pool is not None:
            pool.terminate()
    if failures:
        total = len(files) + len(missing)
        raise PartialFailure(f"{failures} of {total} file(s) could not be classified (listed above)")
    return 0


if __name__ == "__main__":
    run_cli(main)
