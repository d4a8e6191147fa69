"""Convolution as im2col and a matrix product, its adjoint col2im, and the definition by loops."""

from collections import namedtuple

import numpy as np

from ...threads import matmul


def conv_output_size(size, kernel, stride, pad):
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


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
    # exercise: im2col
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
    # end exercise


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
    # exercise: col2im
    n, c, h, w = x_shape
    oh = conv_output_size(h, kh, stride, pad)
    ow = conv_output_size(w, kw, stride, pad)
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols6[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w] if pad else xpad
    # end exercise


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


#: what :func:`conv2d_backward` needs from the forward pass
Conv2DContext = namedtuple("Conv2DContext", "x_shape cols w stride pad")


def conv2d_forward(x, w, b, stride, pad, training=True):
    """A convolution of a batch: im2col and one matrix product (what the Conv2D layer computes).

    Inputs:
    - x: (N, C, H, W); w: (F, C, KH, KW); b: (F,) or None
    - stride >= 1; pad >= 0 rows and columns of zeros on each side
    - training: False at inference, where no backward pass follows, so nothing is kept

    Returns (out, ctx):
    - out: (N, F, OH, OW), ``out[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * xpad[n, c, oh*S + i, ow*S + j]``
    - ctx: what :func:`conv2d_backward` needs (the columns and w), or None when not training

    Computed as::

        cols = im2col(x)                   (C*KH*KW, N*OH*OW)
        y = w.reshape(F, -1) @ cols        (F, N*OH*OW)
        out = rows_to_nchw(y, b)           (N, F, OH, OW), the bias added on the way

    (``matmul`` is ``a @ b``, split over nncore's threads.)
    """
    # exercise: conv
    n, f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    oh, ow = conv_output_size(x.shape[2], kh, stride, pad), conv_output_size(x.shape[3], kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)
    out = rows_to_nchw(matmul(w.reshape(f, -1), cols), b, n, oh, ow)
    return out, (Conv2DContext(x.shape, cols, w, stride, pad) if training else None)
    # end exercise


def conv2d_backward(ctx, dout, need_dx):
    """Gradients of :func:`conv2d_forward`.

    Inputs: ctx from the forward pass; dout (N, F, OH, OW); need_dx: whether dx is wanted.
    Returns (dx, dw, db): dx (N, C, H, W) or None, dw like w (F, C, KH, KW), db (F,)::

        d2, db = nchw_to_rows(dout)        (F, N*OH*OW), (F,)
        dw = d2 @ cols.T                   (F, C*KH*KW)
        dx = col2im(w2.T @ d2)             (N, C, H, W), w2 = w.reshape(F, -1)
    """
    # exercise: conv
    x_shape, cols, w, stride, pad = ctx
    d2, db = nchw_to_rows(dout)
    dw = matmul(d2, cols.T).reshape(w.shape)
    if not need_dx:
        return None, dw, db
    dcols = matmul(w.reshape(w.shape[0], -1).T, d2)                          # (C*KH*KW, N*OH*OW)
    return col2im(dcols, x_shape, w.shape[2], w.shape[3], stride, pad), dw, db
    # end exercise


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
