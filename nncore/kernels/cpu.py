"""Fast CPU kernels, compiled by numba. Same names and results as :mod:`.reference`.

Each kernel is a loop nest that numba compiles to machine code
(``cache=True`` stores the compiled code on disk, so only the first run of a
fresh install pays for compilation). ``prange`` splits the outermost loop over
the threads that :mod:`nncore.threads` configured; each thread owns whole
output planes, so no two threads ever write the same element and no atomics
or ``np.add.at`` are needed.

Read :mod:`nncore.kernels.reference` first: it states the layouts and math.

Average pooling is not on any shipped model's path, so its CPU twin is the
vectorised NumPy reference itself (re-exported below), as are the Winograd
filter transforms, which touch only the small weight arrays; every other
kernel here is compiled.
"""

import math

import numba
import numpy as np
from numba import prange

from .. import threads
from .reference import (avgpool_backward, avgpool_forward, conv2d_naive, conv_output_size,  # noqa: F401
                        winograd_tile_counts, winograd_weight_grad, winograd_weights)
from .reference import relu_backward as relu_backward_small, relu_forward as relu_forward_small

threads.configure()

#: ConvReLUPool computes a thin first layer (3x3, stride 1, C*9 <= 32 rows, 2x2 pool)
#: with :func:`conv3x3_relu_pool2_forward` instead of im2col and a GEMM (see that layer)
DIRECT_FIRST_LAYER = True

#: Conv2D and ConvReLUPool compute a 3x3, stride-1, padding-1 convolution (ConvReLUPool: of even-sized
#: images) by Winograd F(4x4, 3x3) (the functions at the end) instead of im2col and a GEMM
WINOGRAD = True

_jit = numba.njit(cache=True, nogil=True)
_pjit = numba.njit(cache=True, nogil=True, parallel=True)


# ----------------------------------------------------------------------------- convolution

@_jit
def _valid_range(out_len, in_len, offset, stride):
    """Output indices o in [lo, hi) for which o*stride + offset lies inside [0, in_len)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = in_len - 1 - offset
    hi = 0 if last < 0 else min(out_len, last // stride + 1)
    return lo, max(lo, hi)


@_jit
def _max4(v0, v1, v2, v3):
    """(max, index of the first maximum) of one 2x2 window read row by row: ties go to the earlier entry."""
    best, where = v0, 0
    if v1 > best:
        best, where = v1, 1
    if v2 > best:
        best, where = v2, 2
    if v3 > best:
        best, where = v3, 3
    return best, where


@_jit
def _store_relu(out, arg, ni, fi, py, px, v, where):
    """Write one pooled output of a fused conv-ReLU-pool: v and its window offset, or 0 and -1 where
    the ReLU clamps v (no gradient flows back through that window)."""
    if v > 0:
        out[ni, fi, py, px] = v
        arg[ni, fi, py, px] = where
    else:
        out[ni, fi, py, px] = 0
        arg[ni, fi, py, px] = -1


@_pjit
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


@_pjit
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


@_pjit
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


@_pjit
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


@_pjit
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


@_pjit
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


# ----------------------------------------------------------------------------- pooling

@_pjit
def _maxpool_forward(x, k, stride, out, arg):
    n, c, oh, ow = out.shape
    for plane in prange(n * c):
        ni = plane // c
        ci = plane % c
        for y in range(oh):
            for z in range(ow):
                best = x[ni, ci, y * stride, z * stride]
                where = 0
                for i in range(k):
                    for j in range(k):
                        v = x[ni, ci, y * stride + i, z * stride + j]
                        if v > best:  # strict: the first maximum wins ties
                            best = v
                            where = i * k + j
                out[ni, ci, y, z] = best
                arg[ni, ci, y, z] = where


@_pjit
def _maxpool2_forward(x3, out3, arg3):
    # 2x2 windows, stride 2: the four candidates of each window spelled out.
    # x3: (N*C, H, W); out3, arg3: (N*C, OH, OW).
    planes, oh, ow = out3.shape
    for plane in prange(planes):
        xs = x3[plane]
        for y in range(oh):
            r0 = xs[2 * y]
            r1 = xs[2 * y + 1]
            o = out3[plane, y]
            a = arg3[plane, y]
            for z in range(ow):
                o[z], a[z] = _max4(r0[2 * z], r0[2 * z + 1], r1[2 * z], r1[2 * z + 1])


def maxpool_forward(x, k, stride):
    """numba twin of :func:`nncore.kernels.reference.maxpool_forward`: returns (out, arg)."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    arg = np.empty((n, c, oh, ow), dtype=np.int32)
    x = np.ascontiguousarray(x)
    if k == 2 and stride == 2:
        _maxpool2_forward(x.reshape(n * c, h, w), out.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow))
    else:
        _maxpool_forward(x, k, stride, out, arg)
    return out, arg


@_pjit
def _maxpool_backward(dout, arg, k, stride, dx):
    n, c, oh, ow = dout.shape
    h, w = dx.shape[2], dx.shape[3]
    for plane in prange(n * c):
        ni = plane // c
        ci = plane % c
        for y in range(h):
            for z in range(w):
                dx[ni, ci, y, z] = 0
        for y in range(oh):
            for z in range(ow):
                a = arg[ni, ci, y, z]
                dx[ni, ci, y * stride + a // k, z * stride + a % k] += dout[ni, ci, y, z]


@_pjit
def _maxpool2_backward(dout3, arg3, dx3):
    # 2x2 windows, stride 2 tile the input without overlap, so every input
    # pixel of a window is written exactly once (dout or 0): no zero-fill pass.
    planes, oh, ow = dout3.shape
    h, w = dx3.shape[1], dx3.shape[2]
    for plane in prange(planes):
        for y in range(oh):
            d = dout3[plane, y]
            a = arg3[plane, y]
            r0 = dx3[plane, 2 * y]
            r1 = dx3[plane, 2 * y + 1]
            for z in range(ow):
                g = d[z]
                q = a[z]
                r0[2 * z] = g if q == 0 else 0
                r0[2 * z + 1] = g if q == 1 else 0
                r1[2 * z] = g if q == 2 else 0
                r1[2 * z + 1] = g if q == 3 else 0
            if w > 2 * ow:                      # odd width: last column is in no window
                r0[w - 1] = 0
                r1[w - 1] = 0
        if h > 2 * oh:                          # odd height: last row is in no window
            for z in range(w):
                dx3[plane, h - 1, z] = 0


def maxpool_backward(dout, arg, x_shape, k, stride):
    """numba twin of :func:`nncore.kernels.reference.maxpool_backward`."""
    n, c, h, w = x_shape
    dx = np.empty(x_shape, dtype=dout.dtype)
    dout, arg = np.ascontiguousarray(dout), np.ascontiguousarray(arg)
    if k == 2 and stride == 2:
        oh, ow = dout.shape[2], dout.shape[3]
        _maxpool2_backward(dout.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow), dx.reshape(n * c, h, w))
    else:
        _maxpool_backward(dout, arg, k, stride, dx)
    return dx


# ----------------------------------------------------------------------------- activations

#: elementwise kernels on fewer elements than this take NumPy's loop: starting numba's parallel
#: loop costs about 0.1 ms, NumPy needs 10-20 us for a dense layer's (128, 128) activations
_PARALLEL_MIN_SIZE = 1 << 18


@_pjit
def _relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v   # NaN stays NaN, as in np.maximum


def relu_forward(x):
    """numba twin of :func:`nncore.kernels.reference.relu_forward`."""
    if x.size < _PARALLEL_MIN_SIZE:
        return relu_forward_small(x)
    out = np.empty_like(x)
    _relu_forward(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


@_pjit
def _relu_backward(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if out[i] > 0 else 0


def relu_backward(dout, out):
    """numba twin of :func:`nncore.kernels.reference.relu_backward` (returns a new array)."""
    if dout.size < _PARALLEL_MIN_SIZE:
        return relu_backward_small(dout, out)
    dx = np.empty_like(dout)
    _relu_backward(np.ascontiguousarray(dout).reshape(-1), np.ascontiguousarray(out).reshape(-1), dx.reshape(-1))
    return dx


# ----------------------------------------------------------------------------- fused conv -> ReLU -> max-pool

@_pjit
def _conv_relu_pool_forward(y, b, n, oh, ow, k, stride, out, arg):
    f = y.shape[0]
    ph, pw = out.shape[2], out.shape[3]
    p = oh * ow
    for plane in prange(n * f):  # fi outer: reads stream along each row of y
        fi = plane // n
        ni = plane % n
        base = ni * p
        bias = b[fi]
        for py in range(ph):
            for px in range(pw):
                first = base + (py * stride) * ow + px * stride
                best = y[fi, first]
                where = 0
                for i in range(k):
                    row = base + (py * stride + i) * ow + px * stride
                    for j in range(k):
                        v = y[fi, row + j]
                        if v > best:  # strict: the first maximum wins ties, as in maxpool_forward
                            best = v
                            where = i * k + j
                # rounding is monotone: max(y) + b == max(y + b)
                _store_relu(out, arg, ni, fi, py, px, best + bias, where)


@_pjit
def _conv_relu_pool2_forward(y, b, n, oh, ow, out, arg):
    """The 2x2, stride-2 case unrolled: four loads, three compares, no inner loops."""
    f = y.shape[0]
    ph, pw = out.shape[2], out.shape[3]
    p = oh * ow
    for plane in prange(n * f):  # walk y row by row (fi outer), so reads stream through memory
        fi = plane // n
        ni = plane % n
        bias = b[fi]
        for py in range(ph):
            r0 = ni * p + 2 * py * ow
            r1 = r0 + ow
            for px in range(pw):
                best, where = _max4(y[fi, r0 + 2 * px], y[fi, r0 + 2 * px + 1],
                                    y[fi, r1 + 2 * px], y[fi, r1 + 2 * px + 1])
                _store_relu(out, arg, ni, fi, py, px, best + bias, where)


def conv_relu_pool_forward(y, b, n, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.conv_relu_pool_forward`.

    One pass over the GEMM output: the full-size conv and ReLU outputs are never written.
    """
    f = y.shape[0]
    if b is None:
        b = np.zeros(f, dtype=y.dtype)
    ph, pw = (oh - k) // stride + 1, (ow - k) // stride + 1
    out = np.empty((n, f, ph, pw), dtype=y.dtype)
    arg = np.empty((n, f, ph, pw), dtype=np.int32)
    y = np.ascontiguousarray(y)
    if k == 2 and stride == 2:
        _conv_relu_pool2_forward(y, b, n, oh, ow, out, arg)
    else:
        _conv_relu_pool_forward(y, b, n, oh, ow, k, stride, out, arg)
    return out, arg


@_pjit
def _conv_relu_pool_backward(dout, arg, oh, ow, k, stride, d2, db):
    n, f, ph, pw = dout.shape
    p = oh * ow
    for fi in prange(f):
        acc = 0.0
        for q in range(n * p):
            d2[fi, q] = 0
        for ni in range(n):
            base = ni * p
            for py in range(ph):
                for px in range(pw):
                    a = arg[ni, fi, py, px]
                    if a >= 0:
                        g = dout[ni, fi, py, px]
                        d2[fi, base + (py * stride + a // k) * ow + px * stride + a % k] += g
                        acc += g
        db[fi] = acc


def conv_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.conv_relu_pool_backward`: returns (d2, db)."""
    n, f = dout.shape[:2]
    d2 = np.empty((f, n * oh * ow), dtype=dout.dtype)
    db = np.empty(f, dtype=dout.dtype)
    _conv_relu_pool_backward(np.ascontiguousarray(dout), np.ascontiguousarray(arg), oh, ow, k, stride, d2, db)
    return d2, db


# ----------------------------------------------------------------------------- batch normalisation

@_pjit
def _batchnorm_forward(x3, gamma, beta, eps, out, xhat, mean, var, inv_std):
    n, c, p = x3.shape
    m = n * p
    for ci in prange(c):
        s = 0.0
        for ni in range(n):
            for k in range(p):
                s += x3[ni, ci, k]
        mu = s / m
        v = 0.0
        for ni in range(n):
            for k in range(p):
                d = x3[ni, ci, k] - mu
                v += d * d
        v /= m
        mean[ci] = mu
        var[ci] = v
        inv_std[ci] = 1.0 / np.sqrt(v + eps)
        mu_t, inv_t, g, b = mean[ci], inv_std[ci], gamma[ci], beta[ci]  # read back in x's dtype
        for ni in range(n):
            for k in range(p):
                h = (x3[ni, ci, k] - mu_t) * inv_t
                xhat[ni, ci, k] = h
                out[ni, ci, k] = g * h + b


def batchnorm_forward(x3, gamma, beta, eps):
    """numba twin of :func:`nncore.kernels.reference.batchnorm_forward` (statistics summed in float64)."""
    x3 = np.ascontiguousarray(x3)
    c = x3.shape[1]
    out, xhat = np.empty_like(x3), np.empty_like(x3)
    mean, var, inv_std = (np.empty(c, dtype=x3.dtype) for _ in range(3))
    _batchnorm_forward(x3, gamma, beta, float(eps), out, xhat, mean, var, inv_std)
    return out, xhat, mean, var, inv_std


@_pjit
def _batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx, m_t, dx, dgamma, dbeta):
    n, c, p = dout3.shape
    for ci in prange(c):
        sb = 0.0
        sg = 0.0
        for ni in range(n):
            for k in range(p):
                d = dout3[ni, ci, k]
                sb += d
                sg += d * xhat[ni, ci, k]
        dbeta[ci] = sb
        dgamma[ci] = sg
        if need_dx:
            kk = gamma[ci] * inv_std[ci]
            mb = dbeta[ci] / m_t[0]  # all in dout's dtype: m_t holds M in that dtype
            mg = dgamma[ci] / m_t[0]
            for ni in range(n):
                for k in range(p):
                    dx[ni, ci, k] = kk * (dout3[ni, ci, k] - mb - xhat[ni, ci, k] * mg)


def batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx=True):
    """numba twin of :func:`nncore.kernels.reference.batchnorm_backward`: (dx or None, dgamma, dbeta)."""
    dout3 = np.ascontiguousarray(dout3)
    c = dout3.shape[1]
    dx = np.empty_like(dout3) if need_dx else np.empty((0, c, 0), dtype=dout3.dtype)
    dgamma, dbeta = np.empty(c, dtype=dout3.dtype), np.empty(c, dtype=dout3.dtype)
    m_t = np.array([dout3.shape[0] * dout3.shape[2]], dtype=dout3.dtype)
    _batchnorm_backward(dout3, np.ascontiguousarray(xhat), gamma, inv_std, need_dx, m_t, dx, dgamma, dbeta)
    return (dx if need_dx else None), dgamma, dbeta


@_pjit
def _conv_relu_pool_weight_grad(dout, arg, cols, offsets, oh, ow, stride, chunks, acc, acc_b):
    n, f, ph, pw = dout.shape
    r = cols.shape[0]
    p = oh * ow
    for c in prange(chunks):  # a slice of the images per task: its columns of cols stay in cache
        for ni in range(c * n // chunks, (c + 1) * n // chunks):
            for fi in range(f):
                acc_f = acc[c, fi]
                total = 0.0
                for py in range(ph):
                    row = ni * p + py * stride * ow
                    for px in range(pw):
                        a = arg[ni, fi, py, px]
                        if a >= 0:
                            g = dout[ni, fi, py, px]
                            q = row + px * stride + offsets[a]
                            total += g
                            for ri in range(r):
                                acc_f[ri] += g * cols[ri, q]
                acc_b[c, fi] += total


def conv_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.conv_relu_pool_weight_grad`.

    Reads only the window maxima: no (F, N*OH*OW) gradient is written and no GEMM runs.
    Worth it when C*KH*KW is small (a first layer); sums are kept in float64.
    """
    n, f = dout.shape[:2]
    chunks = max(1, min(n, 4 * threads.get_num_threads()))
    acc = np.zeros((chunks, f, cols.shape[0]))      # float64 partial sums, one slab per task
    acc_b = np.zeros((chunks, f))
    offsets = np.array([(a // k) * ow + a % k for a in range(k * k)], dtype=np.int64)  # window offset -> column shift
    _conv_relu_pool_weight_grad(np.ascontiguousarray(dout), np.ascontiguousarray(arg), np.ascontiguousarray(cols),
                                offsets, oh, ow, stride, chunks, acc, acc_b)
    return acc.sum(axis=0).astype(dout.dtype), acc_b.sum(axis=0).astype(dout.dtype)


# ----------------------------------------------------------------------------- direct first-layer convolution

# These two are serial (nogil) loops run on slices of the batch by threads.run_slices:
# as parallel=True loops they took 2-3 s longer to compile on a cold cache.

@_jit
def _conv3x3_relu_pool2_forward(xpad, wt, b, out, arg):
    n, c = xpad.shape[0], xpad.shape[1]
    f = wt.shape[1]
    ph, pw = out.shape[2], out.shape[3]
    acc = np.empty((4, f), dtype=out.dtype)     # one pooling window's four conv outputs, all filters
    for ni in range(n):
        for py in range(ph):
            r = 2 * py
            for px in range(pw):
                q = 2 * px
                for k in range(4):
                    for fi in range(f):
                        acc[k, fi] = b[fi]
                for ci in range(c):
                    x = xpad[ni, ci]        # the 4x4 pixels under the window's four 3x3 fields
                    p00, p01, p02, p03 = x[r, q], x[r, q + 1], x[r, q + 2], x[r, q + 3]
                    p10, p11, p12, p13 = x[r + 1, q], x[r + 1, q + 1], x[r + 1, q + 2], x[r + 1, q + 3]
                    p20, p21, p22, p23 = x[r + 2, q], x[r + 2, q + 1], x[r + 2, q + 2], x[r + 2, q + 3]
                    p30, p31, p32, p33 = x[r + 3, q], x[r + 3, q + 1], x[r + 3, q + 2], x[r + 3, q + 3]
                    k = 9 * ci
                    for fi in range(f):     # filters innermost: this loop vectorises, the pixels are broadcast
                        w0, w1, w2 = wt[k, fi], wt[k + 1, fi], wt[k + 2, fi]
                        w3, w4, w5 = wt[k + 3, fi], wt[k + 4, fi], wt[k + 5, fi]
                        w6, w7, w8 = wt[k + 6, fi], wt[k + 7, fi], wt[k + 8, fi]
                        acc[0, fi] += (w0 * p00 + w1 * p01 + w2 * p02 + w3 * p10 + w4 * p11 + w5 * p12
                                       + w6 * p20 + w7 * p21 + w8 * p22)
                        acc[1, fi] += (w0 * p01 + w1 * p02 + w2 * p03 + w3 * p11 + w4 * p12 + w5 * p13
                                       + w6 * p21 + w7 * p22 + w8 * p23)
                        acc[2, fi] += (w0 * p10 + w1 * p11 + w2 * p12 + w3 * p20 + w4 * p21 + w5 * p22
                                       + w6 * p30 + w7 * p31 + w8 * p32)
                        acc[3, fi] += (w0 * p11 + w1 * p12 + w2 * p13 + w3 * p21 + w4 * p22 + w5 * p23
                                       + w6 * p31 + w7 * p32 + w8 * p33)
                for fi in range(f):
                    best, where = _max4(acc[0, fi], acc[1, fi], acc[2, fi], acc[3, fi])
                    _store_relu(out, arg, ni, fi, py, px, best, where)


def _pad(x, pad):
    if pad == 0:
        return np.ascontiguousarray(x)
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def conv3x3_relu_pool2_forward(x, w, b, pad):
    """numba twin of :func:`nncore.kernels.reference.conv3x3_relu_pool2_forward`.

    Computes one pooling window at a time, its four conv outputs for all
    filters at once (the loop over filters vectorises; the weights are read
    as a (C*9, F) matrix), and pools them straight away: no column matrix,
    no GEMM, no full-size conv output.
    """
    n, f = x.shape[0], w.shape[0]
    oh, ow = conv_output_size(x.shape[2], 3, 1, pad), conv_output_size(x.shape[3], 3, 1, pad)
    if b is None:
        b = np.zeros(f, dtype=x.dtype)
    out = np.empty((n, f, oh // 2, ow // 2), dtype=x.dtype)
    arg = np.empty((n, f, oh // 2, ow // 2), dtype=np.int32)
    xpad, wt = _pad(x, pad), np.ascontiguousarray(w.reshape(f, -1).T)   # wt (C*9, F)
    threads.run_slices(n, lambda i, lo, hi: _conv3x3_relu_pool2_forward(xpad[lo:hi], wt, b, out[lo:hi], arg[lo:hi]))
    return out, arg


@_jit
def _conv3x3_relu_pool2_weight_grad(dout, arg, xpad, acc, acc_b):
    n, f, ph, pw = dout.shape
    c = xpad.shape[1]
    zero = dout.dtype.type(0)
    for ni in range(n):
        for fi in range(f):
            for ci in range(c):
                x = xpad[ni, ci]
                # the nine taps' sums for this image, filter and channel stay in registers, in the
                # input's precision (at most PH*PW terms); acc adds the images up in float64
                s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = total = zero
                for py in range(ph):
                    for px in range(pw):
                        a = arg[ni, fi, py, px]
                        if a >= 0:
                            g = dout[ni, fi, py, px]
                            total += g
                            oy = 2 * py + (a >> 1)   # the window's arg-max, in conv output coordinates
                            ox = 2 * px + (a & 1)
                            s00 += g * x[oy, ox]
                            s01 += g * x[oy, ox + 1]
                            s02 += g * x[oy, ox + 2]
                            s10 += g * x[oy + 1, ox]
                            s11 += g * x[oy + 1, ox + 1]
                            s12 += g * x[oy + 1, ox + 2]
                            s20 += g * x[oy + 2, ox]
                            s21 += g * x[oy + 2, ox + 1]
                            s22 += g * x[oy + 2, ox + 2]
                k = 9 * ci
                acc[fi, k] += s00
                acc[fi, k + 1] += s01
                acc[fi, k + 2] += s02
                acc[fi, k + 3] += s10
                acc[fi, k + 4] += s11
                acc[fi, k + 5] += s12
                acc[fi, k + 6] += s20
                acc[fi, k + 7] += s21
                acc[fi, k + 8] += s22
                if ci == 0:
                    acc_b[fi] += total


def conv3x3_relu_pool2_weight_grad(dout, arg, x, pad):
    """numba twin of :func:`nncore.kernels.reference.conv3x3_relu_pool2_weight_grad`.

    Each thread sums a slice of the images into its own float64 slab; the slabs are added at the end.
    """
    n, f = dout.shape[:2]
    parts = threads.num_slices(n)
    acc = np.zeros((parts, f, x.shape[1] * 9))
    acc_b = np.zeros((parts, f))
    dout, arg, xpad = np.ascontiguousarray(dout), np.ascontiguousarray(arg), _pad(x, pad)
    threads.run_slices(n, lambda i, lo, hi: _conv3x3_relu_pool2_weight_grad(dout[lo:hi], arg[lo:hi], xpad[lo:hi],
                                                                            acc[i], acc_b[i]))
    return acc.sum(axis=0).astype(dout.dtype), acc_b.sum(axis=0).astype(dout.dtype)


# ----------------------------------------------------------------------------- Winograd F(4x4, 3x3)

# Serial nogil loops over a slice of the images, run on nncore's threads by threads.run_slices.
# Tile (n, ty, tx) is row t = (n*TH + ty)*TW + tx of the (36, T, channels) arrays; a slice
# starting at image lo starts at row t0 = lo*TH*TW.
#
# Two rules make these loops fast:
# - Each transform runs in two passes over a (rows, channels) scratch array, columns then rows,
#   with the channel loop innermost and straight-line code inside it, so LLVM vectorises it
#   across channels. One pass per (tile, channel) in scalar code was 3-4 times slower.
# - The 36 planes of a (36, T, channels) array must not start a multiple of 4 KiB apart: the
#   36 values of one tile then fall into one cache set, which holds 8 lines, and every tile
#   misses. ``_stack`` adds a few unused rows to break that pattern (relu-pool and the input
#   gradient's transform 2-3 times faster); the kernels never read those rows.
#
# Constants are float32 (_2, _4, _5, _8): in numba an integer literal times a float32 is a float64.

_2, _4, _5, _8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@_jit
def _bt(d0, d1, d2, d3, d4, d5):
    """BT times a 6-vector: one column (or row) of the input transform."""
    a, b = d4 - _4 * d2, d3 - _4 * d1
    c, e = d4 - d2, _2 * (d3 - d1)
    return _4 * d0 - _5 * d2 + d4, a + b, a - b, c + e, c - e, _4 * d1 - _5 * d3 + d5


@_jit
def _at(m0, m1, m2, m3, m4, m5):
    """AT times a 6-vector: one column (or row) of the output transform, 4 values."""
    a, b, c, d = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + a + c, b + _2 * d, a + _4 * c, b + _8 * d + m5


@_jit
def _a(y0, y1, y2, y3):
    """A (= AT transposed) times a 4-vector: 6 values."""
    a, b = y0 + y2, y1 + y3
    c, d = y0 + _4 * y2, _2 * y1 + _8 * y3
    return y0, a + b, a - b, c + d, c - d, y3


@_jit
def _b(v0, v1, v2, v3, v4, v5):
    """B (= BT transposed) times a 6-vector: one column (or row) of the input transform's adjoint."""
    a, b = v2 - v1, v4 - v3
    return (_4 * v0, _4 * a + _2 * b + _4 * v5, -_5 * v0 - _4 * (v1 + v2) - (v3 + v4), -a - _2 * b - _5 * v5,
            v0 + v1 + v2 + v3 + v4, v5)


def _stack(rows, width, dtype):
    """An uninitialised C-contiguous (36, rows + e, width) array whose planes start as far from a
    multiple of 4 KiB apart as extra rows can put them (see above); callers use its first ``rows`` rows.

    The plane stride modulo 4 KiB repeats every 4096 / gcd(row bytes, 4096) extra rows, so only that
    many are tried. A stride whose largest power-of-2 factor is at most 512 bytes spreads the 36
    planes over at least 8 cache sets; rows whose size is a multiple of 1 KiB never reach that and take
    the best there is.
    """
    row = width * np.dtype(dtype).itemsize
    best_e, best = 0, 4096
    for e in range(4096 // math.gcd(row, 4096)):
        aligned = math.gcd(((rows + e) * row) % 4096, 4096)    # gcd(0, 4096) = 4096: the worst
        if aligned < best:
            best_e, best = e, aligned
        if best <= 512:
            break
    return np.empty((36, rows + best_e, width), dtype=dtype)


@_jit
def _image_tiles(buf, t0, v, e, tile):
    """Input transform of one zero-padded image buf (4TH+2, 4TW+2, C), channels last, into rows
    t0 ... t0 + TH*TW - 1 of v (36, T, C); e and tile are (36, C) scratch arrays. Each tile is
    finished in ``tile`` and copied to v's 36 rows one contiguous run at a time."""
    th, tw, c = (buf.shape[0] - 2) // 4, (buf.shape[1] - 2) // 4, buf.shape[2]
    for ty in range(th):
        r = 4 * ty
        for tx in range(tw):
            q = 4 * tx
            for j in range(6):          # BT d, column by column: e[6i + j] = (BT d)[i, j]
                for ci in range(c):
                    a0, a1, a2, a3, a4, a5 = _bt(buf[r, q + j, ci], buf[r + 1, q + j, ci], buf[r + 2, q + j, ci],
                                                 buf[r + 3, q + j, ci], buf[r + 4, q + j, ci], buf[r + 5, q + j, ci])
                    e[j, ci], e[6 + j, ci], e[12 + j, ci] = a0, a1, a2
                    e[18 + j, ci], e[24 + j, ci], e[30 + j, ci] = a3, a4, a5
            for i in range(6):          # ... times B, row by row
                for ci in range(c):
                    a0, a1, a2, a3, a4, a5 = _bt(e[6 * i, ci], e[6 * i + 1, ci], e[6 * i + 2, ci], e[6 * i + 3, ci],
                                                 e[6 * i + 4, ci], e[6 * i + 5, ci])
                    tile[6 * i, ci], tile[6 * i + 1, ci], tile[6 * i + 2, ci] = a0, a1, a2
                    tile[6 * i + 3, ci], tile[6 * i + 4, ci], tile[6 * i + 5, ci] = a3, a4, a5
            t = t0 + ty * tw + tx
            for p in range(36):
                for ci in range(c):
                    v[p, t, ci] = tile[p, ci]


@_jit
def _winograd_tiles(x, pad, th, tw, t0, v):
    n, c, h, w = x.shape
    buf = np.zeros((4 * th + 2, 4 * tw + 2, c), dtype=v.dtype)  # one zero-padded image, channels last
    e = np.empty((36, c), dtype=v.dtype)
    tile = np.empty((36, c), dtype=v.dtype)
    for ni in range(n):
        for ci in range(c):   # the border of buf stays 0
            for i in range(h):
                for j in range(w):
                    buf[pad + i, pad + j, ci] = x[ni, ci, i, j]
        _image_tiles(buf, t0 + ni * th * tw, v, e, tile)


def winograd_tiles(x, pad):
    """numba twin of :func:`nncore.kernels.reference.winograd_tiles`."""
    n, c, h, w = x.shape
    th, tw = winograd_tile_counts(h, w, pad)
    v = _stack(n * th * tw, c, x.dtype)
    x = np.ascontiguousarray(x)
    threads.run_slices(n, lambda i, lo, hi: _winograd_tiles(x[lo:hi], pad, th, tw, lo * th * tw, v))
    return v[:, :n * th * tw]


@_jit
def _output_tile(m, t, s, ys):
    """ys (16, F) = AT m A of tile t of m (36, T, F), all F channels at once: ys[4i + j] = Y[i, j].
    s (24, F) is scratch for AT m."""
    for j in range(6):
        for fi in range(ys.shape[1]):
            a0, a1, a2, a3 = _at(m[j, t, fi], m[6 + j, t, fi], m[12 + j, t, fi], m[18 + j, t, fi],
                                 m[24 + j, t, fi], m[30 + j, t, fi])
            s[j, fi], s[6 + j, fi], s[12 + j, fi], s[18 + j, fi] = a0, a1, a2, a3
    for i in range(4):
        for fi in range(ys.shape[1]):
            a0, a1, a2, a3 = _at(s[6 * i, fi], s[6 * i + 1, fi], s[6 * i + 2, fi], s[6 * i + 3, fi],
                                 s[6 * i + 4, fi], s[6 * i + 5, fi])
            ys[4 * i, fi], ys[4 * i + 1, fi], ys[4 * i + 2, fi], ys[4 * i + 3, fi] = a0, a1, a2, a3


@_jit
def _winograd_output(m, b, t0, out):
    n, f, oh, ow = out.shape
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    s, ys = np.empty((24, f), dtype=m.dtype), np.empty((16, f), dtype=m.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                _output_tile(m, t0 + (ni * th + ty) * tw + tx, s, ys)
                for i in range(min(4, oh - 4 * ty)):        # the last tiles may stick out: crop
                    for j in range(min(4, ow - 4 * tx)):
                        for fi in range(f):
                            out[ni, fi, 4 * ty + i, 4 * tx + j] = ys[4 * i + j, fi] + b[fi]


def winograd_output(m, b, n, oh, ow):
    """numba twin of :func:`nncore.kernels.reference.winograd_output`."""
    f = m.shape[2]
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    out = np.empty((n, f, oh, ow), dtype=m.dtype)
    b = np.zeros(f, dtype=m.dtype) if b is None else b
    m = np.ascontiguousarray(m)
    threads.run_slices(n, lambda i, lo, hi: _winograd_output(m, b, lo * th * tw, out[lo:hi]))
    return out


@_jit
def _winograd_relu_pool(m, b, t0, out, arg):
    n, f, ph, pw = out.shape
    th, tw = (ph + 1) // 2, (pw + 1) // 2
    s, ys = np.empty((24, f), dtype=m.dtype), np.empty((16, f), dtype=m.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                _output_tile(m, t0 + (ni * th + ty) * tw + tx, s, ys)
                for i in range(min(2, ph - 2 * ty)):        # the tile's four 2x2 pooling windows
                    for j in range(min(2, pw - 2 * tx)):
                        p = 8 * i + 2 * j                   # the window's top-left entry in ys
                        for fi in range(f):
                            best, where = _max4(ys[p, fi], ys[p + 1, fi], ys[p + 4, fi], ys[p + 5, fi])
                            _store_relu(out, arg, ni, fi, 2 * ty + i, 2 * tx + j, best + b[fi], where)


def winograd_relu_pool(m, b, n, oh, ow):
    """numba twin of :func:`nncore.kernels.reference.winograd_relu_pool`."""
    f = m.shape[2]
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    b = np.zeros(f, dtype=m.dtype) if b is None else b
    out = np.empty((n, f, oh // 2, ow // 2), dtype=m.dtype)
    arg = np.empty((n, f, oh // 2, ow // 2), dtype=np.int32)
    m = np.ascontiguousarray(m)
    threads.run_slices(n, lambda i, lo, hi: _winograd_relu_pool(m, b, lo * th * tw, out[lo:hi], arg[lo:hi]))
    return out, arg


@_jit
def _z_tile(g, ady, z, t):
    """z[:, t, :] = A dY AT of one tile, all filters, from g (16, F) with g[4i + j] = dY[i, j];
    ady (24, F) is scratch for A dY."""
    f = g.shape[1]
    for j in range(4):      # A dY, column by column: ady[4k + j] = (A dY)[k, j]
        for fi in range(f):
            a0, a1, a2, a3, a4, a5 = _a(g[j, fi], g[4 + j, fi], g[8 + j, fi], g[12 + j, fi])
            ady[j, fi], ady[4 + j, fi], ady[8 + j, fi] = a0, a1, a2
            ady[12 + j, fi], ady[16 + j, fi], ady[20 + j, fi] = a3, a4, a5
    for k in range(6):      # ... times AT, row by row
        for fi in range(f):
            a0, a1, a2, a3, a4, a5 = _a(ady[4 * k, fi], ady[4 * k + 1, fi], ady[4 * k + 2, fi], ady[4 * k + 3, fi])
            z[6 * k, t, fi], z[6 * k + 1, t, fi], z[6 * k + 2, t, fi] = a0, a1, a2
            z[6 * k + 3, t, fi], z[6 * k + 4, t, fi], z[6 * k + 5, t, fi] = a3, a4, a5


@_jit
def _winograd_output_backward(dout, t0, z, db):
    n, f, oh, ow = dout.shape
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    g = np.zeros((16, f), dtype=z.dtype)
    ady = np.empty((24, f), dtype=z.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                ih, jw = min(4, oh - 4 * ty), min(4, ow - 4 * tx)
                if ih < 4 or jw < 4:    # a tile that sticks out: its outside part has no gradient
                    g[:, :] = 0
                for i in range(ih):
                    for j in range(jw):
                        for fi in range(f):
                            gv = dout[ni, fi, 4 * ty + i, 4 * tx + j]
                            g[4 * i + j, fi] = gv
                            db[fi] += gv
                _z_tile(g, ady, z, t0 + (ni * th + ty) * tw + tx)


def winograd_output_backward(dout):
    """numba twin of :func:`nncore.kernels.reference.winograd_output_backward`."""
    n, f, oh, ow = dout.shape
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    z = _stack(n * th * tw, f, dout.dtype)
    db = np.zeros((threads.num_slices(n), f))   # float64 partial sums, one row per slice
    dout = np.ascontiguousarray(dout)
    threads.run_slices(n, lambda i, lo, hi: _winograd_output_backward(dout[lo:hi], lo * th * tw, z, db[i]))
    return z[:, :n * th * tw], db.sum(axis=0).astype(dout.dtype)


@_jit
def _winograd_pool_backward(dout, arg, t0, z, db):
    n, f, ph, pw = dout.shape
    th, tw = (ph + 1) // 2, (pw + 1) // 2
    zero = dout.dtype.type(0)
    g = np.zeros((16, f), dtype=z.dtype)
    ady = np.empty((24, f), dtype=z.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                ih, jw = min(2, ph - 2 * ty), min(2, pw - 2 * tx)
                if ih < 2 or jw < 2:    # a tile that sticks out: its outside windows have no gradient
                    g[:, :] = 0
                for i in range(ih):
                    for j in range(jw):
                        p = 8 * i + 2 * j     # the window's top-left entry of the 4x4 tile
                        for fi in range(f):   # the pooled gradient goes to the arg-max, if the ReLU passed it
                            a = arg[ni, fi, 2 * ty + i, 2 * tx + j]
                            gv = dout[ni, fi, 2 * ty + i, 2 * tx + j] if a >= 0 else zero
                            db[fi] += gv
                            g[p, fi] = gv if a == 0 else zero
                            g[p + 1, fi] = gv if a == 1 else zero
                            g[p + 4, fi] = gv if a == 2 else zero
                            g[p + 5, fi] = gv if a == 3 else zero
                _z_tile(g, ady, z, t0 + (ni * th + ty) * tw + tx)


def winograd_pool_backward(dout, arg):
    """numba twin of :func:`nncore.kernels.reference.winograd_pool_backward`."""
    n, f, ph, pw = dout.shape
    th, tw = (ph + 1) // 2, (pw + 1) // 2
    z = _stack(n * th * tw, f, dout.dtype)
    db = np.zeros((threads.num_slices(n), f))   # float64 partial sums, one row per slice
    dout, arg = np.ascontiguousarray(dout), np.ascontiguousarray(arg)
    threads.run_slices(n, lambda i, lo, hi: _winograd_pool_backward(dout[lo:hi], arg[lo:hi], lo * th * tw, z, db[i]))
    return z[:, :n * th * tw], db.sum(axis=0).astype(dout.dtype)


@_jit
def _winograd_tiles_backward(dv, pad, t0, dx):
    n, c, h, w = dx.shape
    th, tw = (h + 2 * pad + 1) // 4, (w + 2 * pad + 1) // 4      # winograd_tile_counts
    buf = np.empty((4 * th + 2, 4 * tw + 2, c), dtype=dx.dtype)  # one padded image's gradient, channels last
    k = np.empty((36, c), dtype=dx.dtype)
    for ni in range(n):
        buf[:, :, :] = 0
        for ty in range(th):
            r = 4 * ty
            for tx in range(tw):
                q = 4 * tx
                t = t0 + (ni * th + ty) * tw + tx
                for j in range(6):      # B dv, column by column: k[6i + j] = (B dv)[i, j]
                    for ci in range(c):
                        a0, a1, a2, a3, a4, a5 = _b(dv[j, t, ci], dv[6 + j, t, ci], dv[12 + j, t, ci],
                                                    dv[18 + j, t, ci], dv[24 + j, t, ci], dv[30 + j, t, ci])
                        k[j, ci], k[6 + j, ci], k[12 + j, ci] = a0, a1, a2
                        k[18 + j, ci], k[24 + j, ci], k[30 + j, ci] = a3, a4, a5
                for i in range(6):      # ... times BT, row by row, added where the tile was read from
                    for ci in range(c):
                        a0, a1, a2, a3, a4, a5 = _b(k[6 * i, ci], k[6 * i + 1, ci], k[6 * i + 2, ci],
                                                    k[6 * i + 3, ci], k[6 * i + 4, ci], k[6 * i + 5, ci])
                        buf[r + i, q, ci] += a0
                        buf[r + i, q + 1, ci] += a1
                        buf[r + i, q + 2, ci] += a2
                        buf[r + i, q + 3, ci] += a3
                        buf[r + i, q + 4, ci] += a4
                        buf[r + i, q + 5, ci] += a5
        for ci in range(c):   # cut the padding off, back to NCHW
            for i in range(h):
                for j in range(w):
                    dx[ni, ci, i, j] = buf[pad + i, pad + j, ci]


def winograd_tiles_backward(dv, x_shape, pad):
    """numba twin of :func:`nncore.kernels.reference.winograd_tiles_backward`."""
    n, c, h, w = x_shape
    th, tw = winograd_tile_counts(h, w, pad)
    dx = np.empty(x_shape, dtype=dv.dtype)
    dv = np.ascontiguousarray(dv)
    threads.run_slices(n, lambda i, lo, hi: _winograd_tiles_backward(dv, pad, lo * th * tw, dx[lo:hi]))
    return dx


# ----------------------------------------------------------------------------- Winograd pipelines

#: images per chunk in the Winograd pipelines: each thread transforms, multiplies and transforms
#: back this many images at a time, so a chunk's products (36 x 8*TH*TW x channels, 1.2 MB for
#: ref-cnn's second layer) are still in cache when the next kernel reads them
WINOGRAD_CHUNK = 8


def _chunks(lo, hi):
    return [(s, min(hi, s + WINOGRAD_CHUNK)) for s in range(lo, hi, WINOGRAD_CHUNK)]


def winograd_forward(x, u, b, pool):
    """numba twin of :func:`nncore.kernels.reference.winograd_forward`, chunk by chunk on each thread."""
    n, c, h, w = x.shape
    f = u.shape[1]
    th, tw = winograd_tile_counts(h, w, 1)
    per = th * tw                                                   # tiles per image
    x, ut = np.ascontiguousarray(x), u.transpose(0, 2, 1)
    b = np.zeros(f, dtype=x.dtype) if b is None else b
    v = _stack(n * per, c, x.dtype)
    out = np.empty((n, f, h // 2, w // 2) if pool else (n, f, h, w), dtype=x.dtype)
    arg = np.empty((n, f, h // 2, w // 2), dtype=np.int32) if pool else None

    def job(i, lo, hi):
        m = _stack(WINOGRAD_CHUNK * per, f, x.dtype)
        for s, e in _chunks(lo, hi):
            _winograd_tiles(x[s:e], 1, th, tw, s * per, v)
            np.matmul(v[:, s * per:e * per], ut, out=m[:, :(e - s) * per])
            if pool:
                _winograd_relu_pool(m, b, 0, out[s:e], arg[s:e])
            else:
                _winograd_output(m, b, 0, out[s:e])

    threads.run_slices(n, job)
    return out, arg, v[:, :n * per]


def winograd_backward(dout, arg, v, u, x_shape, need_dx):
    """numba twin of :func:`nncore.kernels.reference.winograd_backward`, chunk by chunk on each thread.

    Each thread sums its chunks' ``z.T @ v`` into its own (36, F, C) slab; the slabs are added at the end.
    """
    n, c, h, w = x_shape
    f = u.shape[1]
    th, tw = winograd_tile_counts(h, w, 1)
    per = th * tw
    dout = np.ascontiguousarray(dout)
    arg = None if arg is None else np.ascontiguousarray(arg)
    parts = threads.num_slices(n)
    dm = np.zeros((parts, 36, f, c), dtype=dout.dtype)
    db = np.zeros((parts, f))                                       # float64 partial sums
    dx = np.empty(x_shape, dtype=dout.dtype) if need_dx else None

    def job(i, lo, hi):
        z = _stack(WINOGRAD_CHUNK * per, f, dout.dtype)
        dv = _stack(WINOGRAD_CHUNK * per, c, dout.dtype) if need_dx else None
        prod = np.empty((36, f, c), dtype=dout.dtype)
        for s, e in _chunks(lo, hi):
            k = (e - s) * per
            if arg is None:
                _winograd_output_backward(dout[s:e], 0, z, db[i])
            else:
                _winograd_pool_backward(dout[s:e], arg[s:e], 0, z, db[i])
            np.matmul(z[:, :k].transpose(0, 2, 1), v[:, s * per:e * per], out=prod)
            dm[i] += prod
            if need_dx:
                np.matmul(z[:, :k], u, out=dv[:, :k])
                _winograd_tiles_backward(dv, 1, 0, dx[s:e])

    threads.run_slices(n, job)
    return winograd_weight_grad(dm.sum(axis=0)), db.sum(axis=0).astype(dout.dtype), dx
