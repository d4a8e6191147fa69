"""numba twins of :mod:`nncore.kernels.reference.fused`: bias, ReLU and pooling in one pass over the GEMM
output, and the whole conv-ReLU-pool by the algorithm :mod:`.algorithms` chooses (direct, Winograd or im2col)."""

from collections import namedtuple

import numpy as np
from numba import prange

from ... import threads
from ...errors import UsageError
from ..reference.fused import ConvReLUPoolContext
from ..reference.winograd import winograd_weights
from .algorithms import DIRECT_WEIGHT_GRAD_ROWS, conv_relu_pool_algorithm, in_slices, inference_slice
from .conv import WinogradContext, gemm_backward, gemm_forward
from .direct import conv3x3_relu_pool2_padded, conv3x3_relu_pool2_weight_grad_padded, pad_images
from .jit import pjit
from .pool import max4, store_relu
from .winograd import winograd_backward, winograd_forward


@pjit
def _bias_relu_pool_forward(y, b, n, oh, ow, k, stride, out, arg):
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
def _bias_relu_pool2_forward(y, b, n, oh, ow, out, arg):
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


def bias_relu_pool_forward(y, b, n, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.bias_relu_pool_forward`.

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
        _bias_relu_pool2_forward(y, b, n, oh, ow, out, arg)
    else:
        _bias_relu_pool_forward(y, b, n, oh, ow, k, stride, out, arg)
    return out, arg


@pjit
def _bias_relu_pool_backward(dout, arg, oh, ow, k, stride, d2, db):
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


def bias_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.bias_relu_pool_backward`: returns (d2, db)."""
    n, f = dout.shape[:2]
    d2 = np.empty((f, n * oh * ow), dtype=dout.dtype)
    db = np.empty(f, dtype=dout.dtype)
    _bias_relu_pool_backward(np.ascontiguousarray(dout), np.ascontiguousarray(arg), oh, ow, k, stride, d2, db)
    return d2, db


@pjit
def _bias_relu_pool_weight_grad(dout, arg, cols, offsets, oh, ow, stride, chunks, acc, acc_b):
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


def bias_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """numba twin of :func:`nncore.kernels.reference.bias_relu_pool_weight_grad`.

    Reads only the window maxima: no (F, N*OH*OW) gradient is written and no GEMM runs.
    Worth it when C*KH*KW is small (a first layer); sums are kept in float64.
    """
    n, f = dout.shape[:2]
    chunks = max(1, min(n, 4 * threads.get_num_threads()))
    acc = np.zeros((chunks, f, cols.shape[0]))      # float64 partial sums, one slab per task
    acc_b = np.zeros((chunks, f))
    offsets = np.array([(a // k) * ow + a % k for a in range(k * k)], dtype=np.int64)  # window offset -> column shift
    _bias_relu_pool_weight_grad(np.ascontiguousarray(dout), np.ascontiguousarray(arg), np.ascontiguousarray(cols),
                                offsets, oh, ow, stride, chunks, acc, acc_b)
    return acc.sum(axis=0).astype(dout.dtype), acc_b.sum(axis=0).astype(dout.dtype)


# ----------------------------------------------------------------------------- the whole conv-ReLU-pool

#: what the backward pass needs after the direct path: the padded image and the pooling's arg
DirectContext = namedtuple("DirectContext", "xpad arg need_dx")


def conv_relu_pool_forward(x, w, b, stride, pad, pool, pool_stride, training=True, need_dx=True, algorithm="auto"):
    """numba twin of :func:`nncore.kernels.reference.conv_relu_pool_forward`: the same (out, ctx).

    ``algorithm`` (see :mod:`.algorithms`), ``"auto"`` in this order:

    - ``"direct"``: a thin first layer (3x3, stride 1, C*9 <= 32 rows, 2x2/2 pooling,
      ``need_dx=False``), by ``conv3x3_relu_pool2_forward``: a GEMM with nine inner rows
      is all memory traffic, while the direct loop computes one pooling window's four
      conv outputs for all filters in vector registers;
    - ``"winograd"``: Conv2D's Winograd condition with 2x2/2 pooling of an even-sized
      image: each 4x4 output tile then holds four whole pooling windows, and
      ``winograd_relu_pool`` adds the bias, applies the ReLU and pools each tile in one pass;
    - ``"im2col"``: im2col, one GEMM, and ``bias_relu_pool_forward``'s single pass over it.

    At inference a large batch runs in cache-sized slices (except on the direct path).
    """
    chosen = conv_relu_pool_algorithm(x.shape, w.shape, stride, pad, pool, pool_stride, need_dx, algorithm)
    if chosen == "direct":
        xpad = pad_images(x, pad)
        out, arg = conv3x3_relu_pool2_padded(xpad, w, b)
        return out, (DirectContext(xpad, arg, False) if training else None)
    step = inference_slice(x.shape, w.shape, stride, pad, x.dtype.itemsize)
    if not training and x.shape[0] > step:
        return in_slices(conv_relu_pool_forward, x, step, w, b, stride, pad, pool, pool_stride, False, need_dx, chosen)
    if chosen == "winograd":
        u = winograd_weights(w)                                              # (36, F, C)
        out, arg, v = winograd_forward(x, u, b, True)
        return out, (WinogradContext(x.shape, v, u, arg, need_dx) if training else None)
    y, cols, oh, ow = gemm_forward(x, w, stride, pad)
    out, arg = bias_relu_pool_forward(y, b, x.shape[0], oh, ow, pool, pool_stride)
    if not training:
        return out, None
    return out, ConvReLUPoolContext(x.shape, cols, w, stride, pad, oh, ow, pool, pool_stride, arg, need_dx)


def conv_relu_pool_backward(ctx, dout, need_dx):
    """numba twin of :func:`nncore.kernels.reference.conv_relu_pool_backward`: (dx or None, dw, db).

    The direct path sums dW from the image at each window's arg-max
    (``conv3x3_relu_pool2_weight_grad``); Winograd turns the pooled gradient
    straight into the products' gradient (``winograd_backward``); im2col without
    an input gradient and with few rows (``DIRECT_WEIGHT_GRAD_ROWS``) sums dW
    from the window maxima (``bias_relu_pool_weight_grad``), skipping the
    mostly-zero d2; otherwise d2 and the GEMMs of Conv2D's backward.
    """
    if need_dx and not ctx.need_dx:
        raise UsageError("conv_relu_pool_backward: dx asked for, but the forward pass was told need_dx=False")
    if isinstance(ctx, DirectContext):
        dw2, db = conv3x3_relu_pool2_weight_grad_padded(dout, ctx.arg, ctx.xpad)
        return None, dw2.reshape(dout.shape[1], ctx.xpad.shape[1], 3, 3), db
    if isinstance(ctx, WinogradContext):
        dw, db, dx = winograd_backward(dout, ctx.arg, ctx.v, ctx.u, ctx.x_shape, need_dx)
        return dx, dw, db
    if not need_dx and ctx.cols.shape[0] <= DIRECT_WEIGHT_GRAD_ROWS:
        dw2, db = bias_relu_pool_weight_grad(dout, ctx.arg, ctx.cols, ctx.oh, ctx.ow, ctx.pool, ctx.pool_stride)
        return None, dw2.reshape(ctx.w.shape), db
    d2, db = bias_relu_pool_backward(dout, ctx.arg, ctx.oh, ctx.ow, ctx.pool, ctx.pool_stride)
    return gemm_backward(ctx, d2, db, need_dx)
