"""Sequential: a stack of layers with batched prediction, a summary and train/eval modes."""

import numpy as np

from . import backend
from .errors import UsageError
from .layers import Layer
from .losses import log_softmax

#: Input scaling of a model that has none stored: pixels in [0, 1], no standardisation.
IDENTITY_SCALING = {"mean": 0.0, "std": 1.0}

#: images per batch of the predict_* methods and of validation: large enough for fast GEMMs, small enough
#: that the activations of a batch stay near 100 MB (the default model at 1000 images a batch peaked at 0.9 GB)
PREDICT_BATCH = 256


class Sequential:
    """Layers applied one after another.

    Parameters
    ----------
    layers : list of :class:`~nncore.layers.Layer`
    input_shape : (C, H, W) or (D,): one sample, without the batch axis
    class_names : list of str, one per output (defaults to "0", "1", ...)
    input_scaling : {"mean": m, "std": s}: raw images are mapped to
        ``(pixels / 255 - m) / s`` (uint8) or ``(pixels - m) / s`` (float in [0, 1])
        before the first layer, by :meth:`prepare` (``predict`` does it for you).
    symbols : optional list of str, a printable symbol per class (e.g. "÷" for "div")

    ``model.forward`` / ``model.backward`` work on prepared float arrays;
    ``model.predict`` / ``model.predict_proba`` take raw images.
    """

    def __init__(self, layers, input_shape, class_names=None, input_scaling=None, symbols=None):
        self.layers = list(layers)
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise UsageError(f"Sequential takes nncore layers, got {type(layer).__name__}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.shapes = self._infer_shapes()
        n_out = self.shapes[-1]
        if len(n_out) != 1:
            raise UsageError(f"the last layer must output a vector per sample, got shape {n_out}")
        self.num_classes = n_out[0]
        self.class_names = [str(c) for c in (class_names if class_names is not None else range(self.num_classes))]
        if len(self.class_names) != self.num_classes:
            raise UsageError(f"{len(self.class_names)} class names for {self.num_classes} outputs")
        self.symbols = [str(s) for s in symbols] if symbols is not None else list(self.class_names)
        self.input_scaling = dict(input_scaling or IDENTITY_SCALING)
        self.training = False
        self.set_input_grad(False)

    # -- structure ---------------------------------------------------------
    def _infer_shapes(self):
        shapes = [self.input_shape]
        for layer in self.layers:
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        return shapes

    def set_input_grad(self, needed):
        """Whether ``backward`` returns the gradient with respect to the model's input.

        Off by default: the first layer then skips computing a gradient nobody uses.
        """
        for i, layer in enumerate(self.layers):
            layer.needs_input_grad = bool(needed) or i > 0
        return self

    @property
    def input_grad(self):
        """True when ``backward`` returns the gradient with respect to the input (see :meth:`set_input_grad`)."""
        return all(layer.needs_input_grad for layer in self.layers)

    def num_params(self):
        return sum(layer.num_params() for layer in self.layers)

    def summary(self):
        """A table of each layer's output shape and parameter count, as a string."""
        rows = [("layer", "output shape", "params")]
        rows.append(("input", str(self.input_shape), "0"))
        for layer, shape in zip(self.layers, self.shapes[1:]):
            rows.append((repr(layer), str(shape), f"{layer.num_params():,}"))
        rows.append(("total", "", f"{self.num_params():,}"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{w0}}  {b:<{w1}}  {c:>10}" for a, b, c in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(-1, "-" * len(lines[0]))
        return "\n".join(lines)

    # -- modes, devices, dtypes ---------------------------------------------
    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    @property
    def dtype(self):
        for layer in self.layers:
            if layer.dtype is not None:
                return layer.dtype
        return np.dtype(np.float32)

    @property
    def device(self):
        for layer in self.layers:
            for p in layer.params.values():
                return backend.device_of(p)
        return "cpu"

    def to(self, device):
        """Move every parameter and buffer to ``"cpu"`` or ``"gpu"``."""
        device = backend.normalize_device(device)
        for layer in self.layers:
            layer.to(device)
        return self

    # -- the one walk over the model's arrays --------------------------------
    def named_arrays(self, kinds=("params", "buffers")):
        """Yield an :class:`~nncore.layers.base.ArrayRef` per array, keyed ``"layers.<i>.<name>"``.

        The one key scheme of nncore: weights files, checkpoints and optimizer
        states all name arrays this way. ``kinds=("params",)`` walks the learned
        arrays only (what an optimizer updates).
        """
        for i, layer in enumerate(self.layers):
            yield from layer.named_arrays(kinds, prefix=f"layers.{i}.")

    def state_dict(self):
        """Host (NumPy) copies of every parameter and buffer: ``{"layers.<i>.<name>": array}``."""
        return {ref.key: backend.to_numpy(ref.value).copy() for ref in self.named_arrays()}

    def load_state_dict(self, arrays):
        """Put the arrays of :meth:`state_dict` (or a weights file) back, on this model's device and dtype.

        Every key must be present with the right shape and finite float values,
        and no other ``layers.`` key may be given; otherwise a UsageError names the
        first problem and the model is left unchanged.
        """
        refs = list(self.named_arrays())
        stray = sorted(set(k for k in arrays if k.startswith("layers.")) - {r.key for r in refs})
        if stray:
            raise UsageError(f"arrays {stray[:3]} do not belong to this model's layers")
        new = []
        for ref in refs:
            if ref.key not in arrays:
                raise UsageError(f"no array {ref.key!r} for {type(ref.layer).__name__}")
            arr = backend.to_numpy(arrays[ref.key])
            if arr.shape != ref.value.shape:
                raise UsageError(f"{ref.key} has shape {arr.shape} but {type(ref.layer).__name__} needs "
                                 f"{tuple(ref.value.shape)}")
            if arr.dtype.kind != "f" or not np.isfinite(arr).all():
                raise UsageError(f"{ref.key} holds non-finite or non-float values")
            new.append(arr.astype(ref.value.dtype))
        device = self.device
        for ref, arr in zip(refs, new):
            ref.set(backend.to_device(arr, device))
        return self

    def all_finite(self):
        """True when no parameter or buffer holds NaN or infinity."""
        return all(bool(backend.get_array_module(r.value).isfinite(r.value).all()) for r in self.named_arrays())

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    # -- math ----------------------------------------------------------------
    def forward(self, x, training=None):
        """Run the layers. x: prepared array (N, *input_shape) of the model's dtype -> logits (N, K)."""
        training = self.training if training is None else training
        if tuple(x.shape[1:]) != self.input_shape:
            raise UsageError(f"model expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def eval_forward(self, x):
        """Evaluation-mode forward that keeps what :meth:`backward` needs: logits (N, K).

        The same outputs as ``forward(x, training=False)`` (BatchNorm's running
        statistics, no dropout), but every layer keeps its backward context, so
        ``backward`` then gives gradients of the trained network as it predicts:
        the saliency maps of :mod:`nncore.explain`. Nothing is updated (no running
        statistics, no optimizer step).
        """
        if tuple(x.shape[1:]) != self.input_shape:
            raise UsageError(f"model expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        for layer in self.layers:
            x = layer.eval_forward(x)
        return x

    def backward(self, dout):
        """Back-propagate dL/dlogits (N, K) through every layer; returns dL/dx or None."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def train_step(self, x, y, loss_fn, optimizer):
        """forward (training mode) + loss + backward + optimizer step. Returns (loss, logits)."""
        logits = self.forward(x, training=True)
        loss = loss_fn.forward(logits, y)
        self.backward(loss_fn.backward())
        optimizer.step()
        return loss, logits

    # -- raw images in, predictions out ----------------------------------------
    def prepare(self, images):
        """Validate raw images and apply the stored input scaling.

        images: (N, H, W) or (N, C, H, W); uint8 (0-255) or float (0-1) or bool.
        Returns a NumPy array (N, C, H, W) of the model's dtype.
        """
        x = backend.to_numpy(images)
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise UsageError(f"images must be a numeric array, got dtype {x.dtype}")
        if len(self.input_shape) == 3 and x.ndim == 3 and self.input_shape[0] == 1:
            x = x[:, None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise UsageError(
                f"images must have shape (N, "
                f"{', '.join(map(str, self.input_shape[1:] if self.input_shape[0] == 1 else self.input_shape))}), "
                f"got {tuple(x.shape)}; resize arbitrary images with nncore.preprocess_image first")
        if x.dtype == np.uint8:
            x01 = x.astype(self.dtype) / self.dtype.type(255)
        elif x.dtype.kind == "b":
            x01 = x.astype(self.dtype)
        elif x.dtype.kind == "f":
            if x.size and not np.isfinite(x).all():
                raise UsageError("images contain NaN or infinite values")
            if x.size and (x.min() < 0 or x.max() > 1):
                raise UsageError(f"float images must lie in [0, 1], got values in [{x.min():g}, {x.max():g}]; "
                                 "pass uint8 for 0-255 pixels")
            x01 = x.astype(self.dtype)
        else:
            raise UsageError(f"images must be uint8 (0-255), float (0-1) or bool, got {x.dtype}")
        m, s = self.input_scaling["mean"], self.input_scaling["std"]
        return (x01 - self.dtype.type(m)) / self.dtype.type(s)

    def predict_log_proba(self, images, batch_size=PREDICT_BATCH):
        """Log class probabilities (N, K) float32 for raw images, in batches in eval mode.

        Computed through log-softmax, so they stay finite where probabilities underflow.
        """
        if int(batch_size) < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        x = self.prepare(images)
        out = np.empty((x.shape[0], self.num_classes), dtype=np.float32)
        device = self.device
        for start in range(0, x.shape[0], batch_size):
            xb = backend.to_device(x[start:start + batch_size], device)
            out[start:start + batch_size] = backend.to_numpy(log_softmax(self.forward(xb, training=False)))
        return out

    def predict_proba(self, images, batch_size=PREDICT_BATCH):
        """Class probabilities (N, K) float32 for raw images, computed in batches in eval mode."""
        return np.exp(self.predict_log_proba(images, batch_size))

    def predict(self, images, batch_size=PREDICT_BATCH):
        """Predicted class indices (N,) int64 for raw images."""
        return self.predict_proba(images, batch_size).argmax(axis=1)
