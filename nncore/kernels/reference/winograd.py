"""Winograd F(4x4, 3x3): a 3x3 convolution with 2.25 multiplications per output instead of 9.

A 3x3 convolution in 4x4 output tiles (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). Output tile (ty, tx) of one filter f
and one channel c needs the 6x6 input tile d = xpad[4ty:4ty+6, 4tx:4tx+6]:

    Y = AT [ (G g GT) * (BT d B) ] A          (* is the elementwise product)

36 multiplications where the direct sum takes 144: the transforms evaluate
polynomials at the points 0, 1, -1, 2, -2 and infinity, which costs only
additions and multiplications by small constants. The transforms are
linear, so the sum over input channels happens in the 6x6 transformed
domain: for each of its 36 positions xi = 6a + b, one matrix product over
all T tiles of the batch

    M[xi] = V[xi] @ U[xi].T          (T, C) @ (C, F) -> (T, F)

replaces the (F, C*9) @ (C*9, N*OH*OW) product of im2col: 36*T*C*F
multiply-adds, 2.25 per output instead of 9, 4 times fewer. An output size
that is not a multiple of 4 is padded up to one and cropped again (ref-cnn's
14x14 takes 4x4 tiles of 16x16: still 3.1 times fewer than im2col).
Each 4x4 output tile holds four whole 2x2/2 pooling windows, so ConvReLUPool
adds the bias, applies the ReLU and pools straight from M.

Layout: the transformed arrays are (36, T, channels), tile t = (n*TH + ty)*TW + tx,
channels last, so the kernels stream through 36 long rows of memory.

The backward pass runs the same steps transposed. With Z = A dY AT per tile
(dY: the gradient of the 4x4 conv output tile; dL/dM = Z because Y = AT M A):

    dW[f, c] = GT (sum over tiles of Z[f] * V[c]) G     36 products (F, T) @ (T, C)
    dV = Z @ U                                          36 products (T, F) @ (F, C)
    dx = each tile's B dV BT added back where the tile came from (tiles overlap by 2)

Accuracy: G holds 1/6, 1/12 and 1/24, and the transforms scale values by up
to 8 before they cancel, so float32 rounding grows about tenfold. On
ref-cnn's second layer (ReLU inputs, He-initialised filters) the largest
error is 4e-6 of the output's largest value, against 4e-7 for im2col and a
GEMM: far below what SGD notices. In float64 both agree to 1e-12, which is
what the tests and the gradient checks use.
"""

import functools

import numpy as np

from .fused import bias_relu_pool_backward, bias_relu_pool_forward

WINOGRAD_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),   # input transform, 6x6
               (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
WINOGRAD_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),   # filter transform, 6x3
              (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
WINOGRAD_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))   # output, 4x6


def winograd_tile_counts(h, w, pad):
    """Tiles (TH, TW) of a 3x3, stride-1 convolution with padding ``pad`` of an HxW image.

    Each tile yields a 4x4 block of the OH x OW = (H+2P-2) x (W+2P-2) output: TH = ceil(OH / 4).
    """
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    if oh < 1 or ow < 1:
        raise ValueError(f"a 3x3 convolution with padding {pad} of a {h}x{w} image has no output")
    return -(-oh // 4), -(-ow // 4)


@functools.lru_cache(maxsize=None)
def _g_kron(dtype):
    """G (x) G (36, 9): row 6a+b, column 3i+j holds G[a, i] * G[b, j], so that for one 3x3 filter g,
    flattened row by row, (G (x) G) @ g is G g GT flattened row by row (the Kronecker product's rule).
    Made once per dtype (read-only): np.kron's bookkeeping took 0.1 ms a call."""
    g = np.array(WINOGRAD_G, dtype=dtype)
    gg = np.kron(g, g)
    gg.setflags(write=False)
    return gg


def winograd_weights(w):
    """Filter transform. w (F, C, 3, 3) -> U (36, F, C) with U[6a+b, f, c] = (G w[f, c] GT)[a, b].

    All F*C filters in one product: U = (G (x) G) @ W9.T, W9 (F*C, 9) the filters flattened.
    """
    f, c = w.shape[:2]
    return (_g_kron(w.dtype) @ w.reshape(f * c, 9).T).reshape(36, f, c)


def winograd_tiles(x, pad):
    """Input transform. x (N, C, H, W) -> V (36, N*TH*TW, C), tiles of the zero-padded x.

    x is padded by ``pad`` on the top and left and by enough on the bottom and
    right for 4TH+2 rows and 4TW+2 columns. Tile (n, ty, tx) is
    ``xpad[n, :, 4ty:4ty+6, 4tx:4tx+6]`` and is row t = (n*TH + ty)*TW + tx;
    ``V[6a+b, t, c] = (BT d B)[a, b]``.
    """
    n, c, h, w = x.shape
    th, tw = winograd_tile_counts(h, w, pad)
    bt = np.array(WINOGRAD_BT, dtype=x.dtype)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, 4 * th + 2 - h - pad), (pad, 4 * tw + 2 - w - pad)))
    d = np.lib.stride_tricks.sliding_window_view(xpad, (6, 6), axis=(2, 3))[:, :, ::4, ::4]  # (N, C, TH, TW, 6, 6)
    return np.ascontiguousarray(np.einsum("ai,nctuij,bj->abntuc", bt, d, bt).reshape(36, n * th * tw, c))


def winograd_output(m, b, n, oh, ow):
    """Output transform. m (36, N*TH*TW, F) -> (N, F, OH, OW): each tile's AT m A (4x4), placed side by
    side and cropped to OH x OW, plus the bias b (F,) (None: no bias)."""
    at = np.array(WINOGRAD_AT, dtype=m.dtype)
    f = m.shape[2]
    th, tw = -(-oh // 4), -(-ow // 4)
    y = np.einsum("ia,abntuf,jb->nftiuj", at, m.reshape(6, 6, n, th, tw, f), at).reshape(n, f, 4 * th, 4 * tw)
    y = y[:, :, :oh, :ow]
    return np.ascontiguousarray(y if b is None else y + b[None, :, None, None])


def winograd_output_backward(dout):
    """Adjoint of :func:`winograd_output`: dout (N, F, OH, OW) -> (z, db).

    z (36, N*TH*TW, F) = ``A dY AT`` for each 4x4 tile dY of dout (zero-padded
    to 4TH x 4TW), dL/dm; db (F,) = dout summed.
    """
    n, f, oh, ow = dout.shape
    th, tw = -(-oh // 4), -(-ow // 4)
    at = np.array(WINOGRAD_AT, dtype=dout.dtype)
    dy = np.zeros((n, f, 4 * th, 4 * tw), dtype=dout.dtype)
    dy[:, :, :oh, :ow] = dout
    z = np.einsum("ia,nfyixj,jb->abnyxf", at, dy.reshape(n, f, th, 4, tw, 4), at)
    return np.ascontiguousarray(z.reshape(36, -1, f)), dout.sum(axis=(0, 2, 3))


def winograd_relu_pool(m, b, n, oh, ow):
    """Output transform, bias, ReLU and 2x2/2 max-pooling of the Winograd products.

    Inputs: m (36, N*TH*TW, F) = V @ U.T per position; b (F,) or None; OH, OW
    (even) the conv output's size. Returns (out, arg) as
    :func:`bias_relu_pool_forward` on the conv output: out and arg (N, F, OH/2, OW/2).
    """
    y = winograd_output(m, None, n, oh, ow)              # (N, F, OH, OW), before the bias
    f = m.shape[2]
    return bias_relu_pool_forward(y.transpose(1, 0, 2, 3).reshape(f, -1), b, n, oh, ow, 2, 2)


def winograd_pool_backward(dout, arg):
    """Adjoint of :func:`winograd_relu_pool` down to the products: dL/dm.

    Inputs: dout and arg (N, F, PH, PW) from the forward pass.
    Returns (z, db): z (36, N*TH*TW, F) = ``A dY AT`` per tile, where dY (N, F,
    2PH, 2PW) is the conv output's gradient, non-zero only at each window's
    passing arg-max; db (F,).
    """
    n, f, ph, pw = dout.shape
    d2, db = bias_relu_pool_backward(dout, arg, 2 * ph, 2 * pw, 2, 2)   # (F, N*OH*OW)
    z, _ = winograd_output_backward(d2.reshape(f, n, 2 * ph, 2 * pw).transpose(1, 0, 2, 3))
    return z, db


def winograd_tiles_backward(dv, x_shape, pad):
    """Adjoint of :func:`winograd_tiles`: dv (36, N*TH*TW, C) -> dx (N, C, H, W).

    Each tile's ``B dv BT`` (6x6) is added back where the tile was read from,
    overlapping tiles summing, and the padding is cut off. With
    ``dv = z @ U`` (the products' gradient) this is the input gradient.
    """
    n, c, h, w = x_shape
    th, tw = winograd_tile_counts(h, w, pad)
    bt = np.array(WINOGRAD_BT, dtype=dv.dtype)
    d = np.einsum("ai,abntuc,bj->nctuij", bt, dv.reshape(6, 6, n, th, tw, c), bt)   # (N, C, TH, TW, 6, 6)
    dxpad = np.zeros((n, c, 4 * th + 2, 4 * tw + 2), dtype=dv.dtype)
    for i in range(6):
        for j in range(6):
            dxpad[:, :, i:i + 4 * th:4, j:j + 4 * tw:4] += d[..., i, j]
    return np.ascontiguousarray(dxpad[:, :, pad:pad + h, pad:pad + w])


def winograd_weight_grad(dm):
    """Filter transform's adjoint. dm (36, F, C) = z.T @ V per position -> dW (F, C, 3, 3) = GT dm G,
    in one product: dW9 = dm36.T @ (G (x) G), dm36 (36, F*C) (see :func:`winograd_weights`)."""
    f, c = dm.shape[1:]
    return (dm.reshape(36, f * c).T @ _g_kron(dm.dtype)).reshape(f, c, 3, 3)


def winograd_forward(x, u, b, pool):
    """The whole Winograd convolution (padding 1) that Conv2D and ConvReLUPool run.

    Inputs: x (N, C, H, W) (H and W even when pooling); u = winograd_weights(W)
    (36, F, C); b (F,) or None; pool (bool): add the ReLU and the 2x2/2 max-pooling.
    Returns (out, arg, v): out (N, F, H, W), or (N, F, H/2, W/2) with arg of
    the same shape when pooling (arg is None otherwise); v (36, T, C) the
    input tiles, kept for the backward pass. The numba twin runs the same
    steps a few images at a time, so each chunk's products stay in cache.
    """
    n, _, h, w = x.shape
    v = winograd_tiles(x, 1)
    m = v @ u.transpose(0, 2, 1)                                  # (36, T, F)
    if pool:
        out, arg = winograd_relu_pool(m, b, n, h, w)
    else:
        out, arg = winograd_output(m, b, n, h, w), None
    return out, arg, v


def winograd_backward(dout, arg, v, u, x_shape, need_dx):
    """Backward of :func:`winograd_forward`: returns (dW (F, C, 3, 3), db (F,), dx (N, C, H, W) or None).

    ``arg`` is the forward pass's (pooled) or None (plain convolution).
    """
    z, db = winograd_output_backward(dout) if arg is None else winograd_pool_backward(dout, arg)   # (36, T, F)
    dw = winograd_weight_grad(z.transpose(0, 2, 1) @ v)
    dx = winograd_tiles_backward(z @ u, x_shape, 1) if need_dx else None
    return dw, db, dx
