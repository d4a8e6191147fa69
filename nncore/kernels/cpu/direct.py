"""numba twins of :mod:`nncore.kernels.reference.direct`."""

import numpy as np

from ... import threads
from ..reference.conv import conv_output_size
from .jit import jit
from .pool import max4, store_relu

# These two are serial (nogil) loops run on slices of the batch by threads.run_slices:
# as parallel=True loops they took 2-3 s longer to compile on a cold cache.

@jit
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
                    best, where = max4(acc[0, fi], acc[1, fi], acc[2, fi], acc[3, fi])
                    store_relu(out, arg, ni, fi, py, px, best, where)


def pad_images(x, pad):
    """x (N, C, H, W) zero-padded by ``pad`` on every side, C-contiguous (np.pad's own bookkeeping
    took longer than the copy at the first layer's size)."""
    if pad == 0:
        return np.ascontiguousarray(x)
    n, c, h, w = x.shape
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    xpad[:, :, pad:pad + h, pad:pad + w] = x
    return xpad


def conv3x3_relu_pool2_forward(x, w, b, pad):
    """numba twin of :func:`nncore.kernels.reference.conv3x3_relu_pool2_forward`.

    Computes one pooling window at a time, its four conv outputs for all
    filters at once (the loop over filters vectorises; the weights are read
    as a (C*9, F) matrix), and pools them straight away: no column matrix,
    no GEMM, no full-size conv output.
    """
    return conv3x3_relu_pool2_padded(pad_images(x, pad), w, b)


def conv3x3_relu_pool2_padded(xpad, w, b):
    """:func:`conv3x3_relu_pool2_forward` of an image already padded (:func:`pad_images`)."""
    n, f = xpad.shape[0], w.shape[0]
    oh, ow = conv_output_size(xpad.shape[2], 3, 1, 0), conv_output_size(xpad.shape[3], 3, 1, 0)
    if b is None:
        b = np.zeros(f, dtype=xpad.dtype)
    out = np.empty((n, f, oh // 2, ow // 2), dtype=xpad.dtype)
    arg = np.empty((n, f, oh // 2, ow // 2), dtype=np.int32)
    wt = np.ascontiguousarray(w.reshape(f, -1).T)                       # wt (C*9, F)
    threads.run_slices(n, lambda i, lo, hi: _conv3x3_relu_pool2_forward(xpad[lo:hi], wt, b, out[lo:hi], arg[lo:hi]))
    return out, arg


@jit
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
    return conv3x3_relu_pool2_weight_grad_padded(dout, arg, pad_images(x, pad))


def conv3x3_relu_pool2_weight_grad_padded(dout, arg, xpad):
    """:func:`conv3x3_relu_pool2_weight_grad` from the padded image the forward pass read."""
    n, f = dout.shape[:2]
    parts = threads.num_slices(n)
    acc = np.zeros((parts, f, xpad.shape[1] * 9))
    acc_b = np.zeros((parts, f))
    dout, arg = np.ascontiguousarray(dout), np.ascontiguousarray(arg)
    threads.run_slices(n, lambda i, lo, hi: _conv3x3_relu_pool2_weight_grad(dout[lo:hi], arg[lo:hi], xpad[lo:hi],
                                                                            acc[i], acc_b[i]))
    return acc.sum(axis=0).astype(dout.dtype), acc_b.sum(axis=0).astype(dout.dtype)
