"""All nncore layers, and the registry that rebuilds them from saved configs.

====================  =========================  ===========================
layer                 input -> output            learnable / saved arrays
====================  =========================  ===========================
Conv2D                (N,C,H,W) -> (N,F,OH,OW)   W (F,C,KH,KW), b (F,)
ConvReLUPool          (N,C,H,W) -> (N,F,PH,PW)   W, b (Conv2D -> ReLU -> MaxPool2D fused)
ConvBNReLUPool        (N,C,H,W) -> (N,F,PH,PW)   W, gamma, beta; running_mean, running_var
                                                 (Conv2D -> BatchNorm -> ReLU -> MaxPool2D fused)
MaxPool2D, AvgPool2D  (N,C,H,W) -> (N,C,OH,OW)   -
Dense                 (N,D) -> (N,M)             W (D,M), b (M,)
DenseBNReLUDropout    (N,D) -> (N,M)             W, gamma, beta; running_mean, running_var
                                                 (Dense -> BatchNorm -> ReLU -> Dropout fused)
ReLU, LeakyReLU       any -> same                -
Dropout               any -> same                -
BatchNorm             (N,D) or (N,C,H,W)         gamma, beta; running_mean, running_var
Flatten               (N,...) -> (N,D)           -
====================  =========================  ===========================
"""

from ..errors import CorruptInputError, UsageError
from .activations import LeakyReLU, ReLU
from .base import Layer
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .fused import ConvReLUPool
from .fused_batchnorm import ConvBNReLUPool, DenseBNReLUDropout
from .pool import AvgPool2D, MaxPool2D

LAYERS = {cls.__name__: cls for cls in
          (Conv2D, ConvReLUPool, ConvBNReLUPool, MaxPool2D, AvgPool2D, Dense, DenseBNReLUDropout, ReLU, LeakyReLU,
           Dropout, BatchNorm, Flatten)}


def layer_from_config(spec):
    """Rebuild a layer from ``{"type": name, **config}`` (as saved in a weights file)."""
    spec = dict(spec)
    name = spec.pop("type", None)
    if name not in LAYERS:
        raise CorruptInputError(f"unknown layer type {name!r} in the architecture")
    try:
        return LAYERS[name](**spec)
    except (TypeError, UsageError) as exc:
        raise CorruptInputError(f"bad configuration for layer {name}: {exc}") from None


__all__ = ["Layer", "LAYERS", "layer_from_config"] + list(LAYERS)
