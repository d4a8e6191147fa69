"""numba twins of :mod:`nncore.kernels.reference.fused_batchnorm`: conv -> BatchNorm -> ReLU -> max-pool and
dense -> BatchNorm -> ReLU -> dropout, with the statistics, normalisation, ReLU and pooling (or dropout) of
a layer in two passes over the product's output, and the backward pass in two more.

The convolution takes the path :func:`.algorithms.conv_relu_pool_algorithm` chooses:

- ``"direct"`` (a thin first layer, no input gradient): the batch statistics of y = W2 @ cols come
  from the patches' first and second moments, ``sum(y) = W2 @ s1`` and ``sum(y*y) = w G w`` per filter
  with ``s1 = sum(cols)`` (K,) and ``G = cols @ cols.T`` (K, K), K = C*9, summed from the image in
  float64 (:func:`patch_moments`: products of the image with its shifted copies, then window sums).
  With the statistics known before the convolution, BatchNorm folds into the weights (module
  docstring of the reference), and the direct conv-ReLU-pool kernel runs as
  it does for ConvReLUPool: the full-size conv output is never written. Backward: that kernel's
  weight gradient gives ``P = sum(dz * patch)`` and ``dbeta = sum(dz)`` from the window maxima alone;
  ``dgamma = inv_std * (sum(W2 * P) - mean * dbeta)``, and since ``dy = a*dz + c1 + c2*y`` per channel
  (a = gamma*inv_std, c2 = -a*inv_std*dgamma/M, c1 = -a*dbeta/M - c2*mean),
  ``dW = a*P + c1*s1 + c2*(W2 @ G)``: no full-size gradient either.
- ``"winograd"`` or ``"im2col"``: the convolution as Conv2D computes it (NCHW, or (F, N*OH*OW) rows),
  each channel's mean and variance (summed in Winograd's output transform by
  ``_winograd_output_moments``, or by ``_channel_moments`` after im2col's product), then
  ``_bn_relu_pool`` pools, normalises and applies the ReLU in one pass, writing only the pooled output
  and its arg-max. The conv output y is kept for the backward pass (its input gradient needs dy at
  every position, and recomputing y would cost the convolution again); xhat and the other full-size
  arrays of the unfused layers are not. Backward: dbeta = sum(dz) and dgamma = sum(dz*xhat), dz being the
  pooled gradient at the window maxima, give per channel ``dy = c2*(y - mean) + c1`` plus
  ``gamma*inv_std*dz`` at the maxima. On the Winograd path ``_bn_pool_sums`` takes the sums, and dy is
  formed tile by tile inside the transform that starts Winograd's backward pass (``_bn_pool_z``), so
  the full-size dy is never written (a pass over 4.8 MB less, read and written, on the default model's
  second layer); after im2col, ``_bn_relu_pool_backward`` takes the sums and writes dy for the
  product that follows. (Keeping Winograd's y as 4x4 tiles with the channels innermost, (N*TH*TW, 16,
  F), so that these passes read it in order instead of 196 floats apart, was tried and was slower:
  5.92 / 8.95 ms forward / backward against 5.67 / 8.46 ms on the default model's second layer, one
  process alternating the two, 2 threads, 2026-12-02.)

Statistics are summed in float64, as :mod:`.batchnorm` does. The kernels here are serial (nogil) loops
run on slices by :func:`nncore.threads.run_slices` (they compile faster than ``parallel=True`` loops).
"""

import functools
from collections import namedtuple

import numpy as np

from ... import threads
from ..reference.conv import Conv2DContext, conv_output_size
from ..reference.fused_batchnorm import (
    FoldedContext,
    batchnorm_scale_shift,
    check_mode,
    check_need_dx,
    unfold_gradients,
)
from ..reference.fused_batchnorm import dense_bn_relu_dropout_backward as _dense_folded_backward
from ..reference.fused_batchnorm import dense_bn_relu_dropout_forward as _dense_folded_forward
from ..reference.winograd import winograd_weights
from .algorithms import conv_relu_pool_algorithm
from .conv import WinogradContext, gemm_backward, gemm_forward
from .direct import conv3x3_relu_pool2_padded, pad_images
from .fused import DirectContext, conv_relu_pool_backward, conv_relu_pool_forward
from .jit import jit
from .pool import max4, store_relu
from .winograd import _gradient_tile, _output_tile, _z_tile, winograd_backward, winograd_forward

#: after a ``train`` pass on the direct path: the folded layer's ctx, the statistics and the patch moments
GramContext = namedtuple("GramContext", "inner w gamma mean inv_std s1 gram m need_dx")
#: after a ``train`` pass on the Winograd or im2col path: the convolution's ctx and its output y, laid out
#: as a flat array where element (n, f, p) sits at n*sn + f*sf + p (strides = (sn, sf))
ConvBNContext = namedtuple("ConvBNContext", "conv y strides y_shape arg gamma mean inv_std pool pool_stride need_dx")
#: after a ``train`` pass of the dense kernel: input, weights, xhat (N, M), gate (N, M) int8 (1 where the
#: gradient passes ReLU and dropout), the dropout scale 1/(1-p) (1 without dropout)
DenseBNContext = namedtuple("DenseBNContext", "x w xhat gate gamma inv_std scale need_dx")


# ----------------------------------------------------------------------------- kernels

@jit
def _shift_sums(xpad, keys, s, q):
    """Add to s (C, HP, WP) every channel's sum over xpad's images, and to q (K, HP, WP), for each key
    (c1, c2, di, dj), the sum over the images of ``xpad[c1, u, v] * xpad[c2, u + di, v + dj]``
    (float64, exact products of the input's values; entries whose partner falls outside stay 0)."""
    n, c, hp, wp = xpad.shape
    for ni in range(n):
        for ci in range(c):
            for u in range(hp):
                row, acc = xpad[ni, ci, u], s[ci, u]
                for v in range(wp):      # one running sum per column: the loop vectorises
                    acc[v] += row[v]
        for k in range(keys.shape[0]):
            c1, c2, di, dj = keys[k, 0], keys[k, 1], keys[k, 2], keys[k, 3]
            v0, v1 = max(0, -dj), min(wp, wp - dj)
            for u in range(max(0, -di), min(hp, hp - di)):
                ra, rb = xpad[ni, c1, u, v0:v1], xpad[ni, c2, u + di, v0 + dj:v1 + dj]
                acc = q[k, u, v0:v1]
                for v in range(v1 - v0):     # slices indexed from 0: the loop vectorises
                    acc[v] += np.float64(ra[v]) * rb[v]


@jit
def _channel_moments(y, sn, sf, n, p, lo, hi, eps, mean, var, inv_std):
    """Mean, biased variance and 1/sqrt(var + eps) of channels lo..hi-1 of the flat y, in one pass of
    float64 sums of y - y0 and (y - y0)**2 (y0: the channel's first value, which keeps the difference of
    the two sums exact enough whatever the mean), in four independent chains each."""
    m = n * p
    for fi in range(lo, hi):
        y0 = np.float64(y[fi * sf])
        s0 = s1 = s2 = s3 = 0.0
        q0 = q1 = q2 = q3 = 0.0
        for ni in range(n):
            base = ni * sn + fi * sf
            ys = y[base:base + p]
            for q in range(0, p - 3, 4):
                d0, d1, d2, d3 = ys[q] - y0, ys[q + 1] - y0, ys[q + 2] - y0, ys[q + 3] - y0
                s0 += d0
                s1 += d1
                s2 += d2
                s3 += d3
                q0 += d0 * d0
                q1 += d1 * d1
                q2 += d2 * d2
                q3 += d3 * d3
            for q in range(p - p % 4, p):
                d0 = ys[q] - y0
                s0 += d0
                q0 += d0 * d0
        mu = ((s0 + s1) + (s2 + s3)) / m
        v = max(((q0 + q1) + (q2 + q3)) / m - mu * mu, 0.0)
        mean[fi] = y0 + mu
        var[fi] = v
        inv_std[fi] = 1.0 / np.sqrt(v + eps)


@jit
def _bn_relu_pool(y, sn, sf, ow, k, stride, gamma, beta, mean, inv_std, lo, out, arg):
    """Images lo.. of out/arg (a slice). z = gamma*(y - mean)*inv_std + beta rises with y where gamma > 0
    and falls where gamma < 0, so each window's first maximum of z is the first maximum of sign(gamma)*y
    (negating is exact): the window is pooled on y, and z computed for its winner only."""
    n, f, ph, pw = out.shape
    one = y.dtype.type(1)
    for ni in range(n):
        for fi in range(f):
            base = (lo + ni) * sn + fi * sf
            mu, inv, g, b = mean[fi], inv_std[fi], gamma[fi], beta[fi]
            sign = one if g > 0 else (-one if g < 0 else 0 * one)     # gamma == 0: every z ties, the first wins
            for py in range(ph):
                r0 = base + py * stride * ow
                if k == 2 and stride == 2:
                    y0, y1 = y[r0:r0 + ow], y[r0 + ow:r0 + 2 * ow]     # the window rows, indexed from 0
                    for px in range(pw):
                        c = 2 * px
                        best, where = max4(sign * y0[c], sign * y0[c + 1], sign * y1[c], sign * y1[c + 1])
                        store_relu(out, arg, ni, fi, py, px, g * ((sign * best - mu) * inv) + b, where)
                    continue
                for px in range(pw):
                    first = r0 + px * stride
                    best = sign * y[first]
                    where = 0
                    for i in range(k):
                        for j in range(k):
                            v = sign * y[first + i * ow + j]
                            if v > best:  # strict: the first maximum wins ties, as in maxpool_forward
                                best = v
                                where = i * k + j
                    store_relu(out, arg, ni, fi, py, px, g * ((sign * best - mu) * inv) + b, where)


@jit
def _winograd_output_moments(m, out, s1, s2):
    """The output transform of Winograd's products m (36, T, F) into out (N, F, OH, OW), no bias, adding
    each channel's sum and sum of squares of the outputs to s1 and s2 (F,) (float64) on the way."""
    n, f, oh, ow = out.shape
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    s, ys = np.empty((24, f), dtype=m.dtype), np.empty((16, f), dtype=m.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                _output_tile(m, (ni * th + ty) * tw + tx, s, ys)
                for i in range(min(4, oh - 4 * ty)):        # the last tiles may stick out: crop
                    for j in range(min(4, ow - 4 * tx)):
                        for fi in range(f):                 # channels innermost: the loop vectorises
                            v = ys[4 * i + j, fi]
                            out[ni, fi, 4 * ty + i, 4 * tx + j] = v
                            s1[fi] += v
                            s2[fi] += np.float64(v) * v


@jit
def _bn_relu_pool_backward(dout, arg, y, sn, sf, ow, offsets, stride, gamma, mean, inv_std, m_t, lo, hi, dy,
                           dgamma, dbeta):
    """Channels lo..hi-1: dbeta = sum(dz) and dgamma = sum(dz*xhat) (float64 sums), dz being each pooled
    gradient at its window's maximum where the ReLU passed it; then dy (laid out as y) =
    gamma*inv_std*(dz - dbeta/M - xhat*dgamma/M), written as ``c2*(y - mean) + c1`` (one vectorised pass)
    plus ``gamma*inv_std*dz`` at the maxima. offsets[a]: where window offset a lies from the window's
    first entry, (a // k)*OW + a % k. Where the arg-max decides, the loops do not branch."""
    n, f, ph, pw = dout.shape
    p = y.size // (n * f)
    zero = dout.dtype.type(0)
    for fi in range(lo, hi):
        mu, inv = mean[fi], inv_std[fi]
        sb = 0.0
        sg = 0.0
        for ni in range(n):
            plane = y[ni * sn + fi * sf:ni * sn + fi * sf + p]
            for py in range(ph):
                for px in range(pw):
                    a = arg[ni, fi, py, px]
                    g = dout[ni, fi, py, px] if a >= 0 else zero
                    sb += g
                    sg += g * ((plane[py * stride * ow + px * stride + offsets[a if a > 0 else 0]] - mu) * inv)
        dbeta[fi] = sb
        dgamma[fi] = sg
        kk = gamma[fi] * inv
        c1 = -kk * (dbeta[fi] / m_t[0])  # all in dout's dtype, as batchnorm_backward
        c2 = -kk * inv * (dgamma[fi] / m_t[0])
        for ni in range(n):
            base = ni * sn + fi * sf
            src, dst = y[base:base + p], dy[base:base + p]    # slices indexed from 0: the loop vectorises
            for q in range(p):
                dst[q] = c2 * (src[q] - mu) + c1
            for py in range(ph):
                for px in range(pw):     # dz: each pooled gradient at its maximum (summed where windows overlap);
                    a = arg[ni, fi, py, px]       # a window the ReLU clamped adds 0
                    g = kk * dout[ni, fi, py, px] if a >= 0 else zero
                    dst[py * stride * ow + px * stride + offsets[a if a > 0 else 0]] += g


@jit
def _bn_pool_sums(dout, arg, y, mean, inv_std, sums):
    """Adds to sums (2, F) (float64) each channel's sum(dz) and sum(dz*xhat) over images 0.. of y
    (N, F, OH, OW) (2x2/2 pooling): dz is each pooled gradient at its window's maximum where the ReLU
    passed it, xhat = (y - mean)*inv_std there. Image by image, so that memory is read in order (by
    channel, the strided reads took three times as long)."""
    n, f, ph, pw = dout.shape
    zero = dout.dtype.type(0)
    for ni in range(n):
        for fi in range(f):
            mu, inv = mean[fi], inv_std[fi]
            sb = 0.0
            sg = 0.0
            for py in range(ph):
                for px in range(pw):
                    a = arg[ni, fi, py, px]
                    a0 = a if a > 0 else 0      # a clamped window (a = -1) adds 0 at its first entry
                    g = dout[ni, fi, py, px] if a >= 0 else zero
                    sb += g
                    sg += g * ((y[ni, fi, 2 * py + a0 // 2, 2 * px + a0 % 2] - mu) * inv)
            sums[0, fi] += sb
            sums[1, fi] += sg


@jit
def _bn_pool_z(dout, arg, y, mean, kk, c1, c2, t0, z):
    """Winograd's z (36, T, F) (``_z_tile``) of images 0.. of y (N, F, OH, OW) (even sizes, 2x2/2
    pooling), from dy = c2*(y - mean) + c1 plus kk*dout at each window's maximum where the ReLU passed
    it (per channel f: kk = gamma*inv_std, c1 and c2 as in ``_bn_relu_pool_backward``), taken tile by
    tile as z needs it: dy itself is never written. Each 4x4 tile holds four whole pooling windows."""
    n, f, oh, ow = y.shape
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    g = np.zeros((16, f), dtype=z.dtype)
    ady = np.empty((24, f), dtype=z.dtype)
    for ni in range(n):
        for ty in range(th):
            for tx in range(tw):
                ih, jw = _gradient_tile(g, oh, ow, ty, tx)
                for i in range(ih):
                    for j in range(jw):
                        for fi in range(f):
                            g[4 * i + j, fi] = c2[fi] * (y[ni, fi, 4 * ty + i, 4 * tx + j] - mean[fi]) + c1[fi]
                for i in range(ih // 2):
                    for j in range(jw // 2):
                        p = 8 * i + 2 * j     # the window's top-left entry of the tile
                        for fi in range(f):
                            a = arg[ni, fi, 2 * ty + i, 2 * tx + j]
                            if a >= 0:
                                g[p + 4 * (a // 2) + a % 2, fi] += kk[fi] * dout[ni, fi, 2 * ty + i, 2 * tx + j]
                _z_tile(g, ady, z, t0 + (ni * th + ty) * tw + tx)


@jit
def _bn_relu_dropout(y, gamma, beta, eps, keep, scale, out, xhat, gate, mean, var, inv_std):
    """Per feature (column) of y (N, M): statistics, normalisation, ReLU and the dropout mask (keep (N, M)
    uint8, or (0, 0) for no dropout); gate = 1 where the gradient will pass. Row by row, the features
    innermost, so that every pass reads memory in order and vectorises (column by column, the
    strided passes took several times as long); each column's sums still add its rows in order."""
    n, m = y.shape
    dropout = keep.shape[0] > 0
    zero = y.dtype.type(0)
    s, v = np.zeros(m), np.zeros(m)
    for i in range(n):
        for j in range(m):
            s[j] += y[i, j]
    for j in range(m):
        s[j] /= n
    for i in range(n):
        for j in range(m):
            d = y[i, j] - s[j]
            v[j] += d * d
    for j in range(m):
        v[j] /= n
        mean[j] = s[j]
        var[j] = v[j]
        inv_std[j] = 1.0 / np.sqrt(v[j] + eps)
    for i in range(n):
        for j in range(m):      # branch-free, so that it vectorises: a kept unit's mask is 1
            h = (y[i, j] - mean[j]) * inv_std[j]
            xhat[i, j] = h
            z = gamma[j] * h + beta[j]
            if dropout:
                passes = (z > 0) & (keep[i, j] != 0)
                gate[i, j] = 1 if passes else 0
                out[i, j] = z * scale if passes else zero
            else:
                gate[i, j] = 1 if z > 0 else 0
                out[i, j] = z if z > 0 else zero


@jit
def _bn_relu_dropout_backward(dout, gate, xhat, gamma, inv_std, scale, dropout, m_t, dy, dgamma, dbeta):
    """dy (N, M) of ``_bn_relu_dropout``, and dgamma, dbeta: the sums first (float64), then dy, each
    pass row by row with the features innermost."""
    n, m = dout.shape
    zero = dout.dtype.type(0)
    sb, sg = np.zeros(m), np.zeros(m)
    for i in range(n):
        for j in range(m):
            d = dout[i, j] * scale if dropout else dout[i, j]
            d = d if gate[i, j] else zero
            sb[j] += d
            sg[j] += d * xhat[i, j]
    kk, mb, mg = np.empty(m, dtype=dout.dtype), np.empty(m, dtype=dout.dtype), np.empty(m, dtype=dout.dtype)
    for j in range(m):      # in dout's dtype, as batchnorm_backward
        dbeta[j] = sb[j]
        dgamma[j] = sg[j]
        kk[j] = gamma[j] * inv_std[j]
        mb[j] = dbeta[j] / m_t[0]
        mg[j] = dgamma[j] / m_t[0]
    for i in range(n):
        for j in range(m):
            d = dout[i, j] * scale if dropout else dout[i, j]
            d = d if gate[i, j] else zero
            dy[i, j] = kk[j] * (d - mb[j] - xhat[i, j] * mg[j])


# ----------------------------------------------------------------------------- conv -> BN -> ReLU -> max-pool

@functools.lru_cache(maxsize=8)
def _shift_keys(c):
    """For C channels: keys (K, 4) int64, the distinct (ca, cb, di, dj) of the tap pairs a <= b (tap
    t = 9c + 3i + j), and per pair its a, b, key row and a's window offset (i, j)."""
    taps = [(t // 9, t % 9 // 3, t % 3) for t in range(9 * c)]
    key_of, rows = {}, []
    for a in range(len(taps)):
        for b in range(a, len(taps)):
            (ca, ia, ja), (cb, ib, jb) = taps[a], taps[b]
            rows.append((a, b, key_of.setdefault((ca, cb, ib - ia, jb - ja), len(key_of)), ia, ja))
    return np.array(list(key_of), dtype=np.int64), tuple(np.array(col) for col in zip(*rows))


def _window_sums(planes, oh, ow):
    """(K, 3, 3): the sum of each plane (K, OH+2, OW+2) over rows i..i+OH-1 and columns j..j+OW-1."""
    rows = np.stack([planes[:, i:i + oh].sum(axis=1) for i in range(3)], axis=1)          # (K, 3, OW+2)
    return np.stack([rows[..., j:j + ow].sum(axis=-1) for j in range(3)], axis=-1)


def patch_moments(x, pad):
    """(s1, G) of the 3x3 patches of x (N, C, H, W) padded by ``pad``: float64 (C*9,) and (C*9, C*9).

    Tap t = 9c + 3i + j of output (y, z) reads xpad[c, y + i, z + j] (im2col's row order), so s1[t]
    is the sum of channel c over the window of rows i..i+OH-1 and columns j..j+OW-1, and G[a, b] the
    sum over a's window of ``xpad[ca] * xpad[cb]`` shifted by b's offset minus a's. ``_shift_sums``
    forms each distinct (ca, cb, shift) product once per image (13 for one channel, against 45
    products per patch taken patch by patch) and sums it over the images; the windows are summed here.
    """
    return _padded_patch_moments(pad_images(x, pad))


def _padded_patch_moments(xpad):
    """:func:`patch_moments` of an image already padded."""
    n, c = xpad.shape[:2]
    oh, ow = conv_output_size(xpad.shape[2], 3, 1, 0), conv_output_size(xpad.shape[3], 3, 1, 0)
    keys, (a, b, key, ia, ja) = _shift_keys(c)
    parts = threads.num_slices(n)
    s, q = np.zeros((parts, c) + xpad.shape[2:]), np.zeros((parts, len(keys)) + xpad.shape[2:])
    threads.run_slices(n, lambda i, lo, hi: _shift_sums(xpad[lo:hi], keys, s[i], q[i]))
    s1 = _window_sums(s.sum(axis=0), oh, ow).reshape(-1)               # (C, 3, 3) in tap order
    g = np.zeros((9 * c, 9 * c))
    g[a, b] = _window_sums(q.sum(axis=0), oh, ow)[key, ia, ja]
    return s1, g + np.triu(g, 1).T


def _direct_forward(x, w, gamma, beta, eps, pad):
    """The direct path's training forward (module docstring): statistics from the patch moments, then
    the folded weights through the direct conv-ReLU-pool kernel."""
    n, f = x.shape[0], w.shape[0]
    m = n * conv_output_size(x.shape[2], 3, 1, pad) * conv_output_size(x.shape[3], 3, 1, pad)
    xpad = pad_images(x, pad)                       # padded once, for the moments, the kernel and its backward
    s1, gram = _padded_patch_moments(xpad)
    w2 = w.reshape(f, -1).astype(np.float64)
    mean64 = w2 @ s1 / m
    var64 = np.maximum(np.einsum("fk,kl,fl->f", w2, gram, w2) / m - mean64 * mean64, 0.0)
    mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
    scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, mean, var, eps)
    out, arg = conv3x3_relu_pool2_padded(xpad, w * scale[:, None, None, None], shift)
    return out, mean, var, GramContext(DirectContext(xpad, arg, False), w, gamma, mean, inv_std, s1, gram, m, False)


def _direct_backward(ctx, dout):
    """(None, dw, dgamma, dbeta) after :func:`_direct_forward` (module docstring), the small sums in float64."""
    _, p4, dbeta = conv_relu_pool_backward(ctx.inner, dout, False)     # P = sum(dz * patch), sum(dz)
    f = p4.shape[0]
    p2, w2 = p4.reshape(f, -1).astype(np.float64), ctx.w.reshape(f, -1).astype(np.float64)
    mean, inv, db = ctx.mean.astype(np.float64), ctx.inv_std.astype(np.float64), dbeta.astype(np.float64)
    dgamma = inv * ((w2 * p2).sum(axis=1) - mean * db)
    a = ctx.gamma.astype(np.float64) * inv
    c2 = -a * inv * dgamma / ctx.m
    c1 = -a * db / ctx.m - c2 * mean
    dw = a[:, None] * p2 + c1[:, None] * ctx.s1[None, :] + c2[:, None] * (w2 @ ctx.gram)
    dt = dout.dtype
    return None, dw.reshape(ctx.w.shape).astype(dt), dgamma.astype(dt), dbeta


def _winograd_forward(x, w, gamma, beta, eps, need_dx):
    """The Winograd path's training forward: the convolution, each channel's sums taken in its output
    transform (``_winograd_output_moments``), then ``_bn_relu_pool`` (2x2/2 pooling, even sizes)."""
    n, f, oh, ow = x.shape[0], w.shape[0], x.shape[2], x.shape[3]
    u = winograd_weights(w)                                                  # (36, F, C)
    sums = np.zeros((threads.num_slices(n), 2, f))
    y, _, v = winograd_forward(x, u, None, False, lambda i, m, s, e, out: _winograd_output_moments(
        m, out[s:e], sums[i, 0], sums[i, 1]))                                # y (N, F, OH, OW)
    s1, s2 = sums.sum(axis=0) / (n * oh * ow)
    var64 = np.maximum(s2 - s1 * s1, 0.0)
    mean, var, inv_std = s1.astype(x.dtype), var64.astype(x.dtype), (1 / np.sqrt(var64 + eps)).astype(x.dtype)
    out, arg = _pool(y.reshape(-1), (f * oh * ow, oh * ow), n, f, oh, ow, gamma, beta, mean, inv_std, 2, 2)
    return out, mean, var, ConvBNContext(WinogradContext(x.shape, v, u, None, need_dx), y.reshape(-1),
                                         (f * oh * ow, oh * ow), (n, f, oh, ow), arg, gamma, mean, inv_std, 2, 2,
                                         need_dx)


def _pool(yf, strides, n, f, oh, ow, gamma, beta, mean, inv_std, pool, pool_stride):
    """(out, arg) of ``_bn_relu_pool`` over the flat conv output yf, a slice of the images per thread."""
    ph, pw = (oh - pool) // pool_stride + 1, (ow - pool) // pool_stride + 1
    out = np.empty((n, f, ph, pw), dtype=yf.dtype)
    arg = np.empty((n, f, ph, pw), dtype=np.int32)
    threads.run_slices(n, lambda i, lo, hi: _bn_relu_pool(yf, *strides, ow, pool, pool_stride, gamma, beta, mean,
                                                          inv_std, lo, out[lo:hi], arg[lo:hi]))
    return out, arg


def conv_bn_relu_pool_forward(x, w, gamma, beta, running_mean, running_var, eps, stride, pad, pool, pool_stride,
                              mode="train", need_dx=True, algorithm="auto"):
    """numba twin of :func:`nncore.kernels.reference.conv_bn_relu_pool_forward`: the same (out, mean, var, ctx).

    ``algorithm`` as :func:`.conv_relu_pool_forward` (see the module docstring for what each path
    computes in ``train`` mode); ``eval`` and ``infer`` fold BatchNorm into the weights and run
    :func:`.conv_relu_pool_forward` itself.
    """
    check_mode(mode)
    if mode != "train":
        scale, shift, inv_std = batchnorm_scale_shift(gamma, beta, running_mean, running_var, eps)
        out, inner = conv_relu_pool_forward(x, w * scale[:, None, None, None], shift, stride, pad, pool,
                                            pool_stride, mode == "eval", need_dx, algorithm)
        return out, None, None, (FoldedContext(inner, w, scale, inv_std, running_mean) if inner is not None else None)
    chosen = conv_relu_pool_algorithm(x.shape, w.shape, stride, pad, pool, pool_stride, need_dx, algorithm)
    if chosen == "direct":
        return _direct_forward(x, w, gamma, beta, eps, pad)
    n, f = x.shape[0], w.shape[0]
    if chosen == "winograd":
        return _winograd_forward(x, w, gamma, beta, eps, need_dx)
    else:
        y, cols, oh, ow = gemm_forward(x, w, stride, pad)                    # (F, N*OH*OW)
        conv = Conv2DContext(x.shape, cols, w, stride, pad)
        strides = (oh * ow, n * oh * ow)
    yf = np.ascontiguousarray(y).reshape(-1)
    mean, var, inv_std = (np.empty(f, dtype=x.dtype) for _ in range(3))
    threads.run_slices(f, lambda i, lo, hi: _channel_moments(yf, *strides, n, oh * ow, lo, hi, float(eps), mean, var,
                                                            inv_std))
    out, arg = _pool(yf, strides, n, f, oh, ow, gamma, beta, mean, inv_std, pool, pool_stride)
    return out, mean, var, ConvBNContext(conv, yf, strides, (n, f, oh, ow), arg, gamma, mean, inv_std, pool,
                                         pool_stride, need_dx)


def conv_bn_relu_pool_backward(ctx, dout, need_dx):
    """numba twin of :func:`nncore.kernels.reference.conv_bn_relu_pool_backward`: (dx or None, dw, dgamma, dbeta)."""
    check_need_dx(ctx.inner if isinstance(ctx, FoldedContext) else ctx, need_dx, "conv_bn_relu_pool_backward")
    if isinstance(ctx, FoldedContext):
        dx, dw_folded, db_folded = conv_relu_pool_backward(ctx.inner, dout, need_dx)
        return (dx,) + unfold_gradients(dw_folded, db_folded, ctx, 0)
    if isinstance(ctx, GramContext):
        return _direct_backward(ctx, dout)
    n, f, oh, ow = ctx.y_shape
    dout, dt = np.ascontiguousarray(dout), dout.dtype
    dgamma, dbeta = np.empty(f, dtype=dt), np.empty(f, dtype=dt)
    m_t = np.array([n * oh * ow], dtype=dt)
    if isinstance(ctx.conv, WinogradContext):
        # the sums first, then dy tile by tile inside Winograd's z transform (_bn_pool_z): one pass less
        y = ctx.y.reshape(ctx.y_shape)
        sums = np.zeros((threads.num_slices(n), 2, f))
        threads.run_slices(n, lambda i, lo, hi: _bn_pool_sums(dout[lo:hi], ctx.arg[lo:hi], y[lo:hi], ctx.mean,
                                                             ctx.inv_std, sums[i]))
        dbeta[:], dgamma[:] = sums.sum(axis=0)
        kk = ctx.gamma * ctx.inv_std
        c1, c2 = -kk * (dbeta / m_t[0]), -kk * ctx.inv_std * (dgamma / m_t[0])     # as _bn_relu_pool_backward
        dw, _, dx = winograd_backward(dout, None, ctx.conv.v, ctx.conv.u, ctx.conv.x_shape, need_dx,
                                      z_of=lambda s, e, z: _bn_pool_z(dout[s:e], ctx.arg[s:e], y[s:e], ctx.mean, kk,
                                                                      c1, c2, 0, z))
        return dx, dw, dgamma, dbeta
    k = ctx.pool
    offsets = np.array([(a // k) * ow + a % k for a in range(k * k)], dtype=np.int64)  # window offset -> shift
    dy = np.empty_like(ctx.y)
    threads.run_slices(f, lambda i, lo, hi: _bn_relu_pool_backward(
        dout, ctx.arg, ctx.y, *ctx.strides, ow, offsets, ctx.pool_stride, ctx.gamma, ctx.mean, ctx.inv_std, m_t,
        lo, hi, dy, dgamma, dbeta))
    dx, dw, _ = gemm_backward(ctx.conv, dy.reshape(f, -1), None, need_dx)
    return dx, dw, dgamma, dbeta


# ----------------------------------------------------------------------------- dense -> BN -> ReLU -> dropout

def dense_bn_relu_dropout_forward(x, w, gamma, beta, running_mean, running_var, eps, keep, p, mode="train",
                                  need_dx=True):
    """numba twin of :func:`nncore.kernels.reference.dense_bn_relu_dropout_forward`.

    ``train``: the product, then ``_bn_relu_dropout``, one pass per feature for the statistics and
    one for the output, which keeps xhat and a one-byte gate for the backward pass. ``eval`` and
    ``infer`` are the reference's folded product (one product and a ReLU: nothing to fuse).
    """
    check_mode(mode)
    if mode != "train":
        return _dense_folded_forward(x, w, gamma, beta, running_mean, running_var, eps, keep, p, mode, need_dx)
    y = threads.matmul(x, w)                                                 # (N, M)
    n, m = y.shape
    dt = x.dtype
    scale = dt.type(1.0) / dt.type(1.0 - p) if keep is not None else dt.type(1.0)
    keep8 = np.zeros((0, 0), dtype=np.uint8) if keep is None else np.ascontiguousarray(keep).view(np.uint8)
    out, xhat = np.empty_like(y), np.empty_like(y)
    gate = np.empty((n, m), dtype=np.int8)
    mean, var, inv_std = (np.empty(m, dtype=dt) for _ in range(3))
    _bn_relu_dropout(y, gamma, beta, float(eps), keep8, scale, out, xhat, gate, mean, var, inv_std)
    return out, mean, var, DenseBNContext(x, w, xhat, gate, gamma, inv_std, scale, need_dx)


def dense_bn_relu_dropout_backward(ctx, dout, need_dx):
    """numba twin of :func:`nncore.kernels.reference.dense_bn_relu_dropout_backward`."""
    if not isinstance(ctx, DenseBNContext):
        return _dense_folded_backward(ctx, dout, need_dx)
    check_need_dx(ctx, need_dx, "dense_bn_relu_dropout_backward")
    dout = np.ascontiguousarray(dout)
    m = dout.shape[1]
    dy = np.empty_like(dout)
    dgamma, dbeta = np.empty(m, dtype=dout.dtype), np.empty(m, dtype=dout.dtype)
    m_t = np.array([dout.shape[0]], dtype=dout.dtype)
    _bn_relu_dropout_backward(dout, ctx.gate, ctx.xhat, ctx.gamma, ctx.inv_std, ctx.scale, ctx.scale != 1, m_t, dy,
                              dgamma, dbeta)
    dx = threads.matmul(dy, ctx.w.T) if need_dx else None
    return dx, threads.matmul(ctx.x.T, dy), dgamma, dbeta
