"""numba twin of :mod:`nncore.kernels.reference.optim`: the Adam update in one pass over the arrays
(the reference makes twelve), a large array's slices in parallel, a small one in the calling thread;
arrays that are not contiguous take the reference."""

import numpy as np

from ... import threads
from ..reference.optim import adam_update as adam_update_strided
from .jit import jit_ieee

#: arrays smaller than this are updated by the calling thread alone (a thread hand-off costs more)
_THREADED_MIN_SIZE = 1 << 16


@jit_ieee
def _adam_update(p, g, m, v, b1, c1, b2, c2, step, bias2, eps, decay):
    """The reference's arithmetic, operation for operation in p's dtype, on flat slices
    (c1 = 1 - b1 and c2 = 1 - b2 rounded once from Python's floats, as the reference does)."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + gi * c1
        vi = v[i] * b2 + (gi * gi) * c2
        m[i] = mi
        v[i] = vi
        pi = p[i] - decay * p[i]
        p[i] = pi - (mi / (np.sqrt(vi / bias2) + eps)) * step


def adam_update(p, g, m, v, lr, b1, b2, eps, t, decay):
    """numba twin of :func:`nncore.kernels.reference.adam_update` (p, m, v updated in place)."""
    arrays = (p, g, m, v)
    if not all(a.flags.c_contiguous for a in arrays) or len({a.dtype for a in arrays}) > 1:
        adam_update_strided(p, g, m, v, lr, b1, b2, eps, t, decay)
        return
    dt = p.dtype.type
    flat = [a.reshape(-1) for a in arrays]                  # views: the updates land in p, m and v
    scalars = (dt(b1), dt(1 - b1), dt(b2), dt(1 - b2), dt(lr / (1 - b1 ** t)), dt(1 - b2 ** t), dt(eps), dt(decay))
    if p.size < _THREADED_MIN_SIZE:     # a BatchNorm's gamma, a small layer: one call instead of twelve NumPy passes
        _adam_update(*flat, *scalars)
        return
    threads.run_slices(p.size, lambda i, lo, hi: _adam_update(*(a[lo:hi] for a in flat), *scalars))
