"""Fast CPU kernels, compiled by numba. Same names and results as :mod:`nncore.kernels.reference`.

Each module is the twin of the reference module of the same name (read that
one first: it states the layouts and the math):

=================  ==============================================================
``conv``           im2col, col2im, the NCHW <-> rows moves
``pool``           max-pooling, and the 2x2 window rule (``max4``, ``store_relu``)
                   that every kernel that pools shares
``activations``    the ReLU
``fused``          bias, ReLU and max-pooling in one pass over the GEMM output
``batchnorm``      batch normalisation
``direct``         a thin first layer straight from the image
``winograd``       Winograd F(4x4, 3x3) transforms and pipelines
``jit``            the two numba decorators, and the thread set-up
=================  ==============================================================

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

from .. import reference as _reference
from ..reference.conv import conv2d_naive, conv_output_size
from ..reference.pool import avgpool_backward, avgpool_forward              # not on any hot path
from ..reference.winograd import winograd_tile_counts, winograd_weight_grad, winograd_weights  # small arrays
from .activations import relu_backward, relu_forward
from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import col2im, im2col, nchw_to_rows, rows_to_nchw
from .direct import conv3x3_relu_pool2_forward, conv3x3_relu_pool2_weight_grad
from .fused import conv_relu_pool_backward, conv_relu_pool_forward, conv_relu_pool_weight_grad
from .pool import maxpool_backward, maxpool_forward
from .winograd import (WINOGRAD_CHUNK, winograd_backward, winograd_forward, winograd_output, winograd_output_backward,
                       winograd_pool_backward, winograd_relu_pool, winograd_tiles, winograd_tiles_backward)

#: ConvReLUPool computes a thin first layer (3x3, stride 1, C*9 <= 32 rows, 2x2 pool)
#: with :func:`conv3x3_relu_pool2_forward` instead of im2col and a GEMM (see that layer)
DIRECT_FIRST_LAYER = True

#: Conv2D and ConvReLUPool compute a 3x3, stride-1, padding-1 convolution (ConvReLUPool: of even-sized
#: images) by Winograd F(4x4, 3x3) (module ``winograd``) instead of im2col and a GEMM
WINOGRAD = True

#: the reference package's names, one for one (its twins are interchangeable), and the pipelines' chunk size
__all__ = _reference.__all__ + ["WINOGRAD_CHUNK"]
