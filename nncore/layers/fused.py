"""ConvReLUPool: Conv2D -> ReLU -> MaxPool2D computed in one pass over memory."""

import numpy as np

from .. import backend
from ..errors import UsageError
from .conv import Conv2D


class ConvReLUPool(Conv2D):
    """The three layers Conv2D, ReLU, MaxPool2D(pool, pool_stride) fused into one.

    Same parameters, same outputs and same gradients as the three layers in a
    row (the tests check this); only the memory traffic differs. Unfused, the
    full-size convolution output is written, read and written again by the
    ReLU, then read by the pooling, and the backward pass does the same in
    reverse. Fused, one kernel reads the GEMM output ``y`` once and writes
    only the pooled result.

    Shapes:
    - x: (N, C, H, W); W: (F, C, KH, KW); b: (F,)
    - y = W2 @ im2col(x): (F, N*OH*OW), the convolution before its bias
    - out: (N, F, PH, PW), PH = (OH - pool) // pool_stride + 1

    Forward::

        out[n, f, ph, pw] = max(0, b[f] + max_{i,j} y[f, n, ph*S + i, pw*S + j])

    which equals maxpool(relu(conv(x))) because ReLU and adding b are
    monotone, so they commute with the max.

    Backward: a pooled gradient flows to its window's arg-max if that maximum
    was positive (the ReLU passes it), and nowhere otherwise; from there on it
    is Conv2D's backward (dW, db, col2im). A first layer needs no input
    gradient; when its C*KH*KW is small, dW is summed straight from the window
    maxima (``conv_relu_pool_weight_grad``), skipping the mostly-zero d2.

    Thin first layers skip im2col too. With the numba kernels, a 3x3,
    stride-1 layer with C*9 <= 32 rows and 2x2/2 pooling that needs no input
    gradient (a model's first layer, in training and at inference) is
    computed straight from the image by ``conv3x3_relu_pool2_forward``, and
    its dW by ``conv3x3_relu_pool2_weight_grad``: a GEMM with nine inner rows
    is all memory traffic, while the direct loop computes one pooling
    window's four conv outputs for all filters in vector registers. Same
    results (the tests compare both paths with the reference).

    Layers that Conv2D computes by Winograd F(4x4, 3x3) (ref-cnn's second
    layer; see Conv2D) do so here too when they pool 2x2/2 an even-sized
    output, because each 4x4 output tile then holds four whole pooling
    windows: ``winograd_relu_pool`` turns each tile of the products into its
    conv output, adds the bias, applies the ReLU and pools in one pass, and
    ``winograd_pool_backward`` turns the pooled gradient straight into the
    products' gradient.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, pool=2,
                 pool_stride=None, dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, dtype=dtype, rng=rng)
        if not isinstance(pool, int) or pool < 1 or (pool_stride is not None and
                                                     (not isinstance(pool_stride, int) or pool_stride < 1)):
            raise UsageError(f"ConvReLUPool pool and pool_stride must be positive integers, got {pool!r}, {pool_stride!r}")
        self.pool = pool
        self.pool_stride = pool_stride or pool

    def config(self):
        return {**super().config(), "pool": self.pool, "pool_stride": self.pool_stride}

    def output_shape(self, input_shape):
        f, oh, ow = super().output_shape(input_shape)
        if oh < self.pool or ow < self.pool:
            raise UsageError(f"ConvReLUPool: conv output {oh}x{ow} is smaller than the pooling window {self.pool}")
        return (f, (oh - self.pool) // self.pool_stride + 1, (ow - self.pool) // self.pool_stride + 1)

    def takes_direct_path(self, x):
        """True when this call takes the direct first-layer path (see the class docstring)."""
        return (backend.kernels(x).DIRECT_FIRST_LAYER and self.kernel_size == (3, 3) and self.stride == 1
                and self.pool == 2 and self.pool_stride == 2 and self.in_channels * 9 <= self.DIRECT_WEIGHT_GRAD_ROWS
                and not self.needs_input_grad)

    def takes_winograd_path(self, x):
        """Conv2D's Winograd condition, 2x2/2 pooling and an even-sized input (so also output): each 4x4
        output tile then holds four whole pooling windows."""
        return (super().takes_winograd_path(x) and self.pool == 2 and self.pool_stride == 2
                and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0)

    def forward(self, x, training=False):
        if self.takes_direct_path(x):
            self._check_input(x, 4)
            self.output_shape(x.shape[1:])
            out, self.arg = backend.kernels(x).conv3x3_relu_pool2_forward(x, self.params["W"], self.params.get("b"),
                                                                         self.pad[0])
            self.cache = ("direct", x)
            return out
        if not training and x.shape[0] > self._slice_size(x):
            return self._sliced(x)
        if self.takes_winograd_path(x):
            out, self.arg = self._winograd_forward(x, pool=True)
            return out
        y, oh, ow = self._forward_gemm(x)
        out, arg = backend.kernels(x).conv_relu_pool_forward(y, self.params.get("b"), x.shape[0], oh, ow,
                                                             self.pool, self.pool_stride)
        self.arg = arg
        return out

    #: a first layer (no input gradient) with at most this many C*KH*KW rows takes
    #: its weight gradient straight from the window maxima instead of via d2 and a GEMM
    DIRECT_WEIGHT_GRAD_ROWS = 32

    def backward(self, dout):
        kern = backend.kernels(dout)
        if self.cache[0] == "winograd":
            return self._winograd_backward(dout, self.arg)
        if self.cache[0] == "direct":
            self._store_grads(*kern.conv3x3_relu_pool2_weight_grad(dout, self.arg, self.cache[1], self.pad[0]))
            return None
        x_shape, cols, oh, ow = self.cache
        if not self.needs_input_grad and cols.shape[0] <= self.DIRECT_WEIGHT_GRAD_ROWS:
            self._store_grads(*kern.conv_relu_pool_weight_grad(dout, self.arg, cols, oh, ow, self.pool,
                                                               self.pool_stride))
            return None
        d2, db = kern.conv_relu_pool_backward(dout, self.arg, oh, ow, self.pool, self.pool_stride)
        return self._backward_gemm(d2, db)
