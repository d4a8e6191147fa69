"""Dense (fully connected) layer."""

import numpy as np

from .. import threads
from ..errors import UsageError
from .base import Layer, check_dtype, make_rng


class Dense(Layer):
    """Affine map ``out = x @ W + b``.

    Shapes: x (N, D), W (D, M), b (M,), out (N, M).

    Backward::

        dx = dout @ W.T     (N, D)
        dW = x.T @ dout     (D, M)
        db = dout.sum(0)    (M,)

    He initialisation ``W ~ N(0, 2 / D)``, b = 0 (suits a following ReLU).
    The products go through :func:`nncore.threads.matmul` (split over nncore's
    threads on the CPU; a plain ``@`` for small ones and on the GPU).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise UsageError(f"Dense sizes must be positive, got {in_features} -> {out_features}")
        self.use_bias = bool(bias)
        dt = check_dtype(dtype)
        w = make_rng(rng).standard_normal((self.in_features, self.out_features)) * np.sqrt(2.0 / self.in_features)
        self.params["W"] = w.astype(dt)
        if self.use_bias:
            self.params["b"] = np.zeros(self.out_features, dtype=dt)
        self.cache = None

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.use_bias}

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise UsageError(f"Dense expects {self.in_features} input features, got shape {tuple(input_shape)}")
        return (self.out_features,)

    def forward(self, x, training=False):
        self._check_input(x, 2)
        self.output_shape(x.shape[1:])
        self.cache = x
        # exercise: dense
        out = threads.matmul(x, self.params["W"])
        if self.use_bias:
            out += self.params["b"]  # out is a fresh array: adding in place is safe
        return out
        # end exercise

    def backward(self, dout):
        x = self.cache
        # exercise: dense
        self.grads["W"] = threads.matmul(x.T, dout)
        if self.use_bias:
            self.grads["b"] = dout.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return threads.matmul(dout, self.params["W"].T)
        # end exercise
