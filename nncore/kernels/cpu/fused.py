"""numba twins of :mod:`nncore.kernels.reference.fused`."""

import numpy as np
from numba import prange

from ... import threads
from .jit import pjit
from .pool import max4, store_relu


@pjit
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
                store_relu(out, arg, ni, fi, py, px, best + bias, where)


@pjit
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
                best, where = max4(y[fi, r0 + 2 * px], y[fi, r0 + 2 * px + 1],
                                    y[fi, r1 + 2 * px], y[fi, r1 + 2 * px + 1])
                store_relu(out, arg, ni, fi, py, px, best + bias, where)


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


@pjit
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


@pjit
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
