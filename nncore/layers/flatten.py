"""Flatten: (N, d1, d2, ...) -> (N, d1*d2*...)."""

import numpy as np

from .base import Layer


class Flatten(Layer):
    """Reshape each sample to a vector (a view, no copy). Backward reshapes back."""

    def __init__(self):
        super().__init__()
        self.in_shape = None

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self.in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.in_shape)
