"""nncore: a from-scratch convolutional-network library you can read, and train fast.

Public API::

    import nncore
    model = nncore.load_model("weights/mnist_cnn.npz")
    labels = model.predict(images)          # images: (N, 28, 28) uint8 or float in [0, 1]
    probs = model.predict_proba(images)     # (N, num_classes)
    nncore.classify(model, images)          # dicts: label, confidence, top, ambiguous_with (x/×, 1//)
    model.class_names                       # e.g. ["0", "1", ..., "9"]

Building blocks: :mod:`nncore.layers`, :class:`nncore.Sequential`,
:class:`nncore.SoftmaxCrossEntropy`, :mod:`nncore.optim`,
:mod:`nncore.schedules`, :mod:`nncore.gradcheck`, :mod:`nncore.backend`.
Heavy modules (numba kernels, CuPy, the data pipeline) load on first use.
"""

from . import backend, errors, layers, optim, schedules
from .architectures import cnn, ref_cnn
from .errors import NncoreError
from .expressions import Expression, read_expression
from .losses import SoftmaxCrossEntropy, log_softmax
from .predictions import AMBIGUOUS_PAIRS, classify, describe
from .sequential import Sequential
from .threads import set_num_threads
from .weights import load_model, read_header, save_model

__version__ = "0.1.0"


def preprocess_image(image):
    """Turn any image (path, PIL image or array) into a 28x28 uint8 MNIST-style digit.

    See :func:`nncore.data.preprocess.preprocess_image`.
    """
    from .data.preprocess import preprocess_image as _pre
    return _pre(image)


__all__ = ["AMBIGUOUS_PAIRS", "Expression", "Sequential", "SoftmaxCrossEntropy", "NncoreError", "backend",
           "classify", "cnn", "describe", "errors", "layers", "load_model", "log_softmax", "optim",
           "preprocess_image", "read_expression", "read_header", "ref_cnn", "save_model", "schedules",
           "set_num_threads"]
