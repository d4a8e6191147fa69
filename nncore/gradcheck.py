"""Gradient checking by central differences: does ``backward`` match the calculus?

The idea fits on a slide. For a scalar function f and a small h::

    df/dx_i  ~=  (f(x + h e_i) - f(x - h e_i)) / (2h)        error O(h^2)

To check a layer ``y = layer(x)`` we do not need its whole Jacobian: we pick
a random upstream gradient ``g`` (the same shape as y) and check the
vector-Jacobian product that ``backward(g)`` claims to compute, which is the
gradient of the scalar ``f(x) = sum(g * layer(x))``. One scalar function per
check, tested against every input element and every parameter.

We compare with the relative error::

    rel_error(a, n) = ||a - n|| / max(||a|| + ||n||, tiny)

In float64, with h = 1e-6, a correct layer gives errors around 1e-9 to 1e-11;
a wrong one gives errors near 1. Checks need float64 (float32 rounding would
swamp the O(h^2) term) and smooth points: an input at a ReLU kink or a tie in
a max-pool window makes the function non-differentiable there, and the check
fails for a reason that has nothing to do with the code. The helpers below
make such points: :func:`away_from_zero` for (leaky) ReLUs,
:func:`distinct_values` for pooling, :func:`smoothness_margin` to measure how
far a whole network's check point is from the nearest kink or tie, and
:func:`small_cnn`, a network of the common layer types. The tests and
``experiments/gradcheck.py`` both use them.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .layers import BatchNorm, Conv2D, Dense, Flatten, LeakyReLU, MaxPool2D, ReLU
from .losses import SoftmaxCrossEntropy
from .sequential import Sequential

#: Largest relative error accepted for a single layer in float64.
LAYER_TOLERANCE = 1e-6
#: Largest relative error accepted for a whole network in float64.
NETWORK_TOLERANCE = 1e-5


@dataclass
class CheckResult:
    """One row of a gradient-check table."""

    layer: str
    array: str
    shape: tuple
    rel_error: float
    tolerance: float

    @property
    def passed(self):
        return self.rel_error < self.tolerance


# -- smooth check points ---------------------------------------------------------------------------------

def away_from_zero(shape, seed, margin=0.1):
    """Random values with ``|x| >= margin``: no input sits near a ReLU kink.

    ``seed``: an int, or a NumPy Generator to draw from (values then depend on
    what was drawn before).
    """
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * (margin + rng.random(shape))


def distinct_values(shape, seed, gap=0.01):
    """A shuffled ramp: all values differ by at least ``gap``, so pooling has no ties.

    A perturbation of size h < gap/2 can then never change which input of a
    window is the maximum. ``seed``: an int or a NumPy Generator.
    """
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))) * gap - 1.0).reshape(shape)


def _pool_gaps(x, layer):
    """Gap between the two largest values of every max-pool window (windows whose maximum is an exact
    0 coming out of a ReLU are left out: all their inputs are clamped, so the gradient through them is 0)."""
    k, s = layer.k, layer.stride
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    top = np.sort(windows.reshape(*windows.shape[:4], k * k), axis=-1)
    return (top[..., -1] - top[..., -2])[top[..., -1] != 0]


def _forward(layer, x, training):
    """One forward pass that keeps what backward needs: training mode, or evaluation mode (``eval_forward``)."""
    return layer.forward(x, training=True) if training else layer.eval_forward(x)


def smoothness_margin(model, x, training=True):
    """How far the check point ``x`` is from the nearest kink or tie of ``model``
    (in training mode, or with ``training=False`` in evaluation mode).

    The smallest distance of any ReLU or LeakyReLU input from 0 and of the two
    largest values of any MaxPool2D window; a gradient check with step h needs
    a margin well above h. Other layers are taken as smooth (check a fused
    ConvReLUPool on its own, as the tests do).
    """
    margin = np.inf
    for layer in model.layers:
        if isinstance(layer, (ReLU, LeakyReLU)):
            margin = min(margin, float(np.abs(x).min()))
        if isinstance(layer, MaxPool2D):
            margin = min(margin, float(_pool_gaps(x, layer).min(initial=np.inf)))
        x = _forward(layer, x, training)
    return margin


def small_cnn():
    """A small float64 CNN for end-to-end checks: input (1, 8, 8), 3 classes.

    Conv2D (with and without bias, stride 1 and 2), ReLU, MaxPool2D,
    BatchNorm, LeakyReLU, Flatten and Dense: the layers of a typical unfused
    network, so the check covers the chain rule between all of them.

    The conv before BatchNorm has no bias: BatchNorm subtracts the per-channel
    mean, so that bias's true gradient is exactly 0 and a relative error of
    two rounding noises would be meaningless.
    """
    f64 = np.float64
    layers = [Conv2D(1, 3, 3, padding=1, dtype=f64, rng=1), ReLU(), MaxPool2D(2),
              Conv2D(3, 4, 3, stride=2, padding=1, bias=False, dtype=f64, rng=2), BatchNorm(4, dtype=f64),
              LeakyReLU(0.1), Flatten(), Dense(16, 6, dtype=f64, rng=3), ReLU(), Dense(6, 3, dtype=f64, rng=4)]
    return Sequential(layers, (1, 8, 8), class_names=["a", "b", "c"])


# -- checks ------------------------------------------------------------------------------------------------

def rel_error(analytic, numeric):
    """||a - n|| / max(||a|| + ||n||, 1e-300)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-300))


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar function ``f()`` with respect to array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored.
    Returns an array of x's shape.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def _require_float64(*arrays):
    for a in arrays:
        if a.dtype != np.float64:
            raise UsageError(f"gradient checks need float64 arrays, got {a.dtype}; call layer.astype('float64')")


def check_layer(layer, x, training=True, h=1e-6, seed=0, tolerance=LAYER_TOLERANCE):
    """Check ``layer.backward`` against central differences.

    ``training=True`` checks the training-mode backward; ``training=False`` the
    evaluation-mode one (forward by ``layer.eval_forward``: BatchNorm with its
    running statistics, no dropout), the gradient a saliency map uses.
    Returns a list of :class:`CheckResult`, one for the input ``x`` and one per
    parameter. Also verifies that ``backward`` leaves its argument unchanged.
    The layer's buffers (BatchNorm's running statistics, which every
    training-mode forward updates) are restored afterwards.
    """
    _require_float64(x, *layer.params.values())
    with _buffers_kept(layer.named_arrays(("buffers",))):
        return _check_layer(layer, x.copy(), training, h, seed, tolerance)


def _check_layer(layer, x, training, h, seed, tolerance):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(_forward(layer, x, training).shape)

    def f():
        return float(np.sum(_forward(layer, x, training) * g))

    _forward(layer, x, training)
    g_before = g.copy()
    dx = layer.backward(g)
    if not np.array_equal(g, g_before):
        raise AssertionError(f"{type(layer).__name__}.backward modified its upstream gradient")
    analytic = {"x": dx} if dx is not None else {}
    analytic.update({name: grad.copy() for name, grad in layer.grads.items()})
    name = type(layer).__name__
    results = []
    if "x" in analytic:
        results.append(CheckResult(name, "x", x.shape, rel_error(analytic["x"], numerical_gradient(f, x, h)),
                                   tolerance))
    for ref in layer.named_arrays(("params",)):
        num = numerical_gradient(f, ref.value, h)
        results.append(CheckResult(name, ref.name, ref.value.shape, rel_error(analytic[ref.name], num), tolerance))
    return results


def check_model(model, x, labels, h=1e-6, tolerance=NETWORK_TOLERANCE, training=True):
    """Check a whole network end to end: softmax cross-entropy loss against every parameter and the input.

    In training mode, or with ``training=False`` in evaluation mode (``model.eval_forward``).

    model: a float64 :class:`~nncore.sequential.Sequential`; x: prepared input (N, ...) float64;
    labels: (N,) integers. Returns a list of :class:`CheckResult`. The model's
    input-gradient setting (:meth:`~nncore.sequential.Sequential.set_input_grad`)
    and its buffers (BatchNorm's running statistics) are as they were afterwards.
    """
    _require_float64(x)
    was = model.input_grad
    model.set_input_grad(True)
    try:
        with _buffers_kept(model.named_arrays(("buffers",))):
            return _check_model(model, x.copy(), labels, h, tolerance, training)
    finally:
        model.set_input_grad(was)


@contextmanager
def _buffers_kept(refs):
    """Put back the arrays of ``refs`` (ArrayRef records) after the block, as they were before it."""
    refs = list(refs)
    saved = [ref.value.copy() for ref in refs]
    try:
        yield
    finally:
        for ref, value in zip(refs, saved):
            ref.set(value)


def _check_model(model, x, labels, h, tolerance, training):
    loss_fn = SoftmaxCrossEntropy()

    def f():
        logits = model.forward(x, training=True) if training else model.eval_forward(x)
        return float(loss_fn.forward(logits, labels))

    f()
    dx = model.backward(loss_fn.backward())
    results = [CheckResult("model", "x", x.shape, rel_error(dx, numerical_gradient(f, x, h)), tolerance)]
    analytic = [(ref, ref.layer.grads[ref.name].copy()) for ref in model.named_arrays(("params",))]
    for ref, grad in analytic:
        num = numerical_gradient(f, ref.value, h)
        index = ref.key.split(".")[1]                                   # "layers.<i>.<name>"
        results.append(CheckResult(f"{index}:{type(ref.layer).__name__}", ref.name, grad.shape,
                                   rel_error(grad, num), tolerance))
    return results


def format_table(results):
    """Render results as a fixed-width table (layer, array, shape, relative error, pass/fail)."""
    rows = [("layer", "array", "shape", "rel. error", "result")]
    for r in results:
        rows.append((r.layer, r.array, "x".join(map(str, r.shape)), f"{r.rel_error:.2e}",
                     "pass" if r.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
