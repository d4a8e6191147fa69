"""Which algorithm computes a convolution on the CPU, and in what slices at inference.

:func:`~nncore.kernels.cpu.conv2d_forward` and
:func:`~nncore.kernels.cpu.conv_relu_pool_forward` take an ``algorithm`` argument:

==============  ===================================================================
``"auto"``      the default: the fastest path that fits, by the rules below
``"im2col"``    im2col and one GEMM, as the reference kernels do: fits every shape
``"winograd"``  Winograd F(4x4, 3x3) (module ``winograd``): a 3x3 kernel, stride 1,
                padding 1; fused, also 2x2/2 pooling of an even-sized image
``"direct"``    the fused layer straight from the image (module ``direct``): a 3x3
                kernel, stride 1, 2x2/2 pooling, no input gradient (``need_dx=False``)
==============  ===================================================================

An explicit name that cannot handle the shape is a UsageError: asked for a
path, the kernels never silently take another. ``"auto"`` takes the direct
path for a thin first layer (C*9 <= ``DIRECT_WEIGHT_GRAD_ROWS``), else Winograd
from ``WINOGRAD_MIN_CHANNELS`` input channels, else im2col. Within
``with conv_algorithms(winograd=False):`` (or ``direct=False``) ``"auto"`` leaves
that path out; the benchmark's A/B modes compare each path with im2col this way.

At inference (``training=False``) a large batch is convolved in slices of
:func:`inference_slice` images, whatever the algorithm but the direct one.
"""

import contextlib

import numpy as np

from ...errors import UsageError
from ..reference.conv import conv_output_size

ALGORITHMS = ("auto", "im2col", "winograd", "direct")

#: Winograd needs at least this many input channels: its transforms cost the same per channel
#: whatever the layer, and with few channels the products they save are few. Measured with 32
#: filters, forward + backward at batch 128: at 2 channels im2col was faster on 14x14 images
#: (3.0 against 3.9 ms), at 4 about even (3.1 / 3.3 ms), from 8 channels Winograd won (14x14
#: and 28x28; 16 channels on 28x28: 15.6 against 36.8 ms)
WINOGRAD_MIN_CHANNELS = 4

#: a fused first layer (no input gradient) with at most this many C*KH*KW rows takes the direct
#: path when it is 3x3 with 2x2/2 pooling, and otherwise takes its weight gradient straight from
#: the window maxima (``bias_relu_pool_weight_grad``) instead of via d2 and a GEMM
DIRECT_WEIGHT_GRAD_ROWS = 32

#: at inference, large batches are convolved in slices whose im2col matrix and
#: product ((C*KH*KW + F) x slice*OH*OW floats) stay within this many bytes,
#: about the size of the last-level cache, so they never travel to memory
#: (ref-cnn inference at batch 1000 here: ~147 ms unsliced, ~100-130 ms sliced)
INFERENCE_COLS_BYTES = 12 * 2**20

_auto = {"winograd": True, "direct": True}     # the paths "auto" may take


@contextlib.contextmanager
def conv_algorithms(**allowed):
    """Within the block, ``"auto"`` takes only the allowed paths: ``conv_algorithms(winograd=False)``,
    ``conv_algorithms(direct=False)`` (im2col is always allowed). Explicit algorithms are unaffected."""
    for name, on in allowed.items():
        if name not in _auto:
            raise UsageError(f"conv_algorithms: unknown path {name!r}; choose among {sorted(_auto)}")
        if not isinstance(on, bool):
            raise UsageError(f"conv_algorithms: {name} must be True or False, got {on!r}")
    saved = dict(_auto)
    _auto.update(allowed)
    try:
        yield
    finally:
        _auto.update(saved)


def _check_name(algorithm):
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown convolution algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}")


def _winograd_misfit(w_shape, stride, pad):
    """Why Winograd cannot compute this convolution, or None."""
    kh, kw = w_shape[2:]
    if (kh, kw) != (3, 3) or stride != 1 or pad != 1:
        return (f"algorithm 'winograd' needs a 3x3 kernel, stride 1 and padding 1, "
                f"got {kh}x{kw}, stride {stride}, padding {pad}")
    return None


def conv2d_algorithm(x_shape, w_shape, stride, pad, algorithm="auto"):
    """``"im2col"`` or ``"winograd"``: what :func:`conv2d_forward` runs for x (N, C, H, W), w (F, C, KH, KW)."""
    _check_name(algorithm)
    if algorithm == "direct":
        raise UsageError("algorithm 'direct' exists for the fused conv-ReLU-pool only (conv_relu_pool_forward)")
    misfit = _winograd_misfit(w_shape, stride, pad)
    if algorithm == "winograd" and misfit:
        raise UsageError(misfit)
    if algorithm != "auto":
        return algorithm
    return "winograd" if not misfit and _auto["winograd"] and x_shape[1] >= WINOGRAD_MIN_CHANNELS else "im2col"


def conv_relu_pool_algorithm(x_shape, w_shape, stride, pad, pool, pool_stride, need_dx, algorithm="auto"):
    """``"im2col"``, ``"winograd"`` or ``"direct"``: what :func:`conv_relu_pool_forward` runs."""
    _check_name(algorithm)
    c, h, w = x_shape[1:]
    kh, kw = w_shape[2:]
    pool2 = pool == 2 and pool_stride == 2
    direct_misfit = None
    if (kh, kw) != (3, 3) or stride != 1 or not pool2:
        direct_misfit = (f"algorithm 'direct' needs a 3x3 kernel, stride 1 and 2x2/2 pooling, got {kh}x{kw}, "
                         f"stride {stride}, {pool}x{pool}/{pool_stride} pooling")
    elif need_dx:
        direct_misfit = "algorithm 'direct' computes no input gradient: it needs need_dx=False (a first layer)"
    winograd_misfit = _winograd_misfit(w_shape, stride, pad)
    if not winograd_misfit and (not pool2 or h % 2 or w % 2):
        winograd_misfit = (f"algorithm 'winograd' pools 2x2/2 an even-sized image only, "
                           f"got {pool}x{pool}/{pool_stride} pooling of {h}x{w}")
    misfit = {"direct": direct_misfit, "winograd": winograd_misfit}.get(algorithm)
    if misfit:
        raise UsageError(misfit)
    if algorithm != "auto":
        return algorithm
    if not direct_misfit and _auto["direct"] and c * 9 <= DIRECT_WEIGHT_GRAD_ROWS:
        return "direct"
    if not winograd_misfit and _auto["winograd"] and c >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "im2col"


def inference_slice(x_shape, w_shape, stride, pad, itemsize):
    """Images per slice at inference: the most whose im2col matrix and product fit ``INFERENCE_COLS_BYTES``."""
    f, c, kh, kw = w_shape
    oh, ow = conv_output_size(x_shape[2], kh, stride, pad), conv_output_size(x_shape[3], kw, stride, pad)
    return max(1, INFERENCE_COLS_BYTES // ((c * kh * kw + f) * oh * ow * itemsize))


def in_slices(forward, x, step, *args):
    """(out, None): ``forward(x[i:i + step], *args)`` for each slice of ``step`` images, outputs concatenated."""
    return np.concatenate([forward(x[i:i + step], *args)[0] for i in range(0, x.shape[0], step)]), None
