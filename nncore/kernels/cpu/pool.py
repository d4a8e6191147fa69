"""numba twins of :mod:`nncore.kernels.reference.pool`, and the 2x2 window rule every pooling kernel shares."""

import numpy as np
from numba import prange

from .jit import jit_inline, pjit


@jit_inline
def max4(v0, v1, v2, v3):
    """(max, index of the first maximum) of one 2x2 window read row by row: ties go to the earlier entry."""
    best, where = v0, 0
    if v1 > best:
        best, where = v1, 1
    if v2 > best:
        best, where = v2, 2
    if v3 > best:
        best, where = v3, 3
    return best, where


@jit_inline
def store_relu(out, arg, ni, fi, py, px, v, where):
    """Write one pooled output of a fused conv-ReLU-pool: v and its window offset, or 0 and -1 where
    the ReLU clamps v (no gradient flows back through that window)."""
    if v > 0:
        out[ni, fi, py, px] = v
        arg[ni, fi, py, px] = where
    else:
        out[ni, fi, py, px] = 0
        arg[ni, fi, py, px] = -1


@pjit
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


@pjit
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
                o[z], a[z] = max4(r0[2 * z], r0[2 * z + 1], r1[2 * z], r1[2 * z + 1])


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


@pjit
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


@pjit
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
