"""ConvReLUPool: Conv2D -> ReLU -> MaxPool2D computed in one pass over memory."""

import numpy as np

from ..errors import UsageError
from ..kernels import kernels_for
from .conv import Conv2D


class ConvReLUPool(Conv2D):
    """The three layers Conv2D, ReLU, MaxPool2D(pool, pool_stride) fused into one.

    Same parameters, same outputs and same gradients as the three layers in a
    row (the tests check this); only the memory traffic differs. Unfused, the
    full-size convolution output is written, read and written again by the
    ReLU, then read by the pooling, and the backward pass does the same in
    reverse. Fused, one kernel reads the GEMM output ``y`` once and writes
    only the pooled result.

    Shapes
    ------
    - x: (N, C, H, W); W: (F, C, KH, KW); b: (F,)
    - y = W2 @ im2col(x): (F, N*OH*OW), the convolution before its bias
    - out: (N, F, PH, PW), PH = (OH - pool) // pool_stride + 1

    Forward::

        out[n, f, ph, pw] = max(0, b[f] + max_{i,j} y[f, n, ph*S + i, pw*S + j])

    which equals maxpool(relu(conv(x))) because ReLU and adding b are
    monotone, so they commute with the max.

    Backward: a pooled gradient flows to its window's arg-max if that maximum
    was positive (the ReLU passes it), and nowhere otherwise; that gives d2,
    the gradient of y, and from there on it is Conv2D's backward
    (dW = d2 @ cols.T, db, dx = col2im(W2.T @ d2)).

    Both passes are one kernel call each, ``conv_relu_pool_forward`` and
    ``conv_relu_pool_backward`` (:mod:`nncore.kernels.reference.fused`
    computes them as above). The numba kernels choose the algorithm by
    shape (:mod:`nncore.kernels.cpu.algorithms`): a thin first layer, which
    needs no input gradient, is convolved and pooled straight from the image;
    a 3x3 layer of 4 or more channels pooling an even-sized output takes
    Winograd F(4x4, 3x3), whose 4x4 output tiles hold whole pooling windows;
    other layers im2col. The layer tells the kernels whether it needs dx.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, bias, dtype, rng : as :class:`Conv2D`
    pool : int >= 1, the max-pooling window
    pool_stride : int >= 1, default ``pool``
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, pool=2,
                 pool_stride=None, dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, dtype=dtype, rng=rng)
        if not isinstance(pool, int) or pool < 1 or (pool_stride is not None and
                                                     (not isinstance(pool_stride, int) or pool_stride < 1)):
            raise UsageError(f"ConvReLUPool pool and pool_stride must be positive integers, "
                             f"got {pool!r}, {pool_stride!r}")
        self.pool = pool
        self.pool_stride = pool_stride or pool

    def config(self):
        return {**super().config(), "pool": self.pool, "pool_stride": self.pool_stride}

    def output_shape(self, input_shape):
        f, oh, ow = super().output_shape(input_shape)
        if oh < self.pool or ow < self.pool:
            raise UsageError(f"ConvReLUPool: conv output {oh}x{ow} is smaller than the pooling window {self.pool}")
        return (f, (oh - self.pool) // self.pool_stride + 1, (ow - self.pool) // self.pool_stride + 1)

    def _convolve(self, x, keep_ctx):
        self._check_input(x, 4)
        self.output_shape(x.shape[1:])
        out, self.ctx = kernels_for(x).conv_relu_pool_forward(x, self.params["W"], self.params.get("b"), self.stride,
                                                              self.pad, self.pool, self.pool_stride, keep_ctx,
                                                              self.needs_input_grad)
        return out

    def backward(self, dout):
        dx, self.grads["W"], db = kernels_for(dout).conv_relu_pool_backward(self._forward_ctx(), dout,
                                                                            self.needs_input_grad)
        if self.use_bias:
            self.grads["b"] = db
        return dx
