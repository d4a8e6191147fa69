"""A layer's product, BatchNorm and ReLU, then max-pooling or dropout, in one step (the fused BatchNorm layers).

Two pairs of kernels, each computing exactly what the unfused layers compute in a row:

- ``conv_bn_relu_pool_forward/backward``: Conv2D (no bias) -> BatchNorm -> ReLU -> MaxPool2D;
- ``dense_bn_relu_dropout_forward/backward``: Dense (no bias) -> BatchNorm -> ReLU -> Dropout.

``mode`` says which statistics BatchNorm uses and whether a backward pass follows:

==========  ===========================  ==================================================
``train``   the batch's mean and biased  returned, so the layer updates its running
            variance                     statistics as BatchNorm does; ctx kept
``eval``    the running statistics       ctx kept: a backward pass through the frozen
                                         network (``Layer.eval_forward``, saliency)
``infer``   the running statistics       nothing kept
==========  ===========================  ==================================================

With running statistics BatchNorm is an affine map per channel,
``z = s*y + t`` with ``s = gamma / sqrt(running_var + eps)`` and
``t = beta - running_mean * s``, so it folds into the product before it: the
weights of output channel f are scaled by s[f] and t becomes a bias. The
convolution then runs as ConvReLUPool (``conv_relu_pool_forward``), and the
gradients of the folded weights W' = W*s and bias b' = t give the real ones::

    dW = dW' * s,   dbeta = db',   dgamma = inv_std * (sum(W * dW') - running_mean * db')

(the last because ``sum(dz * y) = sum(W * dW')`` over a channel: y is linear in W).

Here every kernel is the composition of the reference kernels it replaces;
the numba twins compute the same arrays in fewer passes over memory.
"""

from collections import namedtuple

import numpy as np

from ...errors import UsageError
from ...threads import matmul
from .activations import relu_backward, relu_forward
from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import conv2d_backward, conv2d_forward
from .fused import conv_relu_pool_backward, conv_relu_pool_forward
from .pool import maxpool_backward, maxpool_forward

#: the three modes of the fused BatchNorm kernels (see the module docstring)
BATCHNORM_MODES = ("train", "eval", "infer")

#: after a ``train`` pass of the conv kernel: the convolution's ctx, xhat (N, C, OH*OW), and the rest
ConvBNReLUPoolContext = namedtuple("ConvBNReLUPoolContext",
                                   "conv xhat gamma inv_std arg y_shape pool pool_stride need_dx")
#: after an ``eval`` pass: the folded layer's ctx and what turns its gradients into the real ones
FoldedContext = namedtuple("FoldedContext", "inner w scale inv_std running_mean")
#: after a ``train`` pass of the dense kernel: input, weights, xhat and ReLU output (N, M), dropout mask or None
DenseBNContext = namedtuple("DenseBNContext", "x w xhat gamma inv_std h mask need_dx")
#: after an ``eval`` pass of the dense kernel: input, folded weights and the ReLU's output
FoldedDenseContext = namedtuple("FoldedDenseContext", "x w_folded h folded need_dx")


def check_mode(mode):
    """A UsageError unless ``mode`` is one of :data:`BATCHNORM_MODES`."""
    if mode not in BATCHNORM_MODES:
        raise UsageError(f"unknown BatchNorm mode {mode!r}; choose one of {list(BATCHNORM_MODES)}")


def check_need_dx(ctx, need_dx, name):
    if need_dx and not ctx.need_dx:
        raise UsageError(f"{name}: dx asked for, but the forward pass was told need_dx=False")


def batchnorm_scale_shift(gamma, beta, mean, var, eps):
    """BatchNorm with fixed statistics as ``z = scale*y + shift``: returns (scale, shift, inv_std), each (C,).

    inv_std = 1/sqrt(var + eps), scale = gamma*inv_std, shift = beta - mean*scale, in gamma's dtype.
    Array methods only: the numba and CuPy packages use it as it is.
    """
    inv_std = (1 / (var + gamma.dtype.type(eps)) ** 0.5).astype(gamma.dtype)
    scale = gamma * inv_std
    return scale, beta - mean * scale, inv_std


def unfold_gradients(dw_folded, db_folded, folded, axis):
    """(dw, dgamma, dbeta) from the gradients of the folded weights and bias (see the module docstring).

    ``folded`` is the :data:`FoldedContext`; ``axis`` the output-channel axis of w (0 for a
    convolution's (F, C, KH, KW), 1 for a dense layer's (D, M)). Array methods only.
    """
    w = folded.w
    shape = [1] * w.ndim
    shape[axis] = -1
    others = tuple(a for a in range(w.ndim) if a != axis)
    dgamma = folded.inv_std * ((w * dw_folded).sum(axis=others) - folded.running_mean * db_folded)
    return dw_folded * folded.scale.reshape(shape), dgamma, db_folded


# ----------------------------------------------------------------------------- conv -> BN -> ReLU -> max-pool

def conv_bn_relu_pool_forward(x, w, gamma, beta, running_mean, running_var, eps, stride, pad, pool, pool_stride,
                              mode="train", need_dx=True):
    """Convolution (no bias), BatchNorm, ReLU and max-pooling of a batch (the ConvBNReLUPool layer).

    Inputs:
    - x: (N, C, H, W); w: (F, C, KH, KW); stride, pad as :func:`conv2d_forward`
    - gamma, beta, running_mean, running_var: (F,); eps as BatchNorm's
    - pool, pool_stride: the max-pooling window and its stride
    - mode: ``"train"``, ``"eval"`` or ``"infer"`` (module docstring)
    - need_dx: False promises that the backward pass will not ask for dx (a first layer)

    Returns (out, mean, var, ctx): out (N, F, PH, PW); in ``train`` mode mean and var (F,)
    are the batch's (var biased), else None; ctx for :func:`conv_bn_relu_pool_backward`
    (None in ``infer`` mode). Training mode computes::

        y = conv(x, w)                              (N, F, OH, OW)
        xhat = (y - mean) / sqrt(var + eps)         mean, var per channel over N*OH*OW values
        z = gamma * xhat + beta
        out, arg = maxpool(relu(z))                 arg = -1 where the window's maximum is <= 0
    """
    check_mode(mode)
    if mode != "train":
        scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, running_mean, running_var, eps)
        out, inner = conv_relu_pool_forward(x, w * scale[:, None, None, None], shift, stride, pad, pool,
                                            pool_stride, mode == "eval", need_dx)
        return out, None, None, (FoldedContext(inner, w, scale, inv_std, running_mean) if inner is not None else None)
    y, conv = conv2d_forward(x, w, None, stride, pad, training=True)
    n, f = y.shape[:2]
    z, xhat, mean, var, inv_std = batchnorm_forward(y.reshape(n, f, -1), gamma, beta, eps)
    out, arg = maxpool_forward(relu_forward(z.reshape(y.shape)), pool, pool_stride)
    arg = np.where(out > 0, arg, np.int32(-1)).astype(np.int32)
    return out, mean, var, ConvBNReLUPoolContext(conv, xhat, gamma, inv_std, arg, y.shape, pool, pool_stride,
                                                 need_dx)


def conv_bn_relu_pool_backward(ctx, dout, need_dx):
    """Gradients of :func:`conv_bn_relu_pool_forward`: (dx or None, dw, dgamma, dbeta).

    Inputs: ctx from a ``train`` or ``eval`` forward pass; dout (N, F, PH, PW); need_dx.
    After a ``train`` pass::

        dz = each pooled gradient at its window's arg-max, if the ReLU passed it     (N, F, OH, OW)
        dbeta = sum(dz), dgamma = sum(dz * xhat)                                      per channel
        dy = gamma / sqrt(var + eps) * (dz - dbeta / M - xhat * dgamma / M)          M = N*OH*OW
        dx, dw = the convolution's backward of dy

    After an ``eval`` pass: the folded layer's gradients, unfolded (module docstring).
    """
    check_need_dx(ctx.inner if isinstance(ctx, FoldedContext) else ctx, need_dx, "conv_bn_relu_pool_backward")
    if isinstance(ctx, FoldedContext):
        dx, dw_folded, db_folded = conv_relu_pool_backward(ctx.inner, dout, need_dx)
        return (dx,) + unfold_gradients(dw_folded, db_folded, ctx, 0)
    n, f = ctx.y_shape[:2]
    passed = np.where(ctx.arg >= 0, dout, dout.dtype.type(0))
    dz = maxpool_backward(passed, np.maximum(ctx.arg, 0), ctx.y_shape, ctx.pool, ctx.pool_stride)
    dy, dgamma, dbeta = batchnorm_backward(dz.reshape(n, f, -1), ctx.xhat, ctx.gamma, ctx.inv_std)
    dx, dw, _ = conv2d_backward(ctx.conv, dy.reshape(ctx.y_shape), need_dx)
    return dx, dw, dgamma, dbeta


# ----------------------------------------------------------------------------- dense -> BN -> ReLU -> dropout

def dropout_mask(keep, p, dtype):
    """Inverted dropout's mask from the kept entries, as the Dropout layer builds it: keep / (1 - p)."""
    return keep.astype(dtype) / dtype.type(1.0 - p)


def dense_bn_relu_dropout_forward(x, w, gamma, beta, running_mean, running_var, eps, keep, p, mode="train",
                                  need_dx=True):
    """Dense product (no bias), BatchNorm, ReLU and inverted dropout (the DenseBNReLUDropout layer).

    Inputs:
    - x: (N, D); w: (D, M); gamma, beta, running_mean, running_var: (M,); eps as BatchNorm's
    - keep: (N, M) bool, the entries dropout keeps (drawn by the layer as Dropout draws them),
      or None for no dropout; p: the drop probability (kept entries are scaled by 1 / (1 - p))
    - mode, need_dx: as :func:`conv_bn_relu_pool_forward` (dropout only in ``train`` mode)

    Returns (out, mean, var, ctx) as :func:`conv_bn_relu_pool_forward`; out (N, M)::

        y = x @ w;   z = gamma * (y - mean) / sqrt(var + eps) + beta;   out = relu(z) * keep / (1 - p)
    """
    check_mode(mode)
    if mode != "train":
        if keep is not None:
            raise UsageError("dense_bn_relu_dropout_forward: dropout runs in train mode only; pass keep=None")
        scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, running_mean, running_var, eps)
        w_folded = w * scale
        h = relu_forward(matmul(x, w_folded) + shift)
        ctx = FoldedDenseContext(x, w_folded, h, FoldedContext(None, w, scale, inv_std, running_mean), need_dx)
        return h, None, None, (ctx if mode == "eval" else None)
    y = matmul(x, w)                                                       # (N, M)
    z, xhat, mean, var, inv_std = batchnorm_forward(y[:, :, None], gamma, beta, eps)
    h = relu_forward(z[:, :, 0])
    mask = None if keep is None else dropout_mask(keep, p, x.dtype)
    out = h if mask is None else h * mask
    return out, mean, var, DenseBNContext(x, w, xhat, gamma, inv_std, h, mask, need_dx)


def dense_bn_relu_dropout_backward(ctx, dout, need_dx):
    """Gradients of :func:`dense_bn_relu_dropout_forward`: (dx or None, dw, dgamma, dbeta).

    After a ``train`` pass::

        dz = (dout * keep / (1 - p)) where relu(z) > 0, else 0
        dy = BatchNorm's backward of dz (as in :func:`conv_bn_relu_pool_backward`, M = N)
        dw = x.T @ dy,   dx = dy @ w.T

    After an ``eval`` pass: dz = dout where relu > 0, the folded layer's dw' = x.T @ dz and
    db' = sum(dz), unfolded; dx = dz @ w'.T.
    """
    check_need_dx(ctx, need_dx, "dense_bn_relu_dropout_backward")
    if isinstance(ctx, FoldedDenseContext):
        dz = relu_backward(dout, ctx.h)
        dw, dgamma, dbeta = unfold_gradients(matmul(ctx.x.T, dz), dz.sum(axis=0), ctx.folded, 1)
        return (matmul(dz, ctx.w_folded.T) if need_dx else None), dw, dgamma, dbeta
    dh = dout if ctx.mask is None else dout * ctx.mask
    dz = relu_backward(dh, ctx.h)
    dy, dgamma, dbeta = batchnorm_backward(dz[:, :, None], ctx.xhat, ctx.gamma, ctx.inv_std)
    dy = dy[:, :, 0]
    return (matmul(dy, ctx.w.T) if need_dx else None), matmul(ctx.x.T, dy), dgamma, dbeta
