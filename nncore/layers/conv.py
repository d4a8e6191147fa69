"""Conv2D: 2-D convolution by im2col and one matrix product (GEMM)."""

import numpy as np

from ..errors import UsageError
from ..kernels import kernels_for
from ..kernels.reference import conv_output_size
from .base import Layer, check_dtype, make_rng


def _pair(v, what):
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2 or min(v) < 1:
        raise UsageError(f"Conv2D {what} must be a positive integer or a pair of them, got {v!r}")
    return v


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Shapes
    ------
    - x: (N, C, H, W)
    - W: (F, C, KH, KW), b: (F,)
    - cols = im2col(x): (C*KH*KW, N*OH*OW), one column per receptive field
    - out: (N, F, OH, OW) with OH = (H + 2P - KH) // S + 1 (likewise OW)

    Forward::

        out[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] * xpad[n, c, oh*S + i, ow*S + j]
        y = W2 @ cols      W2 = W.reshape(F, C*KH*KW); y: (F, N*OH*OW)
        out = y reordered to NCHW, plus b

    Backward, with ``d2`` = dout reordered to (F, N*OH*OW)::

        dW = d2 @ cols.T            (F, C*KH*KW) -> reshaped to (F, C, KH, KW)
        db = d2.sum(axis=1)         (F,)
        dx = col2im(W2.T @ d2)      (N, C, H, W)

    Both passes are one kernel call each, ``conv2d_forward`` and
    ``conv2d_backward`` (:mod:`nncore.kernels.reference.conv` computes them
    exactly as above). The numba kernels compute the same result, choosing
    the algorithm by shape: Winograd F(4x4, 3x3) for 3x3, stride-1,
    padding-1 convolutions of 4 or more channels, im2col otherwise (see
    :mod:`nncore.kernels.cpu.algorithms`). The layer keeps the kernels'
    ``ctx`` between the passes without looking inside: after
    ``forward(x, training=True)`` or :meth:`eval_forward` (the same math,
    for a gradient through the trained network), not after an inference
    ``forward(x, training=False)``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (KH, KW)
    stride : int >= 1
    padding : int >= 0, or ``"same"`` (odd square kernels only): pad (K-1)//2, so the
        output is ceil(H / stride) by ceil(W / stride)
    bias : bool
    dtype : float32 (default) or float64
    rng : seed or numpy Generator for the He initialisation
        ``W ~ N(0, 2 / (C*KH*KW))``, b = 0.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise UsageError(f"Conv2D channels must be positive, got {in_channels} -> {out_channels}")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        kh, kw = self.kernel_size
        if not isinstance(stride, (int, np.integer)) or stride < 1:
            raise UsageError(f"Conv2D stride must be a positive integer, got {stride!r}")
        self.stride = int(stride)
        if padding == "same":
            if kh % 2 == 0 or kw % 2 == 0:
                raise UsageError("Conv2D padding='same' needs an odd kernel size; give an integer padding instead")
            if kh != kw:
                raise UsageError("Conv2D supports equal padding on both axes; use a square kernel with padding='same'")
        elif not (isinstance(padding, (int, np.integer)) and padding >= 0):
            raise UsageError(f"Conv2D padding must be an integer >= 0 or 'same', got {padding!r}")
        self.padding = padding if padding == "same" else int(padding)      # as given: config() saves it
        self.use_bias = bool(bias)
        dt = check_dtype(dtype)
        fan_in = self.in_channels * kh * kw
        w = make_rng(rng).standard_normal((self.out_channels, self.in_channels, kh, kw)) * np.sqrt(2.0 / fan_in)
        self.params["W"] = w.astype(dt)
        if self.use_bias:
            self.params["b"] = np.zeros(self.out_channels, dtype=dt)
        self.ctx = None

    @property
    def pad(self):
        """Rows (and columns) of zeros on each side: ``padding``, with "same" resolved to (K-1)//2."""
        return (self.kernel_size[0] - 1) // 2 if self.padding == "same" else self.padding

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": self.stride,
                "padding": self.padding, "bias": self.use_bias}

    def output_shape(self, input_shape):
        c, h, w = input_shape
        if c != self.in_channels:
            raise UsageError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        oh = conv_output_size(h, self.kernel_size[0], self.stride, self.pad)
        ow = conv_output_size(w, self.kernel_size[1], self.stride, self.pad)
        if oh < 1 or ow < 1:
            raise UsageError(f"Conv2D input {h}x{w} is smaller than its kernel {self.kernel_size} (with padding)")
        return (self.out_channels, oh, ow)

    def forward(self, x, training=False):
        return self._convolve(x, keep_ctx=training)

    def eval_forward(self, x):
        """The convolution is the same in both modes; keep the ctx for ``backward``."""
        return self._convolve(x, keep_ctx=True)

    def _convolve(self, x, keep_ctx):
        self._check_input(x, 4)
        self.output_shape(x.shape[1:])
        out, self.ctx = kernels_for(x).conv2d_forward(x, self.params["W"], self.params.get("b"), self.stride,
                                                      self.pad, keep_ctx)
        return out

    def backward(self, dout):
        dx, self.grads["W"], db = kernels_for(dout).conv2d_backward(self._forward_ctx(), dout, self.needs_input_grad)
        if self.use_bias:
            self.grads["b"] = db
        return dx

    def _forward_ctx(self):
        """The kernels' ctx of the last forward pass (a UsageError after an inference pass, which keeps none)."""
        if self.ctx is None:
            raise UsageError(f"{type(self).__name__}.backward needs a forward(x, training=True) "
                             "or eval_forward(x) pass first")
        return self.ctx
