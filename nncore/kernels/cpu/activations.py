"""numba twin of :mod:`nncore.kernels.reference.activations`."""

import numpy as np
from numba import prange

from ..reference.activations import relu_backward as relu_backward_small
from ..reference.activations import relu_forward as relu_forward_small
from .jit import pjit

#: elementwise kernels on fewer elements than this take NumPy's loop: starting numba's parallel
#: loop costs about 0.1 ms, NumPy needs 10-20 us for a dense layer's (128, 128) activations
_PARALLEL_MIN_SIZE = 1 << 18


@pjit
def _relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v   # NaN stays NaN, as in np.maximum


def relu_forward(x):
    """numba twin of :func:`nncore.kernels.reference.relu_forward`."""
    if x.size < _PARALLEL_MIN_SIZE:
        return relu_forward_small(x)
    out = np.empty_like(x)
    _relu_forward(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


@pjit
def _relu_backward(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if out[i] > 0 else 0


def relu_backward(dout, out):
    """numba twin of :func:`nncore.kernels.reference.relu_backward` (returns a new array)."""
    if dout.size < _PARALLEL_MIN_SIZE:
        return relu_backward_small(dout, out)
    dx = np.empty_like(dout)
    _relu_backward(np.ascontiguousarray(dout).reshape(-1), np.ascontiguousarray(out).reshape(-1), dx.reshape(-1))
    return dx
