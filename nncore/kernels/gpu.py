"""CUDA kernels through CuPy. Same names and results as :mod:`.reference`.

Imported only when a CuPy array reaches a layer (see :func:`nncore.kernels.kernels_for`),
so a CPU-only install never loads this module.

Every convolution is im2col and one cuBLAS product, as in the reference
package: ``conv2d_forward``/``conv2d_backward`` and the fused
``conv_relu_pool_forward``/``conv_relu_pool_backward`` at the end of this
module, and the fused BatchNorm layers' ``conv_bn_relu_pool_*`` and
``dense_bn_relu_dropout_*`` after them, composed of the kernels above. (The
Winograd and direct first-layer paths exist for the CPU only.)

Every kernel is a CuPy ``ElementwiseKernel``: one CUDA thread per *output*
element, which reads what it needs and writes only its own element. The
backward kernels (``col2im``, ``maxpool_backward``, ``avgpool_backward``) are
written in this gather form too: each input pixel's thread sums the
contributions of the windows that cover it, so no two threads write the same
address and no atomics are needed. The matrix products of the layers go to
cuBLAS through CuPy's ``@``. Types follow the input (``T`` is float32 or
float64); index arithmetic uses 64-bit integers so large batches cannot
overflow.
"""

import functools
from collections import namedtuple

from ..backend import import_cupy
from ..errors import UsageError
from .reference import adam_update, batchnorm_backward, batchnorm_forward, conv_output_size  # noqa: F401  (array-generic)
from .reference.conv import Conv2DContext
from .reference.fused import ConvReLUPoolContext
from .reference.fused_batchnorm import (
    FoldedContext,
    FoldedDenseContext,
    batchnorm_scale_shift,
    check_mode,
    check_need_dx,
    dropout_mask,
    unfold_gradients,
)

cp = import_cupy()

_IM2COL = cp.ElementwiseKernel(
    "raw T x, int64 n, int64 c, int64 h, int64 w, int64 kh, int64 kw, int64 oh, int64 ow, int64 s, int64 p",
    "T cols",
    """
    long long q_len = n * oh * ow;
    long long r = i / q_len, q = i % q_len;
    long long oz = q % ow, oy = (q / ow) % oh, ni = q / (ow * oh);
    long long j = r % kw, ii = (r / kw) % kh, ci = r / (kw * kh);
    long long y = oy * s + ii - p, z = oz * s + j - p;
    cols = (y >= 0 && y < h && z >= 0 && z < w) ? x[((ni * c + ci) * h + y) * w + z] : (T)0;
    """,
    "nncore_im2col",
)

_COL2IM = cp.ElementwiseKernel(
    "raw T cols, int64 n, int64 c, int64 h, int64 w, int64 kh, int64 kw, int64 oh, int64 ow, int64 s, int64 p",
    "T dx",
    """
    long long z = i % w, y = (i / w) % h, ci = (i / (w * h)) % c, ni = i / (w * h * c);
    long long q_len = n * oh * ow;
    T acc = 0;
    for (long long ii = 0; ii < kh; ++ii) {
        long long ty = y + p - ii;
        if (ty < 0 || ty % s != 0) continue;
        long long oy = ty / s;
        if (oy >= oh) continue;
        for (long long j = 0; j < kw; ++j) {
            long long tz = z + p - j;
            if (tz < 0 || tz % s != 0) continue;
            long long oz = tz / s;
            if (oz >= ow) continue;
            acc += cols[((ci * kh + ii) * kw + j) * q_len + (ni * oh + oy) * ow + oz];
        }
    }
    dx = acc;
    """,
    "nncore_col2im",
)

# Pooling kernels, one CUDA thread per element. Forward: output element i reads the
# k x k window starting at src. Backward: input element i (plane, y, z) sums over the
# windows [oy_lo, oy_hi] x [oz_lo, oz_hi] that contain it.
_WINDOW_OF_OUTPUT = """
    long long oz = i % ow, oy = (i / ow) % oh, plane = i / (ow * oh);
    const T* src = &x[plane * h * w + oy * s * w + oz * s];"""
_WINDOWS_OF_INPUT = """
    long long z = i % w, y = (i / w) % h, plane = i / (w * h);
    long long oy_lo = (y >= k) ? (y - k) / s + 1 : 0, oz_lo = (z >= k) ? (z - k) / s + 1 : 0;
    long long oy_hi = min(y / s, oh - 1), oz_hi = min(z / s, ow - 1);"""

_MAXPOOL_FWD = cp.ElementwiseKernel(
    "raw T x, int64 h, int64 w, int64 oh, int64 ow, int64 k, int64 s",
    "T out, int32 arg",
    _WINDOW_OF_OUTPUT + """
    T best = src[0];
    int where = 0;
    for (int ii = 0; ii < k; ++ii)
        for (int j = 0; j < k; ++j) {
            T v = src[ii * w + j];
            if (v > best) { best = v; where = ii * k + j; }
        }
    out = best;
    arg = where;
    """,
    "nncore_maxpool_forward",
)

_MAXPOOL_BWD = cp.ElementwiseKernel(
    "raw T dout, raw int32 arg, int64 h, int64 w, int64 oh, int64 ow, int64 k, int64 s",
    "T dx",
    _WINDOWS_OF_INPUT + """
    T acc = 0;
    for (long long oy = oy_lo; oy <= oy_hi; ++oy)
        for (long long oz = oz_lo; oz <= oz_hi; ++oz) {
            long long o = (plane * oh + oy) * ow + oz;
            if (arg[o] == (y - oy * s) * k + (z - oz * s)) acc += dout[o];
        }
    dx = acc;
    """,
    "nncore_maxpool_backward",
)

_AVGPOOL_FWD = cp.ElementwiseKernel(
    "raw T x, int64 h, int64 w, int64 oh, int64 ow, int64 k, int64 s",
    "T out",
    _WINDOW_OF_OUTPUT + """
    T acc = 0;
    for (int ii = 0; ii < k; ++ii)
        for (int j = 0; j < k; ++j) acc += src[ii * w + j];
    out = acc / (T)(k * k);
    """,
    "nncore_avgpool_forward",
)

_AVGPOOL_BWD = cp.ElementwiseKernel(
    "raw T dout, int64 h, int64 w, int64 oh, int64 ow, int64 k, int64 s",
    "T dx",
    _WINDOWS_OF_INPUT + """
    T acc = 0;
    for (long long oy = oy_lo; oy <= oy_hi; ++oy)
        for (long long oz = oz_lo; oz <= oz_hi; ++oz) acc += dout[(plane * oh + oy) * ow + oz];
    dx = acc / (T)(k * k);
    """,
    "nncore_avgpool_backward",
)

_RELU_BWD = cp.ElementwiseKernel("T dout, T out", "T dx", "dx = out > (T)0 ? dout : (T)0", "nncore_relu_backward")


def _c(a):
    return cp.ascontiguousarray(a)


def im2col(x, kh, kw, stride, pad):
    """CUDA twin of :func:`nncore.kernels.reference.im2col`: (N,C,H,W) -> (C*KH*KW, N*OH*OW)."""
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    cols = cp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _IM2COL(_c(x), n, c, h, w, kh, kw, oh, ow, stride, pad, cols)
    return cols


def col2im(cols, x_shape, kh, kw, stride, pad):
    """CUDA twin of :func:`nncore.kernels.reference.col2im`, in gather form (no atomics)."""
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    dx = cp.empty(x_shape, dtype=cols.dtype)
    _COL2IM(_c(cols), n, c, h, w, kh, kw, oh, ow, stride, pad, dx)
    return dx


def rows_to_nchw(y, b, n, oh, ow):
    """CUDA twin of :func:`nncore.kernels.reference.rows_to_nchw`."""
    f = y.shape[0]
    out = y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
    return _c(out + b.reshape(1, f, 1, 1)) if b is not None else _c(out)


def nchw_to_rows(dout):
    """CUDA twin of :func:`nncore.kernels.reference.nchw_to_rows`: returns (d2, db)."""
    n, f, oh, ow = dout.shape
    d2 = _c(dout.transpose(1, 0, 2, 3)).reshape(f, n * oh * ow)
    return d2, d2.sum(axis=1)


@functools.lru_cache(maxsize=None)
def _pool_shape(h, w, k, stride):
    return (h - k) // stride + 1, (w - k) // stride + 1


def maxpool_forward(x, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.maxpool_forward`: returns (out, arg)."""
    n, c, h, w = x.shape
    oh, ow = _pool_shape(h, w, k, stride)
    out = cp.empty((n, c, oh, ow), dtype=x.dtype)
    arg = cp.empty((n, c, oh, ow), dtype=cp.int32)
    _MAXPOOL_FWD(_c(x), h, w, oh, ow, k, stride, out, arg)
    return out, arg


def maxpool_backward(dout, arg, x_shape, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.maxpool_backward`, in gather form."""
    h, w = x_shape[2], x_shape[3]
    oh, ow = dout.shape[2], dout.shape[3]
    dx = cp.empty(x_shape, dtype=dout.dtype)
    _MAXPOOL_BWD(_c(dout), _c(arg), h, w, oh, ow, k, stride, dx)
    return dx


def avgpool_forward(x, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.avgpool_forward`."""
    n, c, h, w = x.shape
    oh, ow = _pool_shape(h, w, k, stride)
    out = cp.empty((n, c, oh, ow), dtype=x.dtype)
    _AVGPOOL_FWD(_c(x), h, w, oh, ow, k, stride, out)
    return out


def avgpool_backward(dout, x_shape, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.avgpool_backward`, in gather form."""
    h, w = x_shape[2], x_shape[3]
    dx = cp.empty(x_shape, dtype=dout.dtype)
    _AVGPOOL_BWD(_c(dout), h, w, dout.shape[2], dout.shape[3], k, stride, dx)
    return dx


def relu_forward(x):
    """CUDA twin of :func:`nncore.kernels.reference.relu_forward`."""
    return cp.maximum(x, x.dtype.type(0))


def relu_backward(dout, out):
    """CUDA twin of :func:`nncore.kernels.reference.relu_backward` (a new array)."""
    return _RELU_BWD(dout, out)


def bias_relu_pool_forward(y, b, n, oh, ow, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.bias_relu_pool_forward` (composed of the kernels above)."""
    out, arg = maxpool_forward(relu_forward(rows_to_nchw(y, b, n, oh, ow)), k, stride)
    return out, cp.where(out > 0, arg, cp.int32(-1)).astype(cp.int32)


def bias_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.bias_relu_pool_backward`."""
    n, f = dout.shape[:2]
    passed = cp.where(arg >= 0, dout, dout.dtype.type(0))
    dconv = maxpool_backward(passed, cp.maximum(arg, 0), (n, f, oh, ow), k, stride)
    return nchw_to_rows(dconv)


def bias_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """CUDA twin of :func:`nncore.kernels.reference.bias_relu_pool_weight_grad` (through d2 and cuBLAS)."""
    d2, db = bias_relu_pool_backward(dout, arg, oh, ow, k, stride)
    return d2 @ cols.T, db


def conv2d_forward(x, w, b, stride, pad, training=True):
    """CUDA twin of :func:`nncore.kernels.reference.conv2d_forward`: im2col and one cuBLAS product."""
    n, f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)                                    # (C*KH*KW, N*OH*OW)
    out = rows_to_nchw(w.reshape(f, -1) @ cols, b, n, oh, ow)
    return out, (Conv2DContext(x.shape, cols, w, stride, pad) if training else None)


def _gemm_backward(ctx, d2, db, need_dx):
    """(dx or None, dw = d2 @ cols.T, db) from d2 = dL/dy (F, N*OH*OW)."""
    w = ctx.w
    dw = (d2 @ ctx.cols.T).reshape(w.shape)
    if not need_dx:
        return None, dw, db
    dcols = w.reshape(w.shape[0], -1).T @ d2                                 # (C*KH*KW, N*OH*OW)
    return col2im(dcols, ctx.x_shape, w.shape[2], w.shape[3], ctx.stride, ctx.pad), dw, db


def conv2d_backward(ctx, dout, need_dx):
    """CUDA twin of :func:`nncore.kernels.reference.conv2d_backward`: (dx or None, dw, db)."""
    d2, db = nchw_to_rows(dout)
    return _gemm_backward(ctx, d2, db, need_dx)


def conv_relu_pool_forward(x, w, b, stride, pad, pool, pool_stride, training=True, need_dx=True):
    """CUDA twin of :func:`nncore.kernels.reference.conv_relu_pool_forward`: im2col, cuBLAS, one fused pass."""
    n, f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)
    out, arg = bias_relu_pool_forward(w.reshape(f, -1) @ cols, b, n, oh, ow, pool, pool_stride)
    if not training:
        return out, None
    return out, ConvReLUPoolContext(x.shape, cols, w, stride, pad, oh, ow, pool, pool_stride, arg, need_dx)


def conv_relu_pool_backward(ctx, dout, need_dx):
    """CUDA twin of :func:`nncore.kernels.reference.conv_relu_pool_backward`: (dx or None, dw, db)."""
    if need_dx and not ctx.need_dx:
        raise UsageError("conv_relu_pool_backward: dx asked for, but the forward pass was told need_dx=False")
    d2, db = bias_relu_pool_backward(dout, ctx.arg, ctx.oh, ctx.ow, ctx.pool, ctx.pool_stride)
    return _gemm_backward(ctx, d2, db, need_dx)


# ----------------------------------------------------------------------------- the fused BatchNorm layers

#: after a ``train`` pass of :func:`conv_bn_relu_pool_forward`: the im2col ctx, xhat (F, N*OH*OW), and the rest
_ConvBNContext = namedtuple("_ConvBNContext", "conv xhat gamma inv_std arg oh ow pool pool_stride need_dx")
#: after a ``train`` pass of :func:`dense_bn_relu_dropout_forward`
_DenseBNContext = namedtuple("_DenseBNContext", "x w xhat gamma inv_std h mask need_dx")


def conv_bn_relu_pool_forward(x, w, gamma, beta, running_mean, running_var, eps, stride, pad, pool, pool_stride,
                              mode="train", need_dx=True):
    """CUDA twin of :func:`nncore.kernels.reference.conv_bn_relu_pool_forward`.

    ``train``: im2col and cuBLAS, BatchNorm on the (F, N*OH*OW) rows, then the fused bias-ReLU-pool
    pass with no bias; ``eval``/``infer``: BatchNorm folded into the weights, then
    :func:`conv_relu_pool_forward`.
    """
    check_mode(mode)
    if mode != "train":
        scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, running_mean, running_var, eps)
        out, inner = conv_relu_pool_forward(x, w * scale[:, None, None, None], shift, stride, pad, pool,
                                            pool_stride, mode == "eval", need_dx)
        return out, None, None, (FoldedContext(inner, w, scale, inv_std, running_mean) if inner is not None else None)
    n, f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)
    y = w.reshape(f, -1) @ cols                                              # (F, N*OH*OW)
    z, xhat, mean, var, inv_std = batchnorm_forward(y[None], gamma, beta, eps)
    out, arg = bias_relu_pool_forward(z[0], None, n, oh, ow, pool, pool_stride)
    return out, mean, var, _ConvBNContext(Conv2DContext(x.shape, cols, w, stride, pad), xhat[0], gamma, inv_std,
                                          arg, oh, ow, pool, pool_stride, need_dx)


def conv_bn_relu_pool_backward(ctx, dout, need_dx):
    """CUDA twin of :func:`nncore.kernels.reference.conv_bn_relu_pool_backward`: (dx or None, dw, dgamma, dbeta)."""
    check_need_dx(ctx.inner if isinstance(ctx, FoldedContext) else ctx, need_dx, "conv_bn_relu_pool_backward")
    if isinstance(ctx, FoldedContext):
        dx, dw_folded, db_folded = conv_relu_pool_backward(ctx.inner, dout, need_dx)
        return (dx,) + unfold_gradients(dw_folded, db_folded, ctx, 0)
    dz, _ = bias_relu_pool_backward(dout, ctx.arg, ctx.oh, ctx.ow, ctx.pool, ctx.pool_stride)   # (F, N*OH*OW)
    dy, dgamma, dbeta = batchnorm_backward(dz[None], ctx.xhat[None], ctx.gamma, ctx.inv_std)
    dx, dw, _ = _gemm_backward(ctx.conv, dy[0], None, need_dx)
    return dx, dw, dgamma, dbeta


def dense_bn_relu_dropout_forward(x, w, gamma, beta, running_mean, running_var, eps, keep, p, mode="train",
                                  need_dx=True):
    """CUDA twin of :func:`nncore.kernels.reference.dense_bn_relu_dropout_forward` (cuBLAS and array operations)."""
    check_mode(mode)
    if mode != "train":
        if keep is not None:
            raise UsageError("dense_bn_relu_dropout_forward: dropout runs in train mode only; pass keep=None")
        scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, running_mean, running_var, eps)
        w_folded = w * scale
        h = relu_forward(x @ w_folded + shift)
        ctx = FoldedDenseContext(x, w_folded, h, FoldedContext(None, w, scale, inv_std, running_mean), need_dx)
        return h, None, None, (ctx if mode == "eval" else None)
    z, xhat, mean, var, inv_std = batchnorm_forward((x @ w)[:, :, None], gamma, beta, eps)
    h = relu_forward(z[:, :, 0])
    mask = None if keep is None else dropout_mask(keep, p, x.dtype)
    return (h if mask is None else h * mask), mean, var, _DenseBNContext(x, w, xhat, gamma, inv_std, h, mask, need_dx)


def dense_bn_relu_dropout_backward(ctx, dout, need_dx):
    """CUDA twin of :func:`nncore.kernels.reference.dense_bn_relu_dropout_backward`: (dx or None, dw, dgamma, dbeta)."""
    check_need_dx(ctx, need_dx, "dense_bn_relu_dropout_backward")
    if isinstance(ctx, FoldedDenseContext):
        dz = relu_backward(dout, ctx.h)
        dw, dgamma, dbeta = unfold_gradients(ctx.x.T @ dz, dz.sum(axis=0), ctx.folded, 1)
        return (dz @ ctx.w_folded.T if need_dx else None), dw, dgamma, dbeta
    dz = relu_backward(dout if ctx.mask is None else dout * ctx.mask, ctx.h)
    dy, dgamma, dbeta = batchnorm_backward(dz[:, :, None], ctx.xhat, ctx.gamma, ctx.inv_std)
    dy = dy[:, :, 0]
    return (dy @ ctx.w.T if need_dx else None), ctx.x.T @ dy, dgamma, dbeta
