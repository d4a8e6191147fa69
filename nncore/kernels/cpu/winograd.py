"""numba twins of :mod:`nncore.kernels.reference.winograd`: the transforms, and the pipelines that
run them with the 36 matrix products a few images at a time."""

import math

import numpy as np

from ... import threads
from ..reference.winograd import winograd_tile_counts, winograd_weight_grad
from .jit import jit, jit_inline
from .pool import max4, store_relu

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


@jit_inline
def _bt(d0, d1, d2, d3, d4, d5):
    """BT times a 6-vector: one column (or row) of the input transform."""
    a, b = d4 - _4 * d2, d3 - _4 * d1
    c, e = d4 - d2, _2 * (d3 - d1)
    return _4 * d0 - _5 * d2 + d4, a + b, a - b, c + e, c - e, _4 * d1 - _5 * d3 + d5


@jit_inline
def _at(m0, m1, m2, m3, m4, m5):
    """AT times a 6-vector: one column (or row) of the output transform, 4 values."""
    a, b, c, d = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + a + c, b + _2 * d, a + _4 * c, b + _8 * d + m5


@jit_inline
def _a(y0, y1, y2, y3):
    """A (= AT transposed) times a 4-vector: 6 values."""
    a, b = y0 + y2, y1 + y3
    c, d = y0 + _4 * y2, _2 * y1 + _8 * y3
    return y0, a + b, a - b, c + d, c - d, y3


@jit_inline
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


@jit_inline
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


@jit
def _winograd_tiles(x, pad, th, tw, t0, v):
    n, c, h, w = x.shape
    buf = np.zeros((4 * th + 2, 4 * tw + 2, c), dtype=v.dtype)  # one zero-padded image, channels last
    e = np.empty((36, c), dtype=v.dtype)
    tile = np.empty((36, c), dtype=v.dtype)
    for ni in range(n):
        for i in range(h):    # the border of buf stays 0
            for j in range(w):
                for ci in range(c):     # written in order (by channel, the strided writes took 2-3x as long)
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


@jit_inline
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


@jit
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


@jit
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
                            best, where = max4(ys[p, fi], ys[p + 1, fi], ys[p + 4, fi], ys[p + 5, fi])
                            store_relu(out, arg, ni, fi, 2 * ty + i, 2 * tx + j, best + b[fi], where)


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


@jit_inline
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


@jit_inline
def _gradient_tile(g, oh, ow, ty, tx):
    """(rows, columns) of output tile (ty, tx) that lie inside the OH x OW output; a tile that sticks
    out has no gradient in its outside part, so its gradient tile g (16, F) is zeroed first."""
    ih, jw = min(4, oh - 4 * ty), min(4, ow - 4 * tx)
    if ih < 4 or jw < 4:
        g[:, :] = 0
    return ih, jw


@jit
def _winograd_output_backward(dout, t0, z, db):
    n, f, oh, ow = dout.shape
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


@jit
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


@jit
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
        for i in range(h):    # cut the padding off, back to NCHW (buf read in order: 1.8x faster)
            for j in range(w):
                for ci in range(c):
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


def winograd_forward(x, u, b, pool, output=None):
    """numba twin of :func:`nncore.kernels.reference.winograd_forward`, chunk by chunk on each thread.

    ``output(i, m, s, e, out)``, if given, replaces the output transform of a plain convolution
    (no pooling): it writes the images s..e-1 of out from their products m on slice i of the threads
    (the fused BatchNorm layer sums each channel's statistics there, in the same pass).
    """
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
                _winograd_output(m, b, 0, out[s:e]) if output is None else output(i, m, s, e, out)

    threads.run_slices(n, job)
    return out, arg, v[:, :n * per]


def winograd_backward(dout, arg, v, u, x_shape, need_dx, z_of=None):
    """numba twin of :func:`nncore.kernels.reference.winograd_backward`, chunk by chunk on each thread.

    Each thread sums its chunks' ``z.T @ v`` into its own (36, F, C) slab; the slabs are added at the end.
    ``z_of(s, e, z)``, if given, writes z (36, rows, F) of images s..e-1 in place of the output
    transform's adjoint of dout (the fused BatchNorm layer forms its dy there, tile by tile); the bias
    gradient is then 0.
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
            if z_of is not None:
                z_of(s, e, z)
            elif arg is None:
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
