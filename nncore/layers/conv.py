"""Conv2D: 2-D convolution by im2col and one matrix product (GEMM)."""

import numpy as np

from .. import backend, threads
from ..errors import UsageError
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

    Shapes:
    - x: (N, C, H, W)
    - W: (F, C, KH, KW), b: (F,)
    - out: (N, F, OH, OW) with OH = (H + 2P - KH) // S + 1 (likewise OW)

    Forward::

        out[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] * xpad[n, c, oh*S + i, ow*S + j]

    computed as ``W2 @ cols`` where ``W2 = W.reshape(F, C*KH*KW)`` and
    ``cols = im2col(x)`` has shape (C*KH*KW, N*OH*OW). The bias is added while
    the (F, N*OH*OW) product is reordered to NCHW (:func:`rows_to_nchw`), so
    it costs no extra pass over the output. On the CPU the products go through
    :func:`nncore.threads.matmul`, which splits them over nncore's threads.

    Backward, with ``d2`` = dout reordered to (F, N*OH*OW)::

        dW = d2 @ cols.T            (F, C*KH*KW) -> reshaped to (F, C, KH, KW)
        db = d2.sum(axis=1)         (F,)
        dx = col2im(W2.T @ d2)      (N, C, H, W)

    With the numba kernels, a 3x3, stride-1, padding-1 convolution with at
    least ``WINOGRAD_MIN_CHANNELS`` input channels is computed by Winograd
    F(4x4, 3x3) instead (see :mod:`nncore.kernels.reference.winograd`):
    ``winograd_tiles`` transforms the 6x6 input tiles, 36 batched products
    ``V[xi] @ U[xi].T`` replace the im2col GEMM with up to 4 times fewer
    multiply-adds, and ``winograd_output`` turns each tile of the products
    into a 4x4 block of the output and adds the bias. Backward,
    ``winograd_output_backward`` transforms dout into the products'
    gradient z; dW comes from ``z.T @ V`` and dx from ``z @ U``, added
    back into the image by ``winograd_tiles_backward`` (the input
    transform transposed). ``winograd_forward`` and ``winograd_backward``
    run these steps a few images at a time, so the products stay in cache.
    Equal to the im2col path up to float32 rounding (the tests compare
    both with the reference and check the gradients).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (KH, KW)
    stride : int >= 1
    padding : int >= 0, or ``"same"`` (odd kernels only): pad (K-1)//2, so the
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
        if not isinstance(stride, (int, np.integer)) or stride < 1:
            raise UsageError(f"Conv2D stride must be a positive integer, got {stride!r}")
        self.stride = int(stride)
        if padding == "same":
            if self.kernel_size[0] % 2 == 0 or self.kernel_size[1] % 2 == 0:
                raise UsageError("Conv2D padding='same' needs an odd kernel size; give an integer padding instead")
            self.padding_arg = "same"
            self.pad = (self.kernel_size[0] - 1) // 2, (self.kernel_size[1] - 1) // 2
        elif isinstance(padding, (int, np.integer)) and padding >= 0:
            self.padding_arg = int(padding)
            self.pad = (int(padding), int(padding))
        else:
            raise UsageError(f"Conv2D padding must be an integer >= 0 or 'same', got {padding!r}")
        if self.pad[0] != self.pad[1]:
            raise UsageError("Conv2D supports equal padding on both axes; use a square kernel with padding='same'")
        self.use_bias = bool(bias)
        dt = check_dtype(dtype)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        w = make_rng(rng).standard_normal((self.out_channels, self.in_channels, kh, kw)) * np.sqrt(2.0 / fan_in)
        self.params["W"] = w.astype(dt)
        if self.use_bias:
            self.params["b"] = np.zeros(self.out_channels, dtype=dt)
        self.cache = None

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": self.stride,
                "padding": self.padding_arg, "bias": self.use_bias}

    def output_shape(self, input_shape):
        c, h, w = input_shape
        if c != self.in_channels:
            raise UsageError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        oh = conv_output_size(h, self.kernel_size[0], self.stride, self.pad[0])
        ow = conv_output_size(w, self.kernel_size[1], self.stride, self.pad[0])
        if oh < 1 or ow < 1:
            raise UsageError(f"Conv2D input {h}x{w} is smaller than its kernel {self.kernel_size} (with padding)")
        return (self.out_channels, oh, ow)

    #: at inference, large batches are convolved in slices whose im2col matrix and
    #: product ((C*KH*KW + F) x slice*OH*OW floats) stay within this many bytes,
    #: about the size of the last-level cache, so they never travel to memory
    #: (ref-cnn inference at batch 1000 here: ~147 ms unsliced, ~100-130 ms sliced)
    INFERENCE_COLS_BYTES = 12 * 2**20

    def _slice_size(self, x):
        kh, kw = self.kernel_size
        _, oh, ow = Conv2D.output_shape(self, x.shape[1:])
        per_image = (self.in_channels * kh * kw + self.out_channels) * oh * ow * x.dtype.itemsize
        return max(1, self.INFERENCE_COLS_BYTES // per_image)

    #: Winograd needs at least this many input channels: its transforms cost the same per channel
    #: whatever the layer, and with few channels the products they save are few. Measured with 32
    #: filters, forward + backward at batch 128: at 2 channels im2col was faster on 14x14 images
    #: (3.0 against 3.9 ms), at 4 about even (3.1 / 3.3 ms), from 8 channels Winograd won (14x14
    #: and 28x28; 16 channels on 28x28: 15.6 against 36.8 ms)
    WINOGRAD_MIN_CHANNELS = 4

    def takes_winograd_path(self, x):
        """True when this call computes the convolution by Winograd F(4x4, 3x3) (see the class docstring)."""
        return (backend.kernels(x).WINOGRAD and self.kernel_size == (3, 3) and self.stride == 1 and self.pad[0] == 1
                and self.in_channels >= self.WINOGRAD_MIN_CHANNELS and x.ndim == 4)

    def forward(self, x, training=False):
        if not training and x.shape[0] > self._slice_size(x):
            return self._sliced(x)
        if self.takes_winograd_path(x):
            return self._winograd_forward(x, pool=False)[0]
        y, oh, ow = self._forward_gemm(x)
        return backend.kernels(x).rows_to_nchw(y, self.params.get("b"), x.shape[0], oh, ow)

    def _sliced(self, x):
        """Inference on a large batch, one cache-sized slice of images at a time."""
        xp = backend.get_array_module(x)
        step = self._slice_size(x)
        out = xp.concatenate([self.forward(x[i:i + step], training=False) for i in range(0, x.shape[0], step)])
        self.cache = None  # nothing to back-propagate through at inference
        return out

    def backward(self, dout):
        if self.cache[0] == "winograd":
            return self._winograd_backward(dout, None)
        d2, db = backend.kernels(dout).nchw_to_rows(dout)               # (F, N*OH*OW), (F,)
        return self._backward_gemm(d2, db)

    # The two halves shared with the fused ConvReLUPool layer -----------------
    def _forward_gemm(self, x):
        """im2col and the product: returns (y, OH, OW) with y = W2 @ cols of shape (F, N*OH*OW)."""
        self._check_input(x, 4)
        _, oh, ow = Conv2D.output_shape(self, x.shape[1:])
        kh, kw = self.kernel_size
        w2 = self.params["W"].reshape(self.out_channels, -1)            # (F, C*KH*KW)
        cols = backend.kernels(x).im2col(x, kh, kw, self.stride, self.pad[0])  # (C*KH*KW, N*OH*OW)
        self.cache = (x.shape, cols, oh, ow)
        return threads.matmul(w2, cols), oh, ow

    def _winograd_forward(self, x, pool):
        """The convolution by Winograd F(4x4, 3x3); ``pool`` adds ReLU and 2x2/2 max-pooling (ConvReLUPool).

        Returns (out, arg) as the kernels' ``winograd_forward``; caches what backward needs.
        """
        self._check_input(x, 4)
        Conv2D.output_shape(self, x.shape[1:])
        kern = backend.kernels(x)
        u = kern.winograd_weights(self.params["W"])                         # (36, F, C)
        out, arg, v = kern.winograd_forward(x, u, self.params.get("b"), pool)
        self.cache = ("winograd", x.shape, v, u)
        return out, arg

    def _winograd_backward(self, dout, arg):
        """Fill grads from dout (and the pooling's arg, or None); return dL/dx (or None)."""
        x_shape, v, u = self.cache[1:]
        dw, db, dx = backend.kernels(dout).winograd_backward(dout, arg, v, u, x_shape, self.needs_input_grad)
        self._store_grads(dw, db)
        return dx

    def _store_grads(self, dw2, db):
        """grads["W"] from dw2 (F, C*KH*KW), reshaped to W's shape; grads["b"] = db when there is a bias."""
        self.grads["W"] = dw2.reshape(self.params["W"].shape)
        if self.use_bias:
            self.grads["b"] = db

    def _backward_gemm(self, d2, db):
        """Given dL/dy as d2 (F, N*OH*OW) and db (F,): fill grads, return dL/dx (or None)."""
        x_shape, cols, _, _ = self.cache
        w = self.params["W"]
        self._store_grads(threads.matmul(d2, cols.T), db)
        if not self.needs_input_grad:
            return None
        dcols = threads.matmul(w.reshape(self.out_channels, -1).T, d2)   # (C*KH*KW, N*OH*OW)
        kh, kw = self.kernel_size
        return backend.kernels(d2).col2im(dcols, x_shape, kh, kw, self.stride, self.pad[0])
