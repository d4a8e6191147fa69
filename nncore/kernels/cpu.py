"""Fast CPU kernels, compiled by numba. Same names and results as :mod:`.reference`.

Each kernel is a loop nest that numba compiles to machine code
(``cache=True`` stores the compiled code on disk, so only the first run of a
fresh install pays for compilation). ``prange`` splits the outermost loop over
the threads that :mod:`nncore.threads` configured; each thread owns whole
output planes, so no two threads ever write the same element and no atomics
or ``np.add.at`` are needed.

Read :mod:`nncore.kernels.reference` first: it states the layouts and math.
"""

import numba
import numpy as np
from numba import prange

from .. import threads
from .reference import avgpool_backward, avgpool_forward, conv2d_naive, conv_output_size  # noqa: F401

threads.configure()

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


@_pjit
def _im2col(x, kh, kw, stride, pad, oh, ow, cols):
    n, c, h, w = x.shape
    for r in prange(c * kh * kw):
        ci = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        z_lo, z_hi = _valid_range(ow, w, j - pad, stride)
        for ni in range(n):
            for y in range(oh):
                hy = y * stride + i - pad
                q = (ni * oh + y) * ow
                if hy < 0 or hy >= h:
                    for z in range(ow):
                        cols[r, q + z] = 0
                    continue
                for z in range(z_lo):
                    cols[r, q + z] = 0
                for z in range(z_lo, z_hi):
                    cols[r, q + z] = x[ni, ci, hy, z * stride + j - pad]
                for z in range(z_hi, ow):
                    cols[r, q + z] = 0


def im2col(x, kh, kw, stride, pad):
    """numba twin of :func:`nncore.kernels.reference.im2col`: (N,C,H,W) -> (C*KH*KW, N*OH*OW)."""
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), kh, kw, stride, pad, oh, ow, cols)
    return cols


@_pjit
def _col2im(cols, kh, kw, stride, pad, oh, ow, dx):
    n, c, h, w = dx.shape
    for plane in prange(n * c):
        ni = plane // c
        ci = plane % c
        for y in range(h):
            for z in range(w):
                dx[ni, ci, y, z] = 0
        for i in range(kh):
            y_lo, y_hi = _valid_range(oh, h, i - pad, stride)
            for j in range(kw):
                z_lo, z_hi = _valid_range(ow, w, j - pad, stride)
                r = (ci * kh + i) * kw + j
                for y in range(y_lo, y_hi):
                    hy = y * stride + i - pad
                    q = (ni * oh + y) * ow
                    for z in range(z_lo, z_hi):
                        dx[ni, ci, hy, z * stride + j - pad] += cols[r, q + z]


def col2im(cols, x_shape, kh, kw, stride, pad):
    """numba twin of :func:`nncore.kernels.reference.col2im`: (C*KH*KW, N*OH*OW) -> x_shape."""
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
    dx = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), kh, kw, stride, pad, oh, ow, dx)
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


def maxpool_forward(x, k, stride):
    """numba twin of :func:`nncore.kernels.reference.maxpool_forward`: returns (out, arg)."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    arg = np.empty((n, c, oh, ow), dtype=np.int32)
    _maxpool_forward(np.ascontiguousarray(x), k, stride, out, arg)
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


def maxpool_backward(dout, arg, x_shape, k, stride):
    """numba twin of :func:`nncore.kernels.reference.maxpool_backward`."""
    dx = np.empty(x_shape, dtype=dout.dtype)
    _maxpool_backward(np.ascontiguousarray(dout), np.ascontiguousarray(arg), k, stride, dx)
    return dx


# ----------------------------------------------------------------------------- activations

@_pjit
def _relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else 0


def relu_forward(x):
    """numba twin of :func:`nncore.kernels.reference.relu_forward`."""
    out = np.empty_like(x)
    _relu_forward(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


@_pjit
def _relu_backward(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if out[i] > 0 else 0


def relu_backward(dout, out):
    """numba twin of :func:`nncore.kernels.reference.relu_backward` (returns a new array)."""
    dx = np.empty_like(dout)
    _relu_backward(np.ascontiguousarray(dout).reshape(-1), np.ascontiguousarray(out).reshape(-1), dx.reshape(-1))
    return dx
