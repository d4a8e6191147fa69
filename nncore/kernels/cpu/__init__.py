"""Fast CPU kernels, compiled by numba. Same names and results as :mod:`nncore.kernels.reference`.

Each module is the twin of the reference module of the same name (read that
one first: it states the layouts and the math):

=================  ==============================================================
``conv``           im2col, col2im, the NCHW <-> rows moves; ``conv2d_forward`` and
                   ``conv2d_backward`` by Winograd or im2col
``pool``           max-pooling, and the 2x2 window rule (``max4``, ``store_relu``)
                   that every kernel that pools shares
``activations``    the ReLU
``fused``          bias, ReLU and max-pooling in one pass over the GEMM output;
                   ``conv_relu_pool_forward``/``_backward`` by direct, Winograd or im2col
``batchnorm``      batch normalisation
``fused_batchnorm`` conv -> BatchNorm -> ReLU -> max-pool (by the patch moments and the direct
                   kernel for a first layer, else after Winograd or im2col) and dense ->
                   BatchNorm -> ReLU -> dropout
``direct``         a thin first layer straight from the image
``winograd``       Winograd F(4x4, 3x3) transforms and pipelines
``optim``          the Adam update in one pass
``algorithms``     (CPU only) which algorithm a convolution takes, the thresholds
                   behind ``"auto"``, the ``conv_algorithms`` setting, inference slices
``jit``            the numba decorators, and the thread set-up
=================  ==============================================================

The layers call ``conv2d_forward(x, w, b, stride, pad, training)`` and the
fused ``conv_relu_pool_forward(...)`` like the reference ones; the extra
keyword ``algorithm="auto"|"im2col"|"winograd"|"direct"`` asks for one path
(a UsageError when it does not fit the shape), and the context manager
``conv_algorithms(winograd=False)`` / ``(direct=False)`` keeps ``"auto"`` off a
path (see :mod:`.algorithms`).

Each kernel is a loop nest that numba compiles to machine code. ``prange``
(or :func:`nncore.threads.run_slices`) splits the outermost loop over the
threads that :mod:`nncore.threads` configured; each thread owns whole output
planes or whole images, so no two threads ever write the same element and no
atomics or ``np.add.at`` are needed.

Average pooling is not on any shipped model's path, so its CPU twin is the
vectorised NumPy reference itself, as are the Winograd filter transforms,
which touch only the small weight arrays; every other kernel is compiled.

Editing these kernels: numba's on-disk cache notices changes to a kernel's
own file only. ``fused``, ``direct`` and ``winograd`` compile ``pool.max4``
and ``pool.store_relu`` into their kernels, so after editing those two,
delete ``nncore/kernels/cpu/__pycache__`` (or set ``NUMBA_CACHE_DIR`` to a
fresh directory), or the other modules keep running the old code.
"""

from ..reference.conv import conv2d_naive, conv_output_size
from ..reference.pool import avgpool_backward, avgpool_forward  # not on any hot path
from ..reference.winograd import winograd_tile_counts, winograd_weight_grad, winograd_weights  # small arrays
from .activations import relu_backward, relu_forward
from .algorithms import (
    ALGORITHMS,
    DIRECT_WEIGHT_GRAD_ROWS,
    INFERENCE_COLS_BYTES,
    WINOGRAD_MIN_CHANNELS,
    conv2d_algorithm,
    conv_algorithms,
    conv_relu_pool_algorithm,
)
from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import col2im, conv2d_backward, conv2d_forward, im2col, nchw_to_rows, rows_to_nchw
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
from .pool import maxpool_backward, maxpool_forward
from .winograd import (
    WINOGRAD_CHUNK,
    winograd_backward,
    winograd_forward,
    winograd_output,
    winograd_output_backward,
    winograd_pool_backward,
    winograd_relu_pool,
    winograd_tiles,
    winograd_tiles_backward,
)

#: the reference package's names, one for one (its twins are interchangeable; the tests check both lists)...
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
    # ... then the CPU's own: the algorithm choice (module ``algorithms``) and the Winograd pipelines' chunk size
    "ALGORITHMS", "DIRECT_WEIGHT_GRAD_ROWS", "INFERENCE_COLS_BYTES", "WINOGRAD_CHUNK", "WINOGRAD_MIN_CHANNELS",
    "conv2d_algorithm", "conv_algorithms", "conv_relu_pool_algorithm",
]
