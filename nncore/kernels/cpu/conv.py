"""numba twins of :mod:`nncore.kernels.reference.conv`: im2col, col2im, the NCHW <-> rows moves, and the
convolution by the algorithm :mod:`.algorithms` chooses (Winograd or im2col)."""

from collections import namedtuple

import numpy as np
from numba import prange

from ... import threads
from ..reference.conv import Conv2DContext, conv_output_size
from ..reference.winograd import winograd_weights
from .algorithms import conv2d_algorithm, in_slices, inference_slice
from .jit import jit_inline, pjit
from .winograd import winograd_backward, winograd_forward


@jit_inline
def _valid_range(out_len, in_len, offset, stride):
    """Output indices o in [lo, hi) for which o*stride + offset lies inside [0, in_len)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = in_len - 1 - offset
    hi = 0 if last < 0 else min(out_len, last // stride + 1)
    return lo, max(lo, hi)


@pjit
def _im2col(x, kh, kw, stride, pad, oh, ow, cols):
    # General case. Each thread owns whole (c, n) input planes and the matching
    # 196-wide pieces of KH*KW rows of cols; planes go channel-major so that one
    # thread writes few rows of cols at a time (hundreds of interleaved write
    # streams thrash the TLB).
    n, c, h, w = x.shape
    for plane in prange(c * n):
        ci = plane // n
        ni = plane - ci * n
        for i in range(kh):
            y_lo, y_hi = _valid_range(oh, h, i - pad, stride)
            for j in range(kw):
                z_lo, z_hi = _valid_range(ow, w, j - pad, stride)
                dst = cols[(ci * kh + i) * kw + j]
                for y in range(oh):
                    q = (ni * oh + y) * ow
                    if y < y_lo or y >= y_hi:
                        for z in range(ow):
                            dst[q + z] = 0
                        continue
                    hy = y * stride + i - pad
                    for z in range(z_lo):
                        dst[q + z] = 0
                    for z in range(z_lo, z_hi):
                        dst[q + z] = x[ni, ci, hy, z * stride + j - pad]
                    for z in range(z_hi, ow):
                        dst[q + z] = 0


@pjit
def _im2col_same(x2, n, c, h, w, kh, kw, pad, cols):
    # Stride 1 and OH == H, OW == W ("same" padding): in flat per-plane indices,
    # kernel offset (i, j) is one shift ``off`` of the whole plane,
    # ``dst[t] = xs[t + off]``, a long contiguous copy that the compiler
    # vectorises (row-by-row copies of 14 pixels never reach the vector loop).
    # The shifted copy wraps around row edges for j != pad; those columns are
    # zeroed afterwards. x2: (N*C, H*W).
    p = h * w
    for plane in prange(c * n):
        ci = plane // n
        ni = plane - ci * n
        xs = x2[ni * c + ci]
        base = ni * p
        for i in range(kh):
            for j in range(kw):
                off = (i - pad) * w + (j - pad)
                lo = max(0, -off)
                hi = max(lo, min(p, p - off))
                dst = cols[(ci * kh + i) * kw + j, base:base + p]
                for t in range(lo):
                    dst[t] = 0
                src = xs[lo + off:hi + off]
                d = dst[lo:hi]
                for t in range(hi - lo):
                    d[t] = src[t]
                for t in range(hi, p):
                    dst[t] = 0
                for z in range(w):
                    if z + j - pad < 0 or z + j - pad >= w:
                        for y in range(h):
                            dst[y * w + z] = 0


def _is_same_stride1(h, w, kh, kw, stride, pad):
    return stride == 1 and h + 2 * pad - kh + 1 == h and w + 2 * pad - kw + 1 == w


def im2col(x, kh, kw, stride, pad):
    """numba twin of :func:`nncore.kernels.reference.im2col`: (N,C,H,W) -> (C*KH*KW, N*OH*OW)."""
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    if _is_same_stride1(h, w, kh, kw, stride, pad):
        _im2col_same(x.reshape(n * c, h * w), n, c, h, w, kh, kw, pad, cols)
    else:
        _im2col(x, kh, kw, stride, pad, oh, ow, cols)
    return cols


@pjit
def _col2im(cols, kh, kw, stride, pad, oh, ow, dx):
    # General case: each thread owns whole output planes and adds the KH*KW
    # shifted (strided) pieces of cols into them in (i, j) order.
    n, c, h, w = dx.shape
    for plane in prange(c * n):
        ci = plane // n
        ni = plane - ci * n
        for y in range(h):
            for z in range(w):
                dx[ni, ci, y, z] = 0
        for i in range(kh):
            y_lo, y_hi = _valid_range(oh, h, i - pad, stride)
            for j in range(kw):
                z_lo, z_hi = _valid_range(ow, w, j - pad, stride)
                src = cols[(ci * kh + i) * kw + j]
                for y in range(y_lo, y_hi):
                    hy = y * stride + i - pad
                    q = (ni * oh + y) * ow
                    for z in range(z_lo, z_hi):
                        dx[ni, ci, hy, z * stride + j - pad] += src[q + z]


@pjit
def _col2im_same(cols, n, c, h, w, kh, kw, pad, dx2):
    # Adjoint of _im2col_same: ``acc[t + off] += src[t]`` over one contiguous
    # range per kernel offset. Entries that wrapped around a row edge must not
    # be added; multiplying by a 0/1 column mask keeps the loop branch-free (and
    # vectorised) and is exact for finite values (x*1 == x, acc + 0 == acc).
    p = h * w
    keep = np.zeros((kw, p), dtype=cols.dtype)
    for j in range(kw):
        for t in range(p):
            z = t % w + j - pad
            keep[j, t] = 1 if (z >= 0 and z < w) else 0
    for plane in prange(c * n):
        ci = plane // n
        ni = plane - ci * n
        acc = dx2[ni * c + ci]
        for t in range(p):
            acc[t] = 0
        base = ni * p
        for i in range(kh):
            for j in range(kw):
                off = (i - pad) * w + (j - pad)      # cols index t lands on dx index t + off
                lo = max(0, -off)
                hi = max(lo, min(p, p - off))
                src = cols[(ci * kh + i) * kw + j, base + lo:base + hi]
                a = acc[lo + off:hi + off]
                if j == pad:                         # no shift along the row: nothing wraps
                    for t in range(hi - lo):
                        a[t] += src[t]
                else:
                    m = keep[j, lo:hi]
                    for t in range(hi - lo):
                        a[t] += src[t] * m[t]


def col2im(cols, x_shape, kh, kw, stride, pad):
    """numba twin of :func:`nncore.kernels.reference.col2im`: (C*KH*KW, N*OH*OW) -> x_shape."""
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    dx = np.empty(x_shape, dtype=cols.dtype)
    cols = np.ascontiguousarray(cols)
    if _is_same_stride1(h, w, kh, kw, stride, pad):
        _col2im_same(cols, n, c, h, w, kh, kw, pad, dx.reshape(n * c, h * w))
    else:
        _col2im(cols, kh, kw, stride, pad, oh, ow, dx)
    return dx


@pjit
def _rows_to_nchw(y, b, out):
    n, f, p = out.shape
    for ni in prange(n):
        for fi in range(f):
            bias = b[fi]
            src = y[fi, ni * p:(ni + 1) * p]
            dst = out[ni, fi]
            for k in range(p):
                dst[k] = src[k] + bias


def rows_to_nchw(y, b, n, oh, ow):
    """numba twin of :func:`nncore.kernels.reference.rows_to_nchw`."""
    f = y.shape[0]
    if b is None:
        b = np.zeros(f, dtype=y.dtype)
    out = np.empty((n, f, oh, ow), dtype=y.dtype)
    _rows_to_nchw(np.ascontiguousarray(y), b, out.reshape(n, f, oh * ow))
    return out


@pjit
def _nchw_to_rows(dout, d2, db):
    n, f, p = dout.shape
    for fi in prange(f):
        acc = 0.0
        for ni in range(n):
            src = dout[ni, fi]
            dst = d2[fi, ni * p:(ni + 1) * p]
            for k in range(p):
                v = src[k]
                dst[k] = v
                acc += v
        db[fi] = acc


def nchw_to_rows(dout):
    """numba twin of :func:`nncore.kernels.reference.nchw_to_rows`: returns (d2, db)."""
    n, f, oh, ow = dout.shape
    d2 = np.empty((f, n * oh * ow), dtype=dout.dtype)
    db = np.empty(f, dtype=dout.dtype)
    _nchw_to_rows(np.ascontiguousarray(dout).reshape(n, f, oh * ow), d2, db)
    return d2, db


# ----------------------------------------------------------------------------- the convolution

#: what the backward pass needs after the Winograd path: the input tiles v, the filter
#: transform u, and for the fused layer the pooling's arg and the need_dx promise
WinogradContext = namedtuple("WinogradContext", "x_shape v u arg need_dx")


def conv2d_forward(x, w, b, stride, pad, training=True, algorithm="auto"):
    """numba twin of :func:`nncore.kernels.reference.conv2d_forward`: the same (out, ctx).

    ``algorithm`` (see :mod:`.algorithms`): ``"auto"`` computes a 3x3, stride-1,
    padding-1 convolution of at least ``WINOGRAD_MIN_CHANNELS`` channels by
    Winograd F(4x4, 3x3) (``winograd_forward``: tiles, 36 batched products,
    output transform and bias, a few images at a time), any other by im2col and
    one GEMM; ``"im2col"`` or ``"winograd"`` ask for one (a UsageError when it
    does not fit). At inference a large batch runs in cache-sized slices.
    """
    chosen = conv2d_algorithm(x.shape, w.shape, stride, pad, algorithm)
    step = inference_slice(x.shape, w.shape, stride, pad, x.dtype.itemsize)
    if not training and x.shape[0] > step:
        return in_slices(conv2d_forward, x, step, w, b, stride, pad, False, chosen)
    if chosen == "winograd":
        u = winograd_weights(w)                                              # (36, F, C)
        out, _, v = winograd_forward(x, u, b, False)
        return out, (WinogradContext(x.shape, v, u, None, True) if training else None)
    y, cols, oh, ow = gemm_forward(x, w, stride, pad)
    out = rows_to_nchw(y, b, x.shape[0], oh, ow)
    return out, (Conv2DContext(x.shape, cols, w, stride, pad) if training else None)


def conv2d_backward(ctx, dout, need_dx):
    """numba twin of :func:`nncore.kernels.reference.conv2d_backward`: (dx or None, dw, db), by the forward's path.

    Winograd: ``winograd_backward`` turns dout into the products' gradient z,
    takes dW from ``z.T @ V`` and dx from ``z @ U`` (the input transform transposed).
    """
    if isinstance(ctx, WinogradContext):
        dw, db, dx = winograd_backward(dout, None, ctx.v, ctx.u, ctx.x_shape, need_dx)
        return dx, dw, db
    d2, db = nchw_to_rows(dout)                                              # (F, N*OH*OW), (F,)
    return gemm_backward(ctx, d2, db, need_dx)


def gemm_forward(x, w, stride, pad):
    """The im2col path's product: (y, cols, OH, OW), y = w.reshape(F, -1) @ cols of shape (F, N*OH*OW).

    cols = im2col(x) has shape (C*KH*KW, N*OH*OW); the product is split over nncore's threads.
    """
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)
    return threads.matmul(w.reshape(w.shape[0], -1), cols), cols, oh, ow


def gemm_backward(ctx, d2, db, need_dx):
    """The im2col path's backward from d2 = dL/dy (F, N*OH*OW): (dx or None, dw = d2 @ cols.T, db).

    ``ctx`` has the fields of the reference's ``Conv2DContext`` (x_shape, cols, w, stride, pad).
    """
    w = ctx.w
    dw = threads.matmul(d2, ctx.cols.T).reshape(w.shape)
    if not need_dx:
        return None, dw, db
    dcols = threads.matmul(w.reshape(w.shape[0], -1).T, d2)                 # (C*KH*KW, N*OH*OW)
    return col2im(dcols, ctx.x_shape, w.shape[2], w.shape[3], ctx.stride, ctx.pad), dw, db
