"""A symbols model's held-out accuracy on every test image and on the reviewed labels.

``python tests/symbols_review.py [--weights W]`` (default ``weights/symbols_cnn.npz``) prints the
accuracy on the test split of ``nncore.data.load_symbols``, strict and with x and × counted as one
glyph (as ``evaluate.py --merge x,times`` counts), first over all test images, then leaving out the
images of ``symbols_mislabeled.csv``, whose label is not what they show. The README's figures "on
the reviewed labels" come from here.
"""

import argparse
import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from expressions_compose import mislabeled, pixels_sha1  # noqa: E402


def _evaluate_script():
    """experiments/evaluate.py as a module: its --merge counting is the one these figures use."""
    spec = importlib.util.spec_from_file_location("nncore_evaluate_script",
                                                  os.path.join(HERE, "..", "experiments", "evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def review(weights, data_dir=None):
    """{"all": (n, strict, merged), "reviewed": (n, strict, merged)} of ``weights`` on the test split."""
    import nncore
    from nncore.data import load_symbols
    model = nncore.load_model(weights)
    d = load_symbols(data_dir, log=None)
    names = list(model.class_names)
    if names != list(d["class_names"]):
        raise SystemExit(f"error: {weights} has classes {names}, the symbols set {d['class_names']}")
    script = _evaluate_script()
    one_glyph = script.merge_groups(["x,times"], names)     # x and × as one, as --merge x,times counts
    pred, y = model.predict(d["x_test"]), d["y_test"]
    bad = mislabeled()
    kept = np.array([pixels_sha1(img) not in bad for img in d["x_test"]])
    out = {}
    for name, keep in (("all", np.ones_like(kept)), ("reviewed", kept)):
        p, t = pred[keep], y[keep]
        out[name] = (int(keep.sum()), float(np.mean(p == t)), script.merged_accuracy(t, p, one_glyph, len(names)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=os.path.join(HERE, "..", "weights", "symbols_cnn.npz"))
    p.add_argument("--data-dir", default=None, help="data root (default: $NNCORE_DATA_DIR or ./data)")
    args = p.parse_args(argv)
    for name, (n, strict, merged) in review(args.weights, args.data_dir).items():
        print(f"{name:<9} {n:>5} test images: strict {100 * strict:.2f}%, x and × as one {100 * merged:.2f}%")


if __name__ == "__main__":
    main()
