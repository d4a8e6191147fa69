"""Seeded pictures of whole handwritten expressions, composed from held-out symbol images.

The symbols come from the TEST split of ``nncore.data.load_symbols`` (never
the images ``weights/symbols_cnn.npz`` was trained on). Each expression is a
random well-formed one (3-15 symbols: numbers, + - × ÷ / ( ) =, and linear
equations in x), its ground truth computed by nncore's evaluator from the
ASCII text (whose agreement with a Fraction reference is tested apart). The
symbols are laid out with natural spacing, size and baseline jitter and a
slight rotation; the photo variant re-renders the line as a phone photo
(coloured ink on coloured paper, a shadow, texture, noise, blur, JPEG) with
ruled lines.

``python tests/expressions_compose.py --report [--count N] [--weights W] [--seed S] [--all-images]``
prints the table of the README (clean and photo-like accuracy, the confident answers,
time per expression); the clean expressions are drawn with seed S, the photo-like
ones with S + 1 (default 0). The held-out images listed in symbols_mislabeled.csv
(labels that are not what the image shows) are never drawn, unless --all-images.
"""

import csv
import hashlib
import io
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from photos import INKS, PAPERS, shadow  # noqa: E402

#: ASCII token -> the classes whose images can stand for it
TOKEN_CLASSES = {**{str(d): [str(d)] for d in range(10)}, "+": ["plus"], "-": ["minus"], "*": ["times"],
                 "/": ["div", "slash"], "(": ["lparen"], ")": ["rparen"], "=": ["eq"], "x": ["x"], "y": ["y"]}


#: held-out images whose label is not what they show (reviewed by eye; see the file's header)
MISLABELED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "symbols_mislabeled.csv")


def pixels_sha1(img):
    """The key of symbols_mislabeled.csv: the first 16 hex digits of the SHA-1 of a uint8 (28, 28) image."""
    return hashlib.sha1(np.ascontiguousarray(img, np.uint8).tobytes()).hexdigest()[:16]


def mislabeled():
    """{pixels_sha1: (label, what the image shows)} of the reviewed mislabeled held-out images."""
    with open(MISLABELED, encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["pixels_sha1"]: (r["label"], r["shows"]) for r in rows}


def symbol_pool(data_dir=None, reviewed=True):
    """Held-out symbol images by class: {class name: uint8 (n, 28, 28) white on black} (the test split).

    reviewed: leave out the images of symbols_mislabeled.csv (a ``minus`` that shows a slash would
    make a composed expression's ground truth wrong); False keeps every test image.
    """
    from nncore.data import load_symbols
    d = load_symbols(data_dir, log=None)
    keep = np.ones(len(d["y_test"]), bool)
    if reviewed:
        bad = mislabeled()
        keep = np.array([pixels_sha1(img) not in bad for img in d["x_test"]])
    names = d["class_names"]
    return {name: d["x_test"][(d["y_test"] == k) & keep] for k, name in enumerate(names)}


def _number(rng):
    return str(int(rng.integers(0, 10))) if rng.random() < 0.75 else str(int(rng.integers(10, 100)))


def _expr(rng, depth):
    """A random arithmetic expression as a token list (numbers are digit strings)."""
    if depth <= 0 or rng.random() < 0.35:
        return [_number(rng)]
    op = rng.choice(["+", "-", "*", "/"])
    left, right = _expr(rng, depth - 1), _expr(rng, depth - 1)
    if rng.random() < 0.3:
        right = ["("] + right + [")"]
    return left + [op] + right


def random_expression(rng, lo=3, hi=15):
    """(tokens, ascii) of a random well-formed expression of lo..hi symbols that evaluates."""
    from nncore.errors import ExpressionError
    from nncore.expressions import evaluate
    while True:
        if rng.random() < 0.2:     # a linear equation: a x + b = c
            a, b = int(rng.integers(2, 10)), int(rng.integers(1, 20))
            c = a * int(rng.integers(0, 10)) + b
            tokens = [str(a), "x", rng.choice(["+", "-"]), str(b), "=", str(c)]
        else:
            tokens = _expr(rng, int(rng.integers(1, 4)))
            if rng.random() < 0.5:
                tokens = tokens + ["="]
        text = "".join(tokens)
        if not lo <= len(text) <= hi:
            continue
        try:
            evaluate(text)
        except ExpressionError:
            continue
        return tokens, text


def _glyph(pool, token, rng):
    cls = TOKEN_CLASSES[token][int(rng.integers(len(TOKEN_CLASSES[token])))]
    imgs = pool[cls]
    g = imgs[int(rng.integers(len(imgs)))].astype(np.float64) / 255
    rows, cols = np.nonzero(g > 0.1)
    return g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def compose_mask(text, pool, rng, height=64):
    """White-on-black float mask (H, W) of ``text`` written with held-out symbols, jittered."""
    glyphs = []
    for ch in text:
        g = _glyph(pool, ch, rng)
        s = height / 20 * rng.uniform(0.85, 1.1)
        gh, gw = max(2, round(g.shape[0] * s)), max(2, round(g.shape[1] * s))
        big = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((gw, gh), Image.BICUBIC), np.float64)
        glyphs.append(big / 255)
    gaps = [int(height * rng.uniform(0.2, 0.5)) for _ in glyphs]
    width = sum(g.shape[1] for g in glyphs) + sum(gaps) + 2 * height
    canvas = np.zeros((3 * height, width))
    x = height
    for g, gap in zip(glyphs, gaps):
        mid = 1.5 * height + rng.uniform(-0.06, 0.06) * height
        top = int(np.clip(mid - g.shape[0] / 2, 0, canvas.shape[0] - g.shape[0]))
        region = canvas[top:top + g.shape[0], x:x + g.shape[1]]
        np.maximum(region, g, out=region)
        x += g.shape[1] + gap
    img = Image.fromarray((canvas * 255).astype(np.uint8)).rotate(rng.uniform(-3, 3), Image.BILINEAR,
                                                                  fillcolor=0)
    return np.asarray(img, np.float64) / 255


def clean_picture(mask):
    """Black ink on white paper, PNG-like (uint8 (H, W))."""
    return (255 - mask * 255).astype(np.uint8)


def photo_picture(mask, rng):
    """The line as a phone photo: coloured ink and paper, shadow, texture, noise, ruled lines, blur, JPEG."""
    h, w = mask.shape
    ink, paper = [("black", "white"), ("blue", "white"), ("blue", "beige"), ("red", "pink"),
                  ("black", "lightgrey")][int(rng.integers(5))]
    contrast = rng.uniform(0.5, 1.0)
    blur = rng.uniform(0, 1.2)
    if blur > 0.3:
        mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(blur)), np.float64) / 255
    p = np.array(PAPERS[paper], np.float64) / 255
    k = np.array(INKS[ink], np.float64) / 255
    seen = p + contrast * (k - p)
    shade = shadow(h, w, rng.uniform(0, 2 * np.pi), 0.2)
    m = mask[..., None]
    rgb = p * (1 - m) + seen * m
    img = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:      # ruled paper: thin pale lines under the writing
        d = ImageDraw.Draw(img)
        step = int(h / 3 * rng.uniform(0.9, 1.2))
        for y in range(int(rng.integers(5, step)), h, step):
            d.line([(0, y), (w, y)], fill=(150, 175, 215), width=1 + int(rng.integers(2)))
    rgb = np.asarray(img, np.float64) / 255 * shade[..., None] + rng.normal(0, 0.015, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8)).save(buf, format="JPEG",
                                                                      quality=int(rng.integers(60, 92)))
    buf.seek(0)
    return Image.open(buf)


def cases(pool, count, photo, seed):
    """[(picture, ascii truth, value string)] for ``count`` random expressions."""
    from nncore.expressions import evaluate, format_value
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        tokens, text = random_expression(rng)
        mask = compose_mask(text, pool, rng)
        picture = photo_picture(mask, rng) if photo else clean_picture(mask)
        out.append((picture, text, format_value(evaluate(text).value)))
    return out


def score(model, items):
    """Per item (right, confident, seconds): right = same ASCII and value; confident = confidence >= 0.9."""
    import nncore
    from nncore.errors import NncoreError
    rows = []
    for picture, text, value in items:
        start = time.perf_counter()
        try:
            r = nncore.read_expression(picture, model)
            right, conf = r.expression == text and r.value == value, r.confidence >= 0.9
        except NncoreError:
            right, conf = False, False
        rows.append((right, conf, time.perf_counter() - start))
    return rows


def report(count=200, weights=None, seed=0, reviewed=True):
    import nncore
    model = nncore.load_model(weights or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                      "weights", "symbols_cnn.npz"))
    pool = symbol_pool(reviewed=reviewed)
    print("| pictures | expressions | exactly right | confident (>= 0.9) | right among confident | s / expression |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for photo in (False, True):
        rows = score(model, cases(pool, count, photo, seed=seed + 1 if photo else seed))
        right = sum(r for r, _, _ in rows)
        conf = [r for r, c, _ in rows if c]
        times = sorted(t for _, _, t in rows)
        print(f"| {'photo-like' if photo else 'clean'} | {len(rows)} | {100 * right / len(rows):.1f}% "
              f"| {len(conf)} | {100 * sum(conf) / max(len(conf), 1):.1f}% "
              f"| {np.mean(times):.2f} (p95 {times[int(0.95 * (len(times) - 1))]:.2f}) |")


if __name__ == "__main__":
    if "--report" in sys.argv:
        n = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 200
        report(n, sys.argv[sys.argv.index("--weights") + 1] if "--weights" in sys.argv else None,
               int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0,
               reviewed="--all-images" not in sys.argv)
    else:
        print(__doc__)
