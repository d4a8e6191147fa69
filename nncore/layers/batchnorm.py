"""BatchNorm for dense (N, D) and convolutional (N, C, H, W) activations."""

import numpy as np

from .. import backend
from ..errors import UsageError
from ..kernels import kernels_for
from .base import Layer, check_dtype


def add_batchnorm_arrays(layer, num_features, momentum, eps, dtype):
    """Give ``layer`` BatchNorm's momentum, eps, parameters (gamma = 1, beta = 0) and buffers
    (running_mean = 0, running_var = 1), all (num_features,): the fused BatchNorm layers share them."""
    if not 0.0 <= float(momentum) < 1.0:
        raise UsageError(f"{type(layer).__name__} momentum must be in [0, 1), got {momentum!r}")
    if not float(eps) > 0:
        raise UsageError(f"{type(layer).__name__} eps must be positive, got {eps!r}")
    layer.momentum, layer.eps = float(momentum), float(eps)
    layer.params["gamma"] = np.ones(num_features, dtype=dtype)
    layer.params["beta"] = np.zeros(num_features, dtype=dtype)
    layer.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
    layer.buffers["running_var"] = np.ones(num_features, dtype=dtype)


def check_batch_values(m):
    """Training-mode BatchNorm needs M >= 2 values per feature to normalise by (a UsageError otherwise)."""
    if m < 2:
        raise UsageError("BatchNorm in training mode needs at least 2 values per feature; "
                         "use a batch larger than 1 (or evaluation mode)")


def update_running_statistics(layer, mean, var, m):
    """``running = momentum * running + (1 - momentum) * batch`` for the mean and for the variance,
    made unbiased (times M / (M - 1)) first; mean and var are the batch's, over M values per feature."""
    dt = mean.dtype.type
    mom = dt(layer.momentum)
    layer.buffers["running_mean"] = mom * layer.buffers["running_mean"] + (1 - mom) * mean
    unbiased = var * dt(m / (m - 1))
    layer.buffers["running_var"] = mom * layer.buffers["running_var"] + (1 - mom) * unbiased


class BatchNorm(Layer):
    """Batch normalisation over the batch (and, for 4-D inputs, spatial) axes.

    Shapes: x (N, D) or (N, C, H, W); gamma, beta, running_mean, running_var
    have shape (D,) or (C,). Statistics are taken per feature / channel over
    the M = N (or N*H*W) values that share it.

    Training forward::

        mu = mean(x),  var = mean((x - mu)**2)        (biased, over M values)
        xhat = (x - mu) / sqrt(var + eps)
        out = gamma * xhat + beta
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var  = momentum * running_var  + (1 - momentum) * var * M / (M - 1)

    Inference uses the running statistics instead of mu and var.

    Training backward (the compact form, derived from the chain rule through
    mu and var)::

        dbeta  = sum(dout),  dgamma = sum(dout * xhat)
        dx = gamma / sqrt(var + eps) * (dout - dbeta / M - xhat * dgamma / M)

    Evaluation mode (:meth:`eval_forward`, for a gradient through the trained
    network) normalises by the running statistics, which are constants, so
    the backward pass is the one of an affine map::

        xhat = (x - running_mean) / sqrt(running_var + eps)
        dbeta  = sum(dout),  dgamma = sum(dout * xhat)
        dx = dout * gamma / sqrt(running_var + eps)

    Training mode runs through the kernels ``batchnorm_forward`` /
    ``batchnorm_backward`` on an (N, C, P) view (P = H*W, or 1 for dense
    inputs): one pass per channel for the statistics and one for the output.

    A batch with a single value per feature (M = 1) has no variance to
    normalise by: training on it raises a UsageError (use a larger batch, or
    evaluation mode, where the running statistics are used).
    """

    def __init__(self, num_features, momentum=0.9, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = int(num_features)
        if self.num_features < 1:
            raise UsageError(f"BatchNorm num_features must be positive, got {num_features!r}")
        add_batchnorm_arrays(self, self.num_features, momentum, eps, check_dtype(dtype))
        self.cache = None

    def config(self):
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, input_shape):
        if input_shape[0] != self.num_features:
            raise UsageError(f"BatchNorm expects {self.num_features} features/channels, got shape {tuple(input_shape)}")
        return tuple(input_shape)

    @staticmethod
    def _broadcast_shape(x):
        return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    def forward(self, x, training=False):
        self._check_input(x, (2, 4))
        self.output_shape(x.shape[1:])
        xp = backend.get_array_module(x)
        bshape = self._broadcast_shape(x)
        gamma = self.params["gamma"].reshape(bshape)
        beta = self.params["beta"].reshape(bshape)
        if not training:
            self.cache = None                                             # inference: nothing to back-propagate
            mu = self.buffers["running_mean"].reshape(bshape)
            var = self.buffers["running_var"].reshape(bshape)
            return (x - mu) * (gamma / xp.sqrt(var + x.dtype.type(self.eps))) + beta
        m = x.size // self.num_features
        check_batch_values(m)
        x3 = x.reshape(x.shape[0], self.num_features, -1)                  # (N, C, P): P = H*W, or 1
        out, xhat, mu, var, inv_std = kernels_for(x).batchnorm_forward(
            x3, self.params["gamma"], self.params["beta"], self.eps)
        update_running_statistics(self, mu, var, m)
        self.cache = ("training", xhat, inv_std, x.shape)
        return out.reshape(x.shape)

    def eval_forward(self, x):
        """``forward(x, training=False)``, keeping xhat and 1/sqrt(running_var + eps) for :meth:`backward`."""
        out = self.forward(x, training=False)
        xp = backend.get_array_module(x)
        bshape = self._broadcast_shape(x)
        inv_std = 1 / xp.sqrt(self.buffers["running_var"] + x.dtype.type(self.eps))
        xhat = (x - self.buffers["running_mean"].reshape(bshape)) * inv_std.reshape(bshape)
        self.cache = ("evaluation", xhat, inv_std, x.shape)
        return out

    def backward(self, dout):
        if self.cache is None:
            raise UsageError("BatchNorm.backward needs a forward(x, training=True) or eval_forward(x) pass first")
        mode, xhat, inv_std, shape = self.cache
        if mode == "evaluation":
            return self._eval_backward(dout, xhat, inv_std)
        dout3 = dout.reshape(shape[0], self.num_features, -1)
        dx, dgamma, dbeta = kernels_for(dout).batchnorm_backward(
            dout3, xhat, self.params["gamma"], inv_std, need_dx=self.needs_input_grad)
        self.grads["beta"], self.grads["gamma"] = dbeta, dgamma
        return None if dx is None else dx.reshape(shape)

    def _eval_backward(self, dout, xhat, inv_std):
        """Backward of the evaluation-mode affine map (see the class docstring); shapes as dout."""
        axes = (0,) if dout.ndim == 2 else (0, 2, 3)
        bshape = self._broadcast_shape(dout)
        self.grads["beta"] = dout.sum(axis=axes)
        self.grads["gamma"] = (dout * xhat).sum(axis=axes)
        if not self.needs_input_grad:
            return None
        return dout * (self.params["gamma"] * inv_std).reshape(bshape)
