"""Convolution -> ReLU -> max-pooling as one step after the GEMM (what ConvReLUPool runs)."""

import numpy as np

from .activations import relu_forward
from .conv import nchw_to_rows, rows_to_nchw
from .pool import maxpool_backward, maxpool_forward


def conv_relu_pool_forward(y, b, n, oh, ow, k, stride):
    """Bias, ReLU and max-pooling of a convolution's GEMM output, in one step.

    Inputs: y (F, N*OH*OW) = ``w2d @ cols``; b (F,) or None; pooling window k, stride.
    Returns (out, arg):
    - out: (N, F, PH, PW) = maxpool(relu(rows_to_nchw(y, b)))
    - arg: (N, F, PH, PW) int32, the window offset of the maximum, or -1 where
      the maximum is <= 0 (the ReLU clamped the whole window: no gradient flows).

    Written here as the composition of the three unfused kernels, which is
    exactly what it computes.
    """
    out, arg = maxpool_forward(relu_forward(rows_to_nchw(y, b, n, oh, ow)), k, stride)
    return out, np.where(out > 0, arg, np.int32(-1)).astype(np.int32)


def conv_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """Adjoint of :func:`conv_relu_pool_forward` down to the GEMM output.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; OH, OW of the conv output.
    Returns (d2, db): d2 (F, N*OH*OW), the gradient w.r.t. y, and db (F,).
    Each pooled gradient goes to its window's arg-max if that maximum was
    positive (where the ReLU passes gradient), else nowhere.
    """
    n, f = dout.shape[:2]
    passed = np.where(arg >= 0, dout, dout.dtype.type(0))
    dconv = maxpool_backward(passed, np.maximum(arg, 0), (n, f, oh, ow), k, stride)
    return nchw_to_rows(dconv)


def conv_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """Weight and bias gradients of a fused conv-ReLU-pool layer, straight from the pooled gradient.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; cols (C*KH*KW, N*OH*OW).
    Returns (dw2, db): dw2 (F, C*KH*KW) = d2 @ cols.T and db (F,), where d2 is
    what :func:`conv_relu_pool_backward` returns. Only a quarter of d2 is
    non-zero (one entry per 2x2 window at most), so for a first layer, whose
    input gradient is not needed, the fast twin skips building d2 at all.
    """
    d2, db = conv_relu_pool_backward(dout, arg, oh, ow, k, stride)
    return d2 @ cols.T, db
