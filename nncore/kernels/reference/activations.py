"""The ReLU."""

import numpy as np


def relu_forward(x):
    """out = max(x, 0), elementwise; any shape."""
    # exercise: relu
    return np.maximum(x, x.dtype.type(0))
    # end exercise


def relu_backward(dout, out):
    """dx = dout where the ReLU's output is positive, else 0 (a new array)."""
    # exercise: relu
    return np.where(out > 0, dout, dout.dtype.type(0))
    # end exercise
