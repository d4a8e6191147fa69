"""read_expression: a picture of one handwritten line in, the exact value (or an equation's solution) out."""

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.preprocess import preprocess_image
from ..errors import ExpressionError, SyntaxExpressionError, UnreadableSymbolError, UsageError
from ..weights import SHIPPED_DIR
from .decode import LABEL_TOKENS, X_PAIR, decode
from .evaluate import evaluate, format_value
from .segment import Symbol, segment, union_box

#: the weights read_expression uses when no model is given (the repository's shipped symbols model)
SHIPPED_WEIGHTS = os.path.join(SHIPPED_DIR, "symbols_cnn.npz")
#: a symbol whose best reading (x and × counted together) is less probable than this is unreadable
UNREADABLE = 0.25
#: readings less probable than this share of the best one are not tried when the best cannot be evaluated
FALLBACK_RATIO = 0.1

#: the labels of each symbol the decoder may choose from (a 1 the model takes for / ÷ ) still has its 1)
DECODE_TOP = 4
#: how far the classifier's training prior is undone in expressions (see _classify)
PRIOR_POWER = 0.7
#: the class names of operators (``+ - × ÷ / =``); a model without any cannot read an expression
OPERATORS = {label for label, (token, _) in LABEL_TOKENS.items() if token in "+-*/="}

_models = {}


@dataclass
class SymbolReading:
    """One symbol: ``label`` as written (``"×"``, ``"7"``), ``box`` [x0, y0, x1, y1] in the original picture's
    pixels, ``confidence`` (the probability of that reading), ``top`` (the model's top 3, each
    ``{"label": class name, "symbol": as written, "confidence": probability}``, as :func:`nncore.describe`)."""

    label: str
    box: list
    confidence: float
    top: list


@dataclass
class Expression:
    """What :func:`read_expression` read.

    expression: ASCII (digits, ``+ - * / ( ) =``, ``x``, ``y``); written: with × and ÷;
    value: exact, as a string (``"-22"``, ``"1/12"``; for an equation, the solution);
    variable: the variable solved for (None for an evaluation); decimal: the value as a float;
    confidence: the probability of the whole reading (the product over its symbols);
    symbols: :class:`SymbolReading` per symbol, left to right; warnings: notes on doubtful readings;
    file: the path read, when given one.
    """

    expression: str
    written: str
    value: str
    decimal: float
    confidence: float
    symbols: list = field(default_factory=list)
    variable: str = None
    warnings: list = field(default_factory=list)
    file: str = None

    def to_dict(self):
        """A JSON-able dict of every field."""
        return asdict(self)

    def summary(self):
        """One line: ``3+(5×(2-7)) = -22``, ``(9-8)/(7+5) = 1/12 ≈ 0.08333``, ``2x+3=11: x = 4``."""
        approx = f" ≈ {self.decimal:.4g}" if "/" in self.value else ""
        if self.variable:
            return f"{self.written}: {self.variable} = {self.value}{approx}"
        return f"{self.written.rstrip('=')} = {self.value}{approx}"


def _default_model():
    if "symbols" not in _models:
        from ..weights import load_model
        _models["symbols"] = load_model(SHIPPED_WEIGHTS)
    return _models["symbols"]


def _written(label, model):
    k = model.class_names.index(label)
    return model.symbols[k] if model.symbols else label


def _check_classes(names):
    """UsageError unless ``names`` are expression symbols and include at least one operator."""
    unknown = sorted(set(names) - set(LABEL_TOKENS))
    if unknown:
        raise UsageError(f"the model's classes {unknown} are not expression symbols; "
                         "use a symbols model such as weights/symbols_cnn.npz")
    if not set(names) & OPERATORS:
        raise UsageError("the model knows no operator (+ - × ÷ / =), only digits or letters; "
                         "use a symbols model such as weights/symbols_cnn.npz")


def read_expression(image_or_path, model=None):
    """Read and solve one line of handwriting.

    Parameters
    ----------
    image_or_path : str, os.PathLike, PIL.Image or numpy array (H, W[, C])
        A phone photo, a scan or a canvas drawing of one line: digits, ``+ - × ÷ / = ( )``, ``x``, ``y``.
        A trailing ``=`` (or none) asks for the value; ``2x+3=11`` is solved for x.
    model : nncore.Sequential, optional
        A symbols model with the class names of ``weights/symbols_cnn.npz`` (default: that file).

    Returns
    -------
    Expression

    Raises
    ------
    NoInkError, LayoutError (more than one line), BracketError, SyntaxExpressionError (two operators
    in a row...), ZeroDivisionExpression, UnreadableSymbolError (names the symbol's position and box),
    NotSolvableError; UsageError for a model that is not a symbols model (unknown classes, or no
    operator among them); plus the image errors of :func:`nncore.preprocess_image`. All one line, all
    subclasses of :class:`nncore.errors.NncoreError`.
    """
    model = model or _default_model()
    _check_classes(model.class_names)
    seg = segment(image_or_path)
    names = model.class_names
    units = {(i, i + 1): (s, p) for i, (s, p) in enumerate(zip(seg.symbols, _classify(seg, seg.symbols, model)))}
    units.update(_joins(seg, model))
    tops = {span: [(names[k], float(p[k])) for k in np.argsort(-p)[:DECODE_TOP]] for span, (_, p) in units.items()}
    n = len(seg.symbols)
    singles = [tops[i, i + 1] for i in range(n)]
    readings = decode(singles, {i: tops[i, i + 2] for i in range(n) if (i, i + 2) in tops})
    spans = readings[0].spans if readings else [(i, i + 1) for i in range(n)]
    for k, span in enumerate(spans):
        (guess, _), best = tops[span][0], max(tops[span][0][1], _pair(units[span][1], names))
        if best < UNREADABLE:
            raise UnreadableSymbolError(f"symbol {k + 1} of {len(spans)} at box {seg.original_box(units[span][0])} "
                                        f"cannot be read confidently (best guess {_written(guess, model)!r}, "
                                        f"{100 * best:.0f}%); write it more clearly")
    reading, result = _best_reading(readings, singles)
    symbols = []
    for label, span in zip(reading.labels, reading.spans):
        sym, p = units[span]
        conf = _pair(p, names) if label in X_PAIR else p[names.index(label)]
        symbols.append(SymbolReading(LABEL_TOKENS[label][1], seg.original_box(sym), round(float(conf), 6),
                                     [{"label": k, "symbol": _written(k, model), "confidence": round(q, 6)}
                                      for k, q in tops[span][:3]]))
    warnings = [f"symbol {i + 1} read as {s.label!r} with {100 * s.confidence:.0f}% confidence"
                for i, s in enumerate(symbols) if s.confidence < 0.9]
    warnings += [f"symbol {i + 1}: x and × look alike; read as {s.label!r} from its context"
                 for i, s in enumerate(symbols) if reading.labels[i] in X_PAIR]
    value = result.value
    return Expression(
        expression=reading.text, written="".join(reading.written), value=format_value(value),
        decimal=float(value), confidence=round(reading.confidence, 6), symbols=symbols,
        variable=result.variable, warnings=warnings,
        file=os.fspath(image_or_path) if isinstance(image_or_path, (str, os.PathLike)) else None)


def _pair(p, names):
    """The probability of the x/× glyph: both classes together (they are one drawing in isolation)."""
    return sum(p[names.index(k)] for k in X_PAIR if k in names)


def _classify(seg, symbols, model):
    """Class probabilities (n, K) float64 of each symbol's own ink, normalised as the training images were.

    The model learnt its classes' frequencies in the symbols set (4,000 ones, 147 slashes); in an
    expression the symbols are far more even. When the weights record their training class counts n_c
    (``metadata["class_counts"]``, written by train.py), the probabilities are re-weighted by
    n_c ** -PRIOR_POWER and renormalised (PRIOR_POWER = 0.7 was chosen on composed expressions of a
    seed other than the README's; rechecked there with a later reader, 0.4 to 0.8 read within one
    expression of each other).
    """
    crops = np.stack([preprocess_image(seg.crop(s)) for s in symbols])
    probs = model.predict_proba(crops).astype(np.float64)
    counts = (getattr(model, "metadata", None) or {}).get("class_counts")
    if counts is not None and len(counts) == probs.shape[1] and min(counts) > 0:
        probs = probs * np.asarray(counts, dtype=np.float64) ** -PRIOR_POWER
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def _joins(seg, model):
    """{(i, i + 2): (the union of symbols i and i + 1, its class probabilities)} for neighbours that may be
    one symbol written in pieces (a 5 whose bar does not touch its body, an ``=`` whose bars do not line up,
    an x drawn as two arcs): their columns come within 1.5 stroke widths of each other (a gap narrower than
    the space between two symbols) and their rows within the writing's height. The decoder reads each such
    pair either way (see the module decode).
    """
    pairs = [i for i in range(len(seg.symbols) - 1)
             if _near(seg.symbols[i].box, seg.symbols[i + 1].box, 1.5 * seg.stroke, seg.tall)]
    if not pairs:
        return {}
    unions = [Symbol(union_box([seg.symbols[i].box, seg.symbols[i + 1].box]),
                     seg.symbols[i].parts + seg.symbols[i + 1].parts) for i in pairs]
    return {(i, i + 2): (u, p) for i, u, p in zip(pairs, unions, _classify(seg, unions, model))}


def _near(a, b, across, down):
    """Whether boxes a and b come within ``across`` pixels of each other in x and within ``down`` in y."""
    return (min(a[2], b[2]) - max(a[0], b[0]) > -across) and (min(a[3], b[3]) - max(a[1], b[1]) > -down)


def _best_reading(readings, singles):
    """The most probable of ``readings`` (from decode) that evaluates, and its result; ``singles``: each
    symbol's top labels, for the error when no reading is well formed."""
    if not readings:
        # no well-formed reading among the top labels: the parser words what is wrong with the best labels
        text = "".join(LABEL_TOKENS[top[0][0]][0] for top in singles)
        evaluate(text)
        raise SyntaxExpressionError(f"the symbols read as {text!r} do not form an expression")
    first_error = None
    for reading in readings:
        if reading.logp < readings[0].logp + math.log(FALLBACK_RATIO):
            break
        try:
            return reading, evaluate(reading.text)
        except ExpressionError as error:   # e.g. x read as a variable where × makes sense: try the next
            first_error = first_error or error
    raise first_error
