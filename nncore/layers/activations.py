"""Elementwise activations: ReLU and LeakyReLU."""

from .. import backend
from ..errors import UsageError
from ..kernels import kernels_for
from .base import Layer


class ReLU(Layer):
    """Rectified linear unit, any shape.

    Forward: ``out = max(x, 0)``.
    Backward: ``dx = dout * (out > 0)``. (At exactly x = 0 the function has
    a kink; we use the subgradient 0 there, and gradient checks keep their
    inputs away from it.)
    """

    def __init__(self):
        super().__init__()
        self.out = None

    def forward(self, x, training=False):
        self.out = kernels_for(x).relu_forward(x)
        return self.out

    def backward(self, dout):
        return kernels_for(dout).relu_backward(dout, self.out)


class LeakyReLU(Layer):
    """Leaky ReLU with slope ``alpha`` for negative inputs, any shape.

    Forward: ``out = x if x > 0 else alpha * x``.
    Backward: ``dx = dout if x > 0 else alpha * dout``.
    """

    def __init__(self, alpha=0.01):
        super().__init__()
        if not 0.0 <= float(alpha) < 1.0:
            raise UsageError(f"LeakyReLU alpha must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self.positive = None

    def config(self):
        return {"alpha": self.alpha}

    def forward(self, x, training=False):
        xp = backend.get_array_module(x)
        self.positive = x > 0
        return xp.where(self.positive, x, x * x.dtype.type(self.alpha))

    def backward(self, dout):
        xp = backend.get_array_module(dout)
        return xp.where(self.positive, dout, dout * dout.dtype.type(self.alpha))
