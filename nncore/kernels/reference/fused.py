"""Convolution -> ReLU -> max-pooling in one step (what the ConvReLUPool layer computes)."""

from collections import namedtuple

import numpy as np

from ...errors import UsageError
from ...threads import matmul
from .activations import relu_forward
from .conv import col2im, conv_output_size, im2col, nchw_to_rows, rows_to_nchw
from .pool import maxpool_backward, maxpool_forward


def bias_relu_pool_forward(y, b, n, oh, ow, k, stride):
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


def bias_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """Adjoint of :func:`bias_relu_pool_forward` down to the GEMM output.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; OH, OW of the conv output.
    Returns (d2, db): d2 (F, N*OH*OW), the gradient w.r.t. y, and db (F,).
    Each pooled gradient goes to its window's arg-max if that maximum was
    positive (where the ReLU passes gradient), else nowhere.
    """
    n, f = dout.shape[:2]
    passed = np.where(arg >= 0, dout, dout.dtype.type(0))
    dconv = maxpool_backward(passed, np.maximum(arg, 0), (n, f, oh, ow), k, stride)
    return nchw_to_rows(dconv)


def bias_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """Weight and bias gradients of a fused conv-ReLU-pool layer, straight from the pooled gradient.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; cols (C*KH*KW, N*OH*OW).
    Returns (dw2, db): dw2 (F, C*KH*KW) = d2 @ cols.T and db (F,), where d2 is
    what :func:`bias_relu_pool_backward` returns. Only a quarter of d2 is
    non-zero (one entry per 2x2 window at most), so for a first layer, whose
    input gradient is not needed, the fast twin skips building d2 at all.
    """
    d2, db = bias_relu_pool_backward(dout, arg, oh, ow, k, stride)
    return d2 @ cols.T, db


#: what :func:`conv_relu_pool_backward` needs from the forward pass
ConvReLUPoolContext = namedtuple("ConvReLUPoolContext", "x_shape cols w stride pad oh ow pool pool_stride arg need_dx")


def conv_relu_pool_forward(x, w, b, stride, pad, pool, pool_stride, training=True, need_dx=True):
    """Convolution, bias, ReLU and max-pooling of a batch (what the ConvReLUPool layer computes).

    Inputs:
    - x: (N, C, H, W); w: (F, C, KH, KW); b: (F,) or None; stride, pad as :func:`conv2d_forward`
    - pool, pool_stride: the max-pooling window and its stride
    - training: False at inference, where no backward pass follows, so nothing is kept
    - need_dx: False promises that the backward pass will not ask for dx (a model's
      first layer), which lets the numba twin take paths that cannot compute it

    Returns (out, ctx): out (N, F, PH, PW) = maxpool(relu(conv(x) + b)), PH = (OH - pool) // pool_stride + 1;
    ctx for :func:`conv_relu_pool_backward`, or None when not training. Computed as::

        cols = im2col(x)                          (C*KH*KW, N*OH*OW)
        y = w.reshape(F, -1) @ cols               (F, N*OH*OW), the convolution before its bias
        out, arg = bias_relu_pool_forward(y, b)   (N, F, PH, PW) each
    """
    n, f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)
    out, arg = bias_relu_pool_forward(matmul(w.reshape(f, -1), cols), b, n, oh, ow, pool, pool_stride)
    if not training:
        return out, None
    return out, ConvReLUPoolContext(x.shape, cols, w, stride, pad, oh, ow, pool, pool_stride, arg, need_dx)


def conv_relu_pool_backward(ctx, dout, need_dx):
    """Gradients of :func:`conv_relu_pool_forward`.

    Inputs: ctx from the forward pass; dout (N, F, PH, PW); need_dx: whether dx is wanted
    (not after a forward pass told ``need_dx=False``).
    Returns (dx, dw, db): dx (N, C, H, W) or None, dw like w, db (F,)::

        d2, db = bias_relu_pool_backward(dout, arg)   (F, N*OH*OW): each pooled gradient at its
                                                      window's arg-max, if the ReLU passed it
        dw = d2 @ cols.T                              (F, C*KH*KW)
        dx = col2im(w2.T @ d2)                        (N, C, H, W)
    """
    if need_dx and not ctx.need_dx:
        raise UsageError("conv_relu_pool_backward: dx asked for, but the forward pass was told need_dx=False")
    w = ctx.w
    d2, db = bias_relu_pool_backward(dout, ctx.arg, ctx.oh, ctx.ow, ctx.pool, ctx.pool_stride)
    dw = matmul(d2, ctx.cols.T).reshape(w.shape)
    if not need_dx:
        return None, dw, db
    dcols = matmul(w.reshape(w.shape[0], -1).T, d2)                          # (C*KH*KW, N*OH*OW)
    return col2im(dcols, ctx.x_shape, w.shape[2], w.shape[3], ctx.stride, ctx.pad), dw, db
