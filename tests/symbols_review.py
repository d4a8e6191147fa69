"""A symbols model's held-out accuracy on every test image and on the reviewed labels.

``python tests/symbols_review.py [--weights W]`` (default ``weights/symbols_cnn.npz``) prints the
accuracy on the test split of ``nncore.data.load_symbols``, strict and with x and × counted as one
glyph (as ``evaluate.py --merge x,times`` counts), first over all test images, then leaving out the
images of ``symbols_mislabeled.csv``, whose label is not what they show. The README's figures "on
the reviewed labels" come from here.

``--figure PNG`` also draws the test images labelled ``1`` that the model reads as a bracket, and
the brackets it reads as ``1``: each stored file (45x45, as in the data folder) beside the 28x28
picture the network sees (``docs/symbols_1_or_bracket.png``). That most of them are bracket-shaped
in the file itself, before ``preprocess_image``, is why the README counts that confusion as the
data's, not the model's.
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


def held_out_files(data_dir=None):
    """The stored file of each test image of ``load_symbols``, in its order.

    The extraction reads the class folders in :func:`nncore.data.folders.list_image_files` order,
    leaves out the files it could not use (``meta["skipped"]``) and splits the rest with
    :func:`nncore.data.dataset.stratified_split` (``meta``'s seed and fractions); the same steps
    here give the test images' files.
    """
    from nncore.data import load_symbols
    from nncore.data.dataset import stratified_split
    from nncore.data.folders import list_image_files
    from nncore.data.paths import dataset_dir
    d = load_symbols(data_dir, log=None)
    meta = d["meta"]
    paths, labels, _, _ = list_image_files(dataset_dir("symbols", data_dir))
    skipped = set(meta["skipped"])
    kept = [(p, y) for p, y in zip(paths, labels) if p not in skipped]
    test = stratified_split(np.array([y for _, y in kept]), meta["fractions"], meta["seed"])[2]
    files = [kept[i][0] for i in test]
    if [kept[i][1] for i in test] != d["y_test"].tolist():
        raise SystemExit("error: the symbols folder no longer matches its extraction; delete data/symbols.npz")
    return d, files


def bracket_figure(weights, path, data_dir=None, most=64):
    """Draw the test images whose label is 1 and prediction a bracket, or the other way round."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    import nncore
    model = nncore.load_model(weights)
    d, files = held_out_files(data_dir)
    names = list(model.class_names)
    proba = model.predict_proba(d["x_test"])
    pred, y = proba.argmax(axis=1), d["y_test"]
    one, brackets = names.index("1"), [names.index("lparen"), names.index("rparen")]
    wrong = np.flatnonzero(((y == one) & np.isin(pred, brackets)) | (np.isin(y, brackets) & (pred == one)))
    shown = wrong[:most]
    cols = 8                                        # pairs per row: file, input, then a gap
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, 3 * cols, figsize=(cols * 2.1, rows * 1.2), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 0.35] * cols})
    symbol = dict(zip(names, model.symbols))
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(shown):
        left, right = axes[k // cols, 3 * (k % cols)], axes[k // cols, 3 * (k % cols) + 1]
        with Image.open(files[i]) as im:
            left.imshow(np.asarray(im.convert("L")), cmap="gray", vmin=0, vmax=255)
        right.imshow(d["x_test"][i], cmap="gray_r", vmin=0, vmax=255)
        left.set_title(f"label {symbol[names[y[i]]]}", fontsize=7)
        right.set_title(f"read {symbol[names[pred[i]]]} {proba[i, pred[i]]:.2f}", fontsize=7)
    fig.suptitle(f"The {len(wrong)} held-out images labelled 1 and read as a bracket, or the reverse: "
                 "each stored 45x45 file, then the 28x28 input the network sees", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(wrong)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=os.path.join(HERE, "..", "weights", "symbols_cnn.npz"))
    p.add_argument("--data-dir", default=None, help="data root (default: $NNCORE_DATA_DIR or ./data)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw the 1 / bracket confusions, each stored file beside the network's input")
    args = p.parse_args(argv)
    for name, (n, strict, merged) in review(args.weights, args.data_dir).items():
        print(f"{name:<9} {n:>5} test images: strict {100 * strict:.2f}%, x and × as one {100 * merged:.2f}%")
    if args.figure:
        n = bracket_figure(args.weights, args.figure, args.data_dir)
        print(f"{n} images labelled 1 read as a bracket, or the reverse: {args.figure}")


if __name__ == "__main__":
    main()
