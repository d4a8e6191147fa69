"""What each layer computes for one image, and the filters of the convolution layers."""

from .. import backend
from ..layers import Conv2D


def prepare_one(model, image):
    """One raw image (H, W) or (C, H, W) -> the prepared batch of one (1, C, H, W) on the model's device."""
    x = model.prepare(backend.to_numpy(image)[None])
    return backend.to_device(x, model.device)


def activations(model, image):
    """Every layer's output for one image, in evaluation mode.

    Parameters
    ----------
    model : Sequential
    image : (H, W) or (C, H, W), uint8 0-255 or float 0-1 (as ``model.predict`` takes)

    Returns
    -------
    list of (name, array): ``("input", x)`` with the prepared input (C, H, W), then one
    ``("<i>:<Layer>", out)`` per layer, ``out`` being that layer's output for the image
    without the batch axis ((F, OH, OW) after a convolution, (D,) after Flatten or Dense).
    These are exactly the arrays ``model.forward(x, training=False)`` passes from layer
    to layer; the last one is the logits.
    """
    x = prepare_one(model, image)
    found = [("input", backend.to_numpy(x[0]))]
    for i, layer in enumerate(model.layers):
        x = layer.forward(x, training=False)
        found.append((f"{i}:{type(layer).__name__}", backend.to_numpy(x[0])))
    return found


def conv_filters(model):
    """The weights of every convolution layer (Conv2D and ConvReLUPool), first layer first.

    Returns a list of (name, W) with W a NumPy array (F, C, KH, KW): F filters, each
    looking at C input channels through a KH x KW window.
    """
    return [(f"{i}:{type(layer).__name__}", backend.to_numpy(layer.params["W"]))
            for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]
