"""Predictions that say when two classes cannot be told apart.

Some glyphs are the same drawing in isolation: in the math-symbols data the
letter ``x`` and the multiplication cross ``times`` (×) are drawn the same
way, and ``slash`` (/) is drawn like a slanted ``1``. A classifier then
picks one of the pair with a confidence that means little. :func:`classify`
and :func:`describe` return the label, its confidence and the top-k classes
as usual, plus ``ambiguous_with``: the partners of the predicted class, from
the table :data:`AMBIGUOUS_PAIRS`, that the image may just as well be.

Rule (for a prediction with top class a, probability p_a, and a listed partner b
with probability p_b):

* b is listed in ``ambiguous_with`` when p_b >= ``MARGIN`` * p_a (the runner-up
  is close), or, for pairs marked ``identical``, when p_a + p_b >= ``PAIR_MASS``
  (the pair together holds the mass: the model is sure it is one of the two,
  and in isolation the two are the same glyph, so the split between them is
  not evidence).

Usage::

    model = nncore.load_model("weights/symbols_cnn.npz")
    [pred] = nncore.classify(model, [nncore.preprocess_image("x.png")])
    pred["label"], pred["confidence"], pred["ambiguous_with"]
    # 'x', 0.81, [{'label': 'times', 'symbol': '×', 'confidence': 0.19}]
"""

from collections import namedtuple

import numpy as np

from .errors import UsageError

AmbiguousPair = namedtuple("AmbiguousPair", "a b identical reason")

#: The documented ambiguous pairs (class names as in the weights file).
AMBIGUOUS_PAIRS = (
    AmbiguousPair("x", "times", True,
                  "x and the multiplication cross are drawn the same way in isolation: one glyph in the data"),
    AmbiguousPair("1", "slash", False,
                  "a slash is drawn like a slanted 1 (the shipped symbols model recognises 68% of slashes, "
                  "most others as 1)"),
)
MARGIN = 0.1  # a listed partner within this ratio of the top probability is reported
PAIR_MASS = 0.9  # identical pairs: reported when the two together hold this much probability


def partners(label, pairs=AMBIGUOUS_PAIRS):
    """Labels listed as ambiguous with ``label`` (list of str, in table order)."""
    return [p.b if p.a == label else p.a for p in pairs if label in (p.a, p.b)]


def _identical(a, b, pairs):
    return any(p.identical and {p.a, p.b} == {a, b} for p in pairs)


def describe(probs, class_names, symbols=None, top=3, pairs=AMBIGUOUS_PAIRS):
    """One prediction as a dict, from class probabilities.

    Parameters
    ----------
    probs : array (K,)
        Class probabilities of one image.
    class_names : list of str, length K
    symbols : list of str, length K, optional
        Printable symbols (e.g. "×" for "times"); defaults to the class names.
    top : int
        How many classes to list in ``top``.
    pairs : sequence of AmbiguousPair
        The ambiguity table (default :data:`AMBIGUOUS_PAIRS`).

    Returns
    -------
    dict
        ``label``, ``symbol``, ``confidence`` (float), ``top`` (list of dicts with
        ``label``, ``symbol``, ``confidence``, most likely first), ``ambiguous``
        (bool) and ``ambiguous_with`` (list of such dicts, possibly empty).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or probs.size != len(class_names):
        raise UsageError(f"probs must have shape ({len(class_names)},), got {probs.shape}")
    if int(top) < 1:
        raise UsageError(f"top must be >= 1, got {top}")
    symbols = list(class_names) if symbols is None else list(symbols)
    order = np.argsort(-probs, kind="stable")

    def entry(k):
        return {"label": class_names[k], "symbol": symbols[k], "confidence": round(float(probs[k]), 6)}

    best = int(order[0])
    a, pa = class_names[best], float(probs[best])
    ambiguous = []
    for b in partners(a, pairs):
        if b not in class_names:
            continue
        k = class_names.index(b)
        pb = float(probs[k])
        if pb >= MARGIN * pa or (_identical(a, b, pairs) and pa + pb >= PAIR_MASS):
            ambiguous.append(entry(k))
    out = entry(best)
    out["top"] = [entry(int(k)) for k in order[: int(top)]]
    out["ambiguous"] = bool(ambiguous)
    out["ambiguous_with"] = ambiguous
    return out


def classify(model, images, top=3, pairs=AMBIGUOUS_PAIRS):
    """Classify images and report ambiguous glyph pairs.

    Parameters
    ----------
    model : nncore.Sequential
        A loaded model (``class_names`` and ``symbols`` are used).
    images : array (N, 28, 28) or list of (28, 28) arrays
        Preprocessed images (see :func:`nncore.preprocess_image`).
    top, pairs
        As in :func:`describe`.

    Returns
    -------
    list of dict
        One :func:`describe` dict per image.
    """
    images = np.stack([np.asarray(i) for i in images]) if isinstance(images, (list, tuple)) else images
    probs = model.predict_proba(images)
    return [describe(p, model.class_names, model.symbols, top, pairs) for p in probs]
