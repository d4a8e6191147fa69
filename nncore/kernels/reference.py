"""Reference kernels in plain NumPy: the lecture version, and the oracle for the fast ones.

Every function here has a twin with the same name and signature in
:mod:`nncore.kernels.cpu` (numba) and, except the CPU-only paths at the end
(the direct first layer and Winograd F(4x4, 3x3)), in
:mod:`nncore.kernels.gpu` (CuPy). The tests check that the twins return the
same arrays as these. The flags ``DIRECT_FIRST_LAYER`` and ``WINOGRAD`` of
each module tell the layers which paths it takes.

Memory layout conventions (shared by all three kernel modules)
----------------------------------------------------------------
Images are ``(N, C, H, W)`` ("NCHW"), C-contiguous.

``im2col`` turns a batch of images into a matrix whose *columns* are the
receptive fields (hence the name)::

    cols[(c*KH + i)*KW + j, (n*OH + oh)*OW + ow] = xpad[n, c, oh*S + i, ow*S + j]

so ``cols`` has shape ``(C*KH*KW, N*OH*OW)``, and a convolution with weights
``w`` of shape ``(F, C, KH, KW)`` is one matrix product
``w.reshape(F, -1) @ cols`` of shape ``(F, N*OH*OW)``. That result is in
"CNHW" order; :func:`rows_to_nchw` adds the bias and turns it into NCHW, and
:func:`nchw_to_rows` is its adjoint for the backward pass.
"""

import numpy as np

#: the layers take the im2col + GEMM path for every convolution with these kernels;
#: the direct first-layer functions at the end serve as the oracle of the numba twins
DIRECT_FIRST_LAYER = False
#: ... and every 3x3 convolution with im2col too; the Winograd functions at the end are the oracle of the numba twins
WINOGRAD = False


def conv_output_size(size, kernel, stride, pad):
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


# ----------------------------------------------------------------------------- convolution

def im2col(x, kh, kw, stride, pad):
    """Unfold image patches into columns.

    Inputs:
    - x: (N, C, H, W)
    - kh, kw: kernel height and width; stride, pad: integers >= 1 and >= 0.

    Returns cols: (C*KH*KW, N*OH*OW), same dtype as x.

    For each kernel offset (i, j) the strided slice
    ``xpad[:, :, i : i+S*OH : S, j : j+S*OW : S]`` holds, for every output
    position, the pixel that offset (i, j) of the kernel touches. Stacking the
    KH*KW slices gives every patch at once: a loop of KH*KW vectorised copies
    instead of N*OH*OW small ones.
    """
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, stride, pad)
    ow = conv_output_size(w, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]  # (N, C, OH, OW)
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, x_shape, kh, kw, stride, pad):
    """Fold columns back into images, summing where patches overlap (adjoint of im2col).

    Inputs:
    - cols: (C*KH*KW, N*OH*OW), e.g. the gradient with respect to im2col's output
    - x_shape: (N, C, H, W) of the original input

    Returns dx: (N, C, H, W), same dtype as cols.

    im2col copies each pixel into every column whose patch covers it, so its
    adjoint adds those copies back together. Each (i, j) offset writes a
    strided slice whose positions are all distinct, so a plain ``+=`` on the
    slice is correct (no ``np.add.at`` needed).
    """
    n, c, h, w = x_shape
    oh = conv_output_size(h, kh, stride, pad)
    ow = conv_output_size(w, kw, stride, pad)
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols6[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w] if pad else xpad


def rows_to_nchw(y, b, n, oh, ow):
    """Add the bias and reorder a convolution's GEMM output to NCHW.

    Inputs:
    - y: (F, N*OH*OW), the product ``w2d @ cols``
    - b: (F,) bias, or None

    Returns out: (N, F, OH, OW), ``out[n, f, p] = y[f, n*OH*OW + p] + b[f]``.
    """
    f = y.shape[0]
    out = y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
    if b is not None:
        out = out + b.reshape(1, f, 1, 1)
    return np.ascontiguousarray(out)


def nchw_to_rows(dout):
    """Adjoint of :func:`rows_to_nchw`: reorder an NCHW gradient and sum it for the bias.

    Input dout: (N, F, OH, OW). Returns (d2, db): d2 of shape (F, N*OH*OW)
    and db = dout summed over N, OH, OW, shape (F,).
    """
    n, f, oh, ow = dout.shape
    d2 = np.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(f, n * oh * ow)
    db = d2.sum(axis=1)
    return d2, db


def conv2d_naive(x, w, b, stride, pad):
    """Direct convolution with four nested loops: the definition, for tests only.

    out[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * xpad[n, c, oh*S + i, ow*S + j]

    x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, OH, OW).
    """
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh = conv_output_size(h, kh, stride, pad)
    ow = conv_output_size(wd, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, oh, ow), dtype=x.dtype)
    for ni in range(n):
        for fi in range(f):
            for y in range(oh):
                for z in range(ow):
                    patch = xpad[ni, :, y * stride:y * stride + kh, z * stride:z * stride + kw]
                    out[ni, fi, y, z] = np.sum(patch * w[fi]) + b[fi]
    return out


# ----------------------------------------------------------------------------- pooling

def _windows(x, k, stride):
    """All k*k window offsets as one array: (K*K, N, C, OH, OW) views stacked."""
    n, c, h, w = x.shape
    oh = (h - k) // stride + 1
    ow = (w - k) // stride + 1
    return np.stack([x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                     for i in range(k) for j in range(k)])


def maxpool_forward(x, k, stride):
    """Max over each k x k window.

    Input x: (N, C, H, W). Returns (out, arg):
    - out: (N, C, OH, OW) with OH = (H - k) // stride + 1
    - arg: (N, C, OH, OW) int32, the offset ``i*k + j`` of the maximum inside
      its window. With ties, the first offset in row-major order wins, so the
      gradient goes to exactly one input.
    """
    win = _windows(x, k, stride)
    arg = win.argmax(axis=0).astype(np.int32)
    out = np.take_along_axis(win, arg[None], axis=0)[0]
    return out, arg


def maxpool_backward(dout, arg, x_shape, k, stride):
    """Route each output gradient to the input that was the maximum.

    Inputs: dout (N, C, OH, OW); arg from :func:`maxpool_forward`; x_shape.
    Returns dx: (N, C, H, W), zero everywhere but at the arg-max positions.
    """
    oh, ow = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.where(arg == i * k + j, dout, 0)
    return dx


def avgpool_forward(x, k, stride):
    """Mean over each k x k window. x: (N, C, H, W) -> out: (N, C, OH, OW)."""
    return _windows(x, k, stride).mean(axis=0, dtype=x.dtype)


def avgpool_backward(dout, x_shape, k, stride):
    """Each input in a window receives dout / (k*k). Returns dx: x_shape."""
    oh, ow = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout / dout.dtype.type(k * k)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += share
    return dx


# ----------------------------------------------------------------------------- activations

def relu_forward(x):
    """out = max(x, 0), elementwise; any shape."""
    return np.maximum(x, x.dtype.type(0))


def relu_backward(dout, out):
    """dx = dout where the ReLU's output is positive, else 0 (a new array)."""
    return np.where(out > 0, dout, dout.dtype.type(0))


# ----------------------------------------------------------------------------- fused conv -> ReLU -> max-pool

def conv_relu_pool_forward(y, b, n, oh, ow, k, stride):
    """Bias, ReLU and max-pooling of a convolution's GEMM output, in one step.

    Inputs: y (F, N*OH*OW) = ``w2d @ cols``; b (F,) or None; pooling window k, stride.
    Returns (out, arg):
    - out: (N, F, PH, PW) = maxpool(relu(rows_to_nchw(y, b)))
    - arg: (N, F, PH, PW) int32, the window offset of the maximum, or -1 where
      the maximum is <= 0 (the ReLU clamped the whole window: no gradient flows).

    Written here as the composition of the three unfused kernels, which is
    exactly what it computes.
    """
    out, arg = maxpool_forward(relu_forward(rows_to_nchw(y, b, n, oh, ow)), k, stride)
    return out, np.where(out > 0, arg, np.int32(-1)).astype(np.int32)


def conv_relu_pool_backward(dout, arg, oh, ow, k, stride):
    """Adjoint of :func:`conv_relu_pool_forward` down to the GEMM output.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; OH, OW of the conv output.
    Returns (d2, db): d2 (F, N*OH*OW), the gradient w.r.t. y, and db (F,).
    Each pooled gradient goes to its window's arg-max if that maximum was
    positive (where the ReLU passes gradient), else nowhere.
    """
    n, f = dout.shape[:2]
    passed = np.where(arg >= 0, dout, dout.dtype.type(0))
    dconv = maxpool_backward(passed, np.maximum(arg, 0), (n, f, oh, ow), k, stride)
    return nchw_to_rows(dconv)


# ----------------------------------------------------------------------------- batch normalisation

def batchnorm_forward(x3, gamma, beta, eps):
    """Training-mode batch normalisation over axes 0 and 2 of a 3-D view.

    Inputs: x3 (N, C, P) (P = H*W for images, 1 for dense features); gamma, beta (C,); eps.
    Returns (out, xhat, mean, var, inv_std): out and xhat (N, C, P), the rest (C,),
    with mean and var taken over the M = N*P values of each channel (var biased).
    Written with array methods only, so the GPU module reuses it on CuPy arrays.
    """
    mean = x3.mean(axis=(0, 2))
    xc = x3 - mean[None, :, None]
    var = (xc * xc).mean(axis=(0, 2))
    inv_std = (1 / (var + x3.dtype.type(eps)) ** 0.5).astype(x3.dtype)
    xhat = xc * inv_std[None, :, None]
    return gamma[None, :, None] * xhat + beta[None, :, None], xhat, mean, var, inv_std


def batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx=True):
    """Adjoint of :func:`batchnorm_forward`. Returns (dx or None, dgamma, dbeta).

    dbeta = sum dout, dgamma = sum dout*xhat (over N and P), and
    dx = gamma*inv_std * (dout - dbeta/M - xhat*dgamma/M). Array methods only (CuPy reuses it).
    """
    m = dout3.dtype.type(dout3.shape[0] * dout3.shape[2])
    dbeta = dout3.sum(axis=(0, 2))
    dgamma = (dout3 * xhat).sum(axis=(0, 2))
    if not need_dx:
        return None, dgamma, dbeta
    k = (gamma * inv_std)[None, :, None]
    return k * (dout3 - (dbeta / m)[None, :, None] - xhat * (dgamma / m)[None, :, None]), dgamma, dbeta


def conv_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, stride):
    """Weight and bias gradients of a fused conv-ReLU-pool layer, straight from the pooled gradient.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; cols (C*KH*KW, N*OH*OW).
    Returns (dw2, db): dw2 (F, C*KH*KW) = d2 @ cols.T and db (F,), where d2 is
    what :func:`conv_relu_pool_backward` returns. Only a quarter of d2 is
    non-zero (one entry per 2x2 window at most), so for a first layer, whose
    input gradient is not needed, the fast twin skips building d2 at all.
    """
    d2, db = conv_relu_pool_backward(dout, arg, oh, ow, k, stride)
    return d2 @ cols.T, db


# ----------------------------------------------------------------------------- direct first-layer convolution

def conv3x3_relu_pool2_forward(x, w, b, pad):
    """A 3x3, stride-1 convolution, bias, ReLU and 2x2/2 max-pooling straight from the image.

    Inputs: x (N, C, H, W); w (F, C, 3, 3); b (F,) or None; pad (zero padding of H and W).
    Returns (out, arg) exactly as :func:`conv_relu_pool_forward` on
    ``w.reshape(F, -1) @ im2col(x, 3, 3, 1, pad)``, which is how it is written
    here. The fast twin never builds the (C*9, N*OH*OW) column matrix: with
    C*9 at most a few dozen rows (a first layer), the product is too thin
    for BLAS to pay for the memory it costs.
    """
    n, f = x.shape[0], w.shape[0]
    oh, ow = conv_output_size(x.shape[2], 3, 1, pad), conv_output_size(x.shape[3], 3, 1, pad)
    y = w.reshape(f, -1) @ im2col(x, 3, 3, 1, pad)
    return conv_relu_pool_forward(y, b, n, oh, ow, 2, 2)


def conv3x3_relu_pool2_weight_grad(dout, arg, x, pad):
    """Weight and bias gradients of :func:`conv3x3_relu_pool2_forward`, from the image itself.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; x (N, C, H, W).
    Returns (dw2, db): dw2 (F, C*9) and db (F,), equal to
    :func:`conv_relu_pool_weight_grad` with ``cols = im2col(x, 3, 3, 1, pad)``.
    """
    oh, ow = conv_output_size(x.shape[2], 3, 1, pad), conv_output_size(x.shape[3], 3, 1, pad)
    return conv_relu_pool_weight_grad(dout, arg, im2col(x, 3, 3, 1, pad), oh, ow, 2, 2)


# ----------------------------------------------------------------------------- Winograd F(4x4, 3x3)
#
# A 3x3 convolution in 4x4 output tiles (Lavin and Gray, "Fast Algorithms for
# Convolutional Neural Networks", 2016). Output tile (ty, tx) of one filter f
# and one channel c needs the 6x6 input tile d = xpad[4ty:4ty+6, 4tx:4tx+6]:
#
#     Y = AT [ (G g GT) * (BT d B) ] A          (* is the elementwise product)
#
# 36 multiplications where the direct sum takes 144: the transforms evaluate
# polynomials at the points 0, 1, -1, 2, -2 and infinity, which costs only
# additions and multiplications by small constants. The transforms are
# linear, so the sum over input channels happens in the 6x6 transformed
# domain: for each of its 36 positions xi = 6a + b, one matrix product over
# all T tiles of the batch
#
#     M[xi] = V[xi] @ U[xi].T          (T, C) @ (C, F) -> (T, F)
#
# replaces the (F, C*9) @ (C*9, N*OH*OW) product of im2col: 36*T*C*F
# multiply-adds, 2.25 per output instead of 9, 4 times fewer. An output size
# that is not a multiple of 4 is padded up to one and cropped again (ref-cnn's
# 14x14 takes 4x4 tiles of 16x16: still 3.1 times fewer than im2col).
# Each 4x4 output tile holds four whole 2x2/2 pooling windows, so ConvReLUPool
# adds the bias, applies the ReLU and pools straight from M.
#
# Layout: the transformed arrays are (36, T, channels), tile t = (n*TH + ty)*TW + tx,
# channels last, so the kernels stream through 36 long rows of memory.
#
# The backward pass runs the same steps transposed. With Z = A dY AT per tile
# (dY: the gradient of the 4x4 conv output tile; dL/dM = Z because Y = AT M A):
#
#     dW[f, c] = GT (sum over tiles of Z[f] * V[c]) G     36 products (F, T) @ (T, C)
#     dV = Z @ U                                          36 products (T, F) @ (F, C)
#     dx = each tile's B dV BT added back where the tile came from (tiles overlap by 2)
#
# Accuracy: G holds 1/6, 1/12 and 1/24, and the transforms scale values by up
# to 8 before they cancel, so float32 rounding grows about tenfold. On
# ref-cnn's second layer (ReLU inputs, He-initialised filters) the largest
# error is 4e-6 of the output's largest value, against 4e-7 for im2col and a
# GEMM: far below what SGD notices. In float64 both agree to 1e-12, which is
# what the tests and the gradient checks use.

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


def winograd_weights(w):
    """Filter transform. w (F, C, 3, 3) -> U (36, F, C) with U[6a+b, f, c] = (G w[f, c] GT)[a, b]."""
    g = np.array(WINOGRAD_G, dtype=w.dtype)
    f, c = w.shape[:2]
    # optimize=True: two pairwise products instead of one 4-deep loop
    return np.ascontiguousarray(np.einsum("ai,fcij,bj->abfc", g, w, g, optimize=True).reshape(36, f, c))


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
    :func:`conv_relu_pool_forward` on the conv output: out and arg (N, F, OH/2, OW/2).
    """
    y = winograd_output(m, None, n, oh, ow)              # (N, F, OH, OW), before the bias
    f = m.shape[2]
    return conv_relu_pool_forward(y.transpose(1, 0, 2, 3).reshape(f, -1), b, n, oh, ow, 2, 2)


def winograd_pool_backward(dout, arg):
    """Adjoint of :func:`winograd_relu_pool` down to the products: dL/dm.

    Inputs: dout and arg (N, F, PH, PW) from the forward pass.
    Returns (z, db): z (36, N*TH*TW, F) = ``A dY AT`` per tile, where dY (N, F,
    2PH, 2PW) is the conv output's gradient, non-zero only at each window's
    passing arg-max; db (F,).
    """
    n, f, ph, pw = dout.shape
    d2, db = conv_relu_pool_backward(dout, arg, 2 * ph, 2 * pw, 2, 2)   # (F, N*OH*OW)
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
    """Filter transform's adjoint. dm (36, F, C) = z.T @ V per position -> dW (F, C, 3, 3) = GT dm G."""
    g = np.array(WINOGRAD_G, dtype=dm.dtype)
    f, c = dm.shape[1:]
    return np.ascontiguousarray(np.einsum("ai,abfc,bj->fcij", g, dm.reshape(6, 6, f, c), g, optimize=True))


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
