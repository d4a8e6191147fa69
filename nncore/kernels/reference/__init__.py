"""Reference kernels in plain NumPy: the lecture version, and the oracle for the fast ones.

One module per concept; read them in this order:

=================  ==============================================================
``conv``           im2col, col2im, the NCHW <-> rows moves, the convolution as im2col and
                   one GEMM (``conv2d_forward``/``conv2d_backward``), and by loops
``pool``           max- and average-pooling
``activations``    the ReLU
``fused``          bias, ReLU and max-pooling in one step after the GEMM, and the whole
                   conv-ReLU-pool (``conv_relu_pool_forward``/``conv_relu_pool_backward``)
``batchnorm``      batch normalisation
``fused_batchnorm`` conv -> BatchNorm -> ReLU -> max-pool and dense -> BatchNorm -> ReLU ->
                   dropout in one step (``conv_bn_relu_pool_forward``/``_backward``,
                   ``dense_bn_relu_dropout_forward``/``_backward``)
``direct``         a thin first layer straight from the image (CPU-only path)
``winograd``       Winograd F(4x4, 3x3) (CPU-only path)
``optim``          the Adam update of one parameter array
=================  ==============================================================

Every function has a twin with the same name and parameters in
:mod:`nncore.kernels.cpu` (numba, the same module names) and, except the
CPU-only paths, in :mod:`nncore.kernels.gpu` (CuPy). The tests check that
the twins return the same arrays as these.

The layers call one function per operation: ``conv2d_forward(x, w, b, stride,
pad, training) -> (out, ctx)`` and ``conv2d_backward(ctx, dout, need_dx) -> (dx,
dw, db)``, and the same pair for the fused conv-ReLU-pool; ``ctx`` is opaque to
them. Here both are im2col and one GEMM, always. The numba package chooses,
behind the same calls, between Winograd, the direct first layer and im2col
(see :mod:`nncore.kernels.cpu.algorithms`); the direct and Winograd functions
here are the oracles of its kernels.

Memory layout conventions (shared by all three kernel packages)
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

from .activations import relu_backward, relu_forward
from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    conv_output_size,
    im2col,
    nchw_to_rows,
    rows_to_nchw,
)
from .direct import conv3x3_relu_pool2_forward, conv3x3_relu_pool2_weight_grad
from .fused import (
    bias_relu_pool_backward,
    bias_relu_pool_forward,
    bias_relu_pool_weight_grad,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from .fused_batchnorm import (
    conv_bn_relu_pool_backward,
    conv_bn_relu_pool_forward,
    dense_bn_relu_dropout_backward,
    dense_bn_relu_dropout_forward,
)
from .optim import adam_update
from .pool import avgpool_backward, avgpool_forward, maxpool_backward, maxpool_forward
from .winograd import (
    winograd_backward,
    winograd_forward,
    winograd_output,
    winograd_output_backward,
    winograd_pool_backward,
    winograd_relu_pool,
    winograd_tile_counts,
    winograd_tiles,
    winograd_tiles_backward,
    winograd_weight_grad,
    winograd_weights,
)

__all__ = [
    "adam_update", "avgpool_backward", "avgpool_forward", "batchnorm_backward", "batchnorm_forward",
    "bias_relu_pool_backward",
    "bias_relu_pool_forward", "bias_relu_pool_weight_grad", "col2im", "conv2d_backward", "conv2d_forward",
    "conv2d_naive", "conv3x3_relu_pool2_forward", "conv3x3_relu_pool2_weight_grad", "conv_bn_relu_pool_backward",
    "conv_bn_relu_pool_forward", "conv_output_size", "conv_relu_pool_backward", "conv_relu_pool_forward",
    "dense_bn_relu_dropout_backward", "dense_bn_relu_dropout_forward", "im2col", "maxpool_backward", "maxpool_forward",
    "nchw_to_rows", "relu_backward", "relu_forward", "rows_to_nchw", "winograd_backward", "winograd_forward",
    "winograd_output", "winograd_output_backward", "winograd_pool_backward", "winograd_relu_pool",
    "winograd_tile_counts", "winograd_tiles", "winograd_tiles_backward", "winograd_weight_grad", "winograd_weights",
]
