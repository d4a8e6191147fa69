"""Max- and average-pooling over k x k windows."""

import numpy as np


def _windows(x, k, stride):
    """All k*k window offsets as one array: (K*K, N, C, OH, OW) views stacked."""
    n, c, h, w = x.shape
    oh = (h - k) // stride + 1
    ow = (w - k) // stride + 1
    return np.stack([x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                     for i in range(k) for j in range(k)])


def maxpool_forward(x, k, stride):
    """Max over each k x k window.

    Input x: (N, C, H, W). Returns (out, arg):
    - out: (N, C, OH, OW) with OH = (H - k) // stride + 1
    - arg: (N, C, OH, OW) int32, the offset ``i*k + j`` of the maximum inside
      its window. With ties, the first offset in row-major order wins, so the
      gradient goes to exactly one input.
    """
    # exercise: maxpool
    win = _windows(x, k, stride)
    arg = win.argmax(axis=0).astype(np.int32)
    out = np.take_along_axis(win, arg[None], axis=0)[0]
    return out, arg
    # end exercise


def maxpool_backward(dout, arg, x_shape, k, stride):
    """Route each output gradient to the input that was the maximum.

    Inputs: dout (N, C, OH, OW); arg from :func:`maxpool_forward`; x_shape.
    Returns dx: (N, C, H, W), zero everywhere but at the arg-max positions.
    """
    # exercise: maxpool
    oh, ow = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.where(arg == i * k + j, dout, 0)
    return dx
    # end exercise


def avgpool_forward(x, k, stride):
    """Mean over each k x k window. x: (N, C, H, W) -> out: (N, C, OH, OW)."""
    return _windows(x, k, stride).mean(axis=0, dtype=x.dtype)


def avgpool_backward(dout, x_shape, k, stride):
    """Each input in a window receives dout / (k*k). Returns dx: x_shape."""
    oh, ow = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout / dout.dtype.type(k * k)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += share
    return dx
