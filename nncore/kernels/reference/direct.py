"""A thin first layer (3x3, stride 1, 2x2 max-pool) computed straight from the image."""

from .conv import conv_output_size, im2col
from .fused import bias_relu_pool_forward, bias_relu_pool_weight_grad


def conv3x3_relu_pool2_forward(x, w, b, pad):
    """A 3x3, stride-1 convolution, bias, ReLU and 2x2/2 max-pooling straight from the image.

    Inputs: x (N, C, H, W); w (F, C, 3, 3); b (F,) or None; pad (zero padding of H and W).
    Returns (out, arg) exactly as :func:`bias_relu_pool_forward` on
    ``w.reshape(F, -1) @ im2col(x, 3, 3, 1, pad)``, which is how it is written
    here. The fast twin never builds the (C*9, N*OH*OW) column matrix: with
    C*9 at most a few dozen rows (a first layer), the product is too thin
    for BLAS to pay for the memory it costs.
    """
    n, f = x.shape[0], w.shape[0]
    oh, ow = conv_output_size(x.shape[2], 3, 1, pad), conv_output_size(x.shape[3], 3, 1, pad)
    y = w.reshape(f, -1) @ im2col(x, 3, 3, 1, pad)
    return bias_relu_pool_forward(y, b, n, oh, ow, 2, 2)


def conv3x3_relu_pool2_weight_grad(dout, arg, x, pad):
    """Weight and bias gradients of :func:`conv3x3_relu_pool2_forward`, from the image itself.

    Inputs: dout (N, F, PH, PW); arg from the forward pass; x (N, C, H, W).
    Returns (dw2, db): dw2 (F, C*9) and db (F,), equal to
    :func:`bias_relu_pool_weight_grad` with ``cols = im2col(x, 3, 3, 1, pad)``.
    """
    oh, ow = conv_output_size(x.shape[2], 3, 1, pad), conv_output_size(x.shape[3], 3, 1, pad)
    return bias_relu_pool_weight_grad(dout, arg, im2col(x, 3, 3, 1, pad), oh, ow, 2, 2)
