"""Dropout, inverted: scale at training time so inference is the identity."""

import numpy as np

from .. import backend
from ..errors import UsageError
from .base import Layer


class Dropout(Layer):
    """Inverted dropout with drop probability ``p``, any shape.

    Training: ``mask = (u >= p) / (1 - p)`` with u ~ U[0, 1) elementwise,
    ``out = x * mask``; the expected output equals x, so inference is simply
    ``out = x``. Backward: ``dx = dout * mask``.

    ``fixed_mask``: set it to an array of x's shape to use that mask instead
    of drawing one (gradient checks need the same mask at every evaluation).
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise UsageError(f"Dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)
        self.fixed_mask = None
        self.mask = None

    def config(self):
        return {"p": self.p}

    def forward(self, x, training=False):
        if not training or self.p == 0.0:
            self.mask = None
            return x
        if self.fixed_mask is not None:
            self.mask = self.fixed_mask
        else:
            # exercise: dropout
            xp = backend.get_array_module(x)
            keep = self.rng.random(x.shape) >= self.p                     # drawn on the host for reproducibility
            self.mask = xp.asarray(keep.astype(x.dtype) / x.dtype.type(1.0 - self.p))
            # end exercise
        return x * self.mask

    def backward(self, dout):
        if self.mask is None:
            return dout
        # exercise: dropout
        return dout * self.mask
        # end exercise
