"""Read and solve handwritten expressions in photos, scans or drawings: one line of writing a picture.

Usage::

    python experiments/solve.py photo.jpg drawing.png
    photo.jpg: 3+(5×(2-7)) = -22
    drawing.png: (9-8)/(7+5) = 1/12 ≈ 0.08333
    python experiments/solve.py equation.png --json          # one JSON object per file
    python experiments/solve.py photo.jpg --annotate runs/solve   # boxes and labels drawn, one PNG a file

Symbols: digits, + - × ÷ / = ( ), and the variables x and y. A trailing "=" (or none)
asks for the value; an equation linear in one variable (2x+3=11) is solved (x = 4).
The JSON fields: file, expression (ASCII), written (with × and ÷), value (exact: "-22",
"1/12"), variable (for an equation), decimal, confidence, symbols (label, box [x0, y0, x1, y1]
in the picture's pixels, confidence, top), warnings.

Errors, one line each on stderr: 9 no writing found, 10 more than one line, 11 an unbalanced
bracket, 12 two operators in a row or another malformed expression, 13 division by zero,
14 a symbol that cannot be read confidently (its position and box are named), 15 no single
value (a variable without an equation, a non-linear equation); 3 and 4 for a missing or
unreadable file; 2 for weights that are not a symbols model (unknown classes, or no operator).
With several files, each failure is listed and the exit code is 8.
"""

import json
import os
import sys

import nncore
from nncore.cli import ArgumentParser, compile_kernels, default_weights, run_cli
from nncore.errors import NncoreError, PartialFailure


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="pictures of one line of handwriting each")
    p.add_argument("--weights", default=default_weights("symbols_cnn.npz"), help="symbols weights file")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--annotate", metavar="DIR", default=None,
                   help="write DIR/<name>.png with each symbol's box and label, coloured by confidence")
    return p


def annotate(path, result, out_dir):
    """A PNG of the picture with each symbol's box and label (green >= 90%, orange >= 50%, red below)."""
    import matplotlib.patches as patches

    from nncore.data.preprocess import load_image, stored_height
    from nncore.plots import _plt, save_figure
    img = load_image(path, work_size=4096).convert("RGB")
    scale = img.size[1] / (stored_height(path) or img.size[1])  # boxes are in the full picture's pixels
    w, h = img.size
    fig, ax = _plt().subplots(figsize=(min(14, 2 + w / 100), min(6, 1.2 + h / 100)), layout="constrained")
    ax.imshow(img)
    for s in result.symbols:
        x0, y0, x1, y1 = (v * scale for v in s.box)
        colour = "#1a9850" if s.confidence >= 0.9 else "#fdae61" if s.confidence >= 0.5 else "#d73027"
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
        ax.text(x0, y0 - 4, f"{s.label} {100 * s.confidence:.0f}%", color=colour, fontsize=10, va="bottom",
                fontweight="bold")
    ax.set_title(f"{result.summary()}   (confidence {100 * result.confidence:.0f}%)", fontsize=13)
    ax.axis("off")
    name = os.path.splitext(os.path.basename(path))[0] + ".png"
    save_figure(fig, os.path.join(out_dir, name))
    return os.path.join(out_dir, name)


def main(argv):
    args = build_parser().parse_args(argv)
    model = nncore.load_model(args.weights)
    compile_kernels(model)
    failures = 0
    for path in args.images:
        try:
            result = nncore.read_expression(path, model)
        except NncoreError as error:
            if len(args.images) == 1:
                raise type(error)(f"{path}: {error}") from None
            failures += 1
            sys.stdout.flush()
            print(f"error: {path}: {error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            print(f"{path}: {result.summary()}")
        if args.annotate:
            annotate(path, result, args.annotate)
        sys.stdout.flush()
    if failures:
        raise PartialFailure(f"{failures} of {len(args.images)} picture(s) could not be solved (listed above)")
    return 0


if __name__ == "__main__":
    run_cli(main)
