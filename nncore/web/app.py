"""What the draw page's API answers, without HTTP: a canvas PNG in, a JSON-ready dict out.

:class:`DrawApp` holds the two models (digits; symbols, which expressions use too) and
answers the three questions of the page:

==========================  ===========================================================
:meth:`DrawApp.classify`    the class probabilities of one drawn character
:meth:`DrawApp.explain`     the same, plus the saliency and every layer's feature maps
:meth:`DrawApp.solve`       a drawn expression read and solved (``nncore.read_expression``)
==========================  ===========================================================

One lock guards the models. The server answers each request in its own thread, but
nncore's CPU kernels run on numba's ``workqueue`` threading layer, which must not be
entered by two threads at once, and saliency switches the model's input gradient on
and keeps each layer's backward context: two requests inside one model would mix
their arrays. Decoding and ``preprocess_image`` (NumPy and SciPy only) run outside the
lock; the network itself takes 2-6 ms per request, so requests queue briefly rather
than run side by side. (A copy of each model per thread would still share numba's
workers.)
"""

import dataclasses
import threading

import numpy as np

from .. import backend, explain
from ..errors import NncoreError, UsageError
from ..json_values import finite_or_none
from ..predictions import describe
from .errors import ApiError, from_nncore
from .images import decode_png, map_grid

#: the page's modes and the model each one uses
MODES = {"digit": "digit", "symbol": "symbol", "expression": "symbol"}
#: layers whose output is the same array as their input's at inference, left out of the feature maps
PASS_THROUGH = ("Flatten", "Dropout")


def _jsonable(value):
    """A value from nncore (dataclasses, tuples, NumPy scalars and arrays, NaN) as plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(float(value))
    return value


class DrawApp:
    """The models of the draw page and the answers of its API.

    Parameters
    ----------
    digit_model, symbol_model : Sequential
        Loaded models with 28x28 inputs (``weights/mnist_cnn.npz`` and ``weights/symbols_cnn.npz``).
    digit_weights, symbol_weights : str
        The weights files' names, reported by :meth:`info`.
    reader : callable or None
        ``reader(image, model=...)`` reads an expression (default: ``nncore.read_expression``
        when nncore has it; without one, :meth:`solve` answers 501).
    """

    def __init__(self, digit_model, symbol_model, digit_weights="", symbol_weights="", reader=None):
        self.models = {"digit": digit_model, "symbol": symbol_model}
        self.weights = {"digit": digit_weights, "symbol": symbol_weights}
        for name, model in self.models.items():
            if tuple(model.input_shape) != (1, 28, 28):
                raise UsageError(f"the {name} model expects inputs of shape {model.input_shape}, "
                                  f"not 28x28 images; give weights trained on 28x28 images")
        self.reader = reader
        self.lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------
    def model(self, mode, allowed=("digit", "symbol")):
        """The model of ``mode`` (ApiError 400 for a mode this endpoint does not serve)."""
        if mode == "expression":
            raise ApiError(400, "mode 'expression' is not answered here; send expressions to POST /api/solve")
        if mode not in allowed:
            raise ApiError(400, f"unknown mode {mode!r}; use mode={' or mode='.join(allowed)}")
        return self.models[MODES[mode]]

    def expression_reader(self):
        """The expression reader in use, or None when this nncore has none yet."""
        if self.reader is not None:
            return self.reader
        import nncore
        return getattr(nncore, "read_expression", None)

    def warm_up(self):
        """Run each model once (numba loads its compiled kernels on first use: seconds, not milliseconds)."""
        digit = np.zeros((28, 28), np.uint8)
        digit[6:22, 13:16] = 255
        for model in self.models.values():
            with self.lock:
                model.predict_proba(digit[None])
                explain.activations(model, digit)
                explain.saliency(model, digit)

    def _input(self, body):
        """Request body -> the 28x28 uint8 input as the network sees it (ApiError on bad or blank pictures)."""
        from ..data.preprocess import preprocess_image
        image = decode_png(body)
        try:
            x = preprocess_image(image)
        except NncoreError as exc:
            raise from_nncore(exc) from None
        if not x.any():
            raise ApiError(422, "no ink found: the canvas is empty; draw a character first")
        return x

    def _prediction(self, mode, model, x, probs):
        pred = describe(probs, model.class_names, model.symbols, top=3)
        return {"mode": mode, "weights": self.weights[MODES[mode]], "input": x.tolist(),
                "classes": list(model.class_names), "symbols": list(model.symbols),
                "probabilities": [float(p) for p in probs], **pred}

    # -- the endpoints ---------------------------------------------------------------
    def info(self):
        """The page's set-up: each mode's weights, classes and layers; whether expressions can be solved."""
        modes = {}
        for mode, key in MODES.items():
            m = self.models[key]
            modes[mode] = {"weights": self.weights[key], "classes": list(m.class_names), "symbols": list(m.symbols),
                           "layers": [f"{i}:{type(layer).__name__}" for i, layer in enumerate(m.layers)]}
        return {"modes": modes, "expression_reader": self.expression_reader() is not None}

    def classify(self, mode, body):
        """One drawn character (PNG bytes) -> the prediction.

        Returns a dict: ``mode``, ``weights``, ``input`` (the 28x28 uint8 input after
        ``preprocess_image``, row by row), ``classes``, ``symbols``, ``probabilities`` (K floats,
        exactly ``model.predict_proba(input)``), and :func:`nncore.describe`'s ``label``,
        ``symbol``, ``confidence``, ``top`` (3), ``ambiguous``, ``ambiguous_with``.
        """
        model = self.model(mode)
        x = self._input(body)
        with self.lock:
            probs = model.predict_proba(x[None])[0]
        return self._prediction(mode, model, x, probs)

    def explain(self, mode, body):
        """:meth:`classify` plus what happens inside the network.

        Adds ``saliency``: {``class`` (the predicted class index), ``values`` (28x28, d score/d input
        summed over channels and divided by ``scale``, its largest absolute value, so in [-1, 1];
        positive pixels raise the class's score), ``scale``}; and ``layers``: one dict per layer
        whose output is not a plain copy (Flatten and Dropout are left out), in order: ``name``
        (``"<i>:<Layer>"``), ``shape`` and the grid of :func:`~nncore.web.images.map_grid`.
        The last layer's output (the logits) is left out too: the probabilities show it.
        """
        model = self.model(mode)
        x = self._input(body)
        with self.lock:
            probs = model.predict_proba(x[None])[0]
            acts = explain.activations(model, x)[1:-1]
            grad, k = explain.saliency(model, x)
        sal = backend.to_numpy(grad).sum(axis=0).astype(np.float64)
        scale = float(np.abs(sal).max())
        out = self._prediction(mode, model, x, probs)
        out["saliency"] = {"class": k, "scale": scale,
                           "values": np.round(sal / (scale or 1.0), 4).tolist()}
        out["layers"] = [{"name": name, "shape": list(a.shape), **map_grid(a)}
                         for name, a in acts if name.split(":")[1] not in PASS_THROUGH]
        return out

    def solve(self, body):
        """A drawn expression (PNG bytes) -> what ``nncore.read_expression`` reads and solves.

        Returns its fields as JSON (``expression``, ``written``, ``value``, ``decimal``,
        ``confidence``, ``symbols`` with ``label``, ``box`` [x0, y0, x1, y1] in the PNG's
        pixels, ``confidence``, ``top``; ``warnings``), plus ``mode``, ``weights`` and the
        picture's ``width`` and ``height``. An expression that cannot be read or solved
        (no ink, an unbalanced bracket, division by zero...) is ApiError 422 with the
        reader's one-line message.
        """
        reader = self.expression_reader()
        if reader is None:
            raise ApiError(501, "this nncore cannot read expressions yet (nncore.read_expression is missing); "
                                "use digit or symbol mode")
        image = decode_png(body)
        try:
            with self.lock:
                result = reader(image, model=self.models["symbol"])
        except NncoreError as exc:  # the picture was decoded above: what is drawn cannot be answered
            raise ApiError(422, str(exc)) from None
        out = _jsonable(result)
        if not isinstance(out, dict):
            raise TypeError(f"read_expression returned {type(result).__name__}, not a dataclass")
        out.update(mode="expression", weights=self.weights["symbol"], width=image.width, height=image.height)
        return out
