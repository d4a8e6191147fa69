"""Saliency: which input pixels the class score is most sensitive to."""

import numpy as np

from .. import backend
from ..errors import UsageError
from .activations import prepare_one


def saliency(model, image, class_index=None):
    """The gradient of a class score with respect to the input, by the model's own ``backward``.

    The score is the class's logit s_k (before the softmax). The network runs once in
    evaluation mode keeping what ``backward`` needs (:meth:`~nncore.Sequential.eval_forward`:
    BatchNorm's running statistics, no dropout), then ``backward`` receives
    ``dout = e_k`` (1 for class k, 0 elsewhere) and returns ds_k/dx: the same code
    that trains the network, run to the input instead of stopping at the weights.

    Parameters
    ----------
    model : Sequential
    image : (H, W) or (C, H, W), uint8 0-255 or float 0-1
    class_index : int or None (the predicted class)

    Returns
    -------
    grad : (C, H, W) NumPy array of the model's dtype, ds_k/dx with x the prepared input
        (``model.prepare(image)``; multiply by ``1 / input_scaling["std"]`` for the
        gradient per unit of pixel intensity in [0, 1]). A picture usually shows
        ``abs(grad).max(axis=0)``.
    class_index : int, the class whose score was differentiated
    """
    x = prepare_one(model, image)
    was = model.input_grad
    model.set_input_grad(True)
    try:
        logits = model.eval_forward(x)
        k = int(backend.to_numpy(logits[0]).argmax()) if class_index is None else int(class_index)
        if not 0 <= k < model.num_classes:
            raise UsageError(f"class_index must be in [0, {model.num_classes}), got {class_index}")
        xp = backend.get_array_module(logits)
        dout = xp.zeros_like(logits)
        dout[0, k] = 1
        grad = model.backward(dout)
    finally:
        model.set_input_grad(was)
    return np.asarray(backend.to_numpy(grad[0])), k
