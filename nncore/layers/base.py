"""The Layer contract that every nncore layer follows.

A layer is a small object with two methods and two dicts:

* ``forward(x, training=False)`` computes the output and caches on the
  instance what ``backward`` will need (the convolutions only when
  ``training=True``: at inference they keep nothing);
* ``eval_forward(x)`` computes exactly what ``forward(x, training=False)``
  computes (BatchNorm's running statistics, no dropout) and keeps what
  ``backward`` needs, so a gradient can flow through the frozen network:
  the saliency maps of :mod:`nncore.explain` use it;
* ``backward(dout)`` takes the gradient of the loss with respect to the
  output and returns the gradient with respect to the input. It fills
  ``self.grads`` and never modifies ``dout``;
* ``params``: name -> learnable array; ``grads``: the same names -> their
  gradients after ``backward``;
* ``buffers``: name -> state that is saved with the weights but not learned
  (BatchNorm's running statistics).

Because every layer exposes the same dicts, one optimizer, one gradient
checker and one weights file format serve all of them. An optimizer step is
never taken inside ``backward``.

dtype: a layer's output has its input's dtype. Layers with parameters refuse
an input whose dtype differs from their parameters' (float32 for training,
float64 for gradient checks) instead of silently upcasting.
"""

from typing import NamedTuple

import numpy as np

from .. import backend
from ..errors import UsageError


class ArrayRef(NamedTuple):
    """One parameter or buffer of a layer, as :meth:`Layer.named_arrays` yields it.

    ``key`` names it (``"W"`` in a layer, ``"layers.0.W"`` in a model); ``value``
    reads it and ``set(new)`` replaces it, so every walk over a model's arrays
    (weights files, checkpoints, optimizers, device moves, checks) goes through
    this one record.
    """

    key: str
    layer: "Layer"
    kind: str      # "params" (learned) or "buffers" (saved, not learned)
    name: str

    @property
    def value(self):
        return getattr(self.layer, self.kind)[self.name]

    def set(self, value):
        getattr(self.layer, self.kind)[self.name] = value


class Layer:
    """Base class. Subclasses set ``params``/``buffers`` in ``__init__``."""

    #: set to False by the model for its first layer: the input needs no gradient
    needs_input_grad = True

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    # -- the contract ------------------------------------------------------
    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def eval_forward(self, x):
        """Evaluation-mode forward that keeps what ``backward`` needs.

        The default suits layers whose inference forward already keeps their
        cache (ReLU, pooling, Dense, Flatten; Dropout is then the identity, and so
        is its backward). Conv2D and BatchNorm override it.
        """
        return self.forward(x, training=False)

    def output_shape(self, input_shape):
        """Shape of one output sample for one input sample of ``input_shape`` (no batch axis)."""
        return tuple(input_shape)

    def config(self):
        """Constructor arguments, JSON-serialisable: saved with the weights to rebuild the layer."""
        return {}

    # -- helpers shared by all layers ---------------------------------------
    @property
    def dtype(self):
        """dtype of the parameters (None for layers without parameters)."""
        for p in self.params.values():
            return p.dtype
        return None

    def _check_input(self, x, ndim=None):
        """Refuse wrong ranks and dtypes with a clear message (no silent casts)."""
        if ndim is not None and x.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
            raise UsageError(f"{type(self).__name__} expects a {ndim}-D input, got shape {tuple(x.shape)}")
        dt = self.dtype
        if dt is not None and x.dtype != dt:
            raise UsageError(
                f"{type(self).__name__} has {dt} parameters but got a {x.dtype} input; "
                f"convert the input (or call model.astype({dt.name!r}))"
            )

    def num_params(self):
        """Total number of learnable scalars."""
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    def named_arrays(self, kinds=("params", "buffers"), prefix=""):
        """Yield an :class:`ArrayRef` for each parameter, then each buffer (keys ``prefix + name``)."""
        for kind in kinds:
            for name in getattr(self, kind):
                yield ArrayRef(prefix + name, self, kind, name)

    def astype(self, dtype):
        """Cast parameters and buffers to ``dtype`` (e.g. float64 for a gradient check)."""
        for ref in self.named_arrays():
            ref.set(ref.value.astype(dtype))
        self.grads = {}
        return self

    def to(self, device):
        """Move parameters and buffers to ``"cpu"`` or ``"gpu"``."""
        for ref in self.named_arrays():
            ref.set(backend.to_device(ref.value, device))
        self.grads = {}
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def make_rng(rng):
    """A NumPy Generator from None, a seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def check_dtype(dtype):
    """Only float32 and float64 are supported for parameters."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise UsageError(f"dtype must be float32 or float64, got {dt}")
    return dt
