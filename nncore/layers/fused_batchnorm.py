"""The BatchNorm blocks of the CNN as single layers: ConvBNReLUPool and DenseBNReLUDropout."""

import numpy as np

from .. import backend
from ..errors import UsageError
from ..kernels import kernels_for
from .base import make_rng
from .batchnorm import add_batchnorm_arrays, check_batch_values, update_running_statistics
from .dense import Dense
from .fused import ConvReLUPool


class ConvBNReLUPool(ConvReLUPool):
    """Conv2D (no bias), BatchNorm, ReLU and MaxPool2D(pool, pool_stride) fused into one layer.

    The same parameters, buffers, outputs and gradients as the four layers in a
    row (the tests check this), under the same names: W, gamma, beta;
    running_mean, running_var. (A bias would be cancelled by BatchNorm's mean.)

    Shapes
    ------
    - x: (N, C, H, W); W: (F, C, KH, KW); gamma, beta, running_mean, running_var: (F,)
    - y = conv(x, W): (N, F, OH, OW), never kept whole when it can be avoided
    - out: (N, F, PH, PW), PH = (OH - pool) // pool_stride + 1

    Training forward (statistics over the M = N*OH*OW values of each channel)::

        xhat = (y - mean) / sqrt(var + eps),   z = gamma * xhat + beta
        out[n, f, ph, pw] = max(0, max_{i,j} z[n, f, ph*S + i, pw*S + j])
        running statistics updated as BatchNorm updates them

    Backward: a pooled gradient flows to its window's arg-max if the ReLU passed
    it, which gives dz; then BatchNorm's backward (dbeta = sum dz, dgamma =
    sum dz*xhat, dy = gamma/sqrt(var + eps) * (dz - dbeta/M - xhat*dgamma/M))
    and Conv2D's (dW, dx).

    Evaluation (``forward(x, training=False)`` and :meth:`eval_forward`): with the
    running statistics BatchNorm is affine per channel and folds into the
    convolution, W' = W * gamma/sqrt(running_var + eps) per filter and
    b' = beta - running_mean * gamma/sqrt(running_var + eps), computed as
    ConvReLUPool; after :meth:`eval_forward` the backward pass gives dx and the
    evaluation-mode gradients of W, gamma and beta.

    Each pass is one kernel call, ``conv_bn_relu_pool_forward`` and
    ``conv_bn_relu_pool_backward`` (:mod:`nncore.kernels.reference.fused_batchnorm`
    composes them of the unfused kernels; the numba ones choose the algorithm).

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, pool, pool_stride, dtype, rng : as :class:`ConvReLUPool`
    momentum, eps : as :class:`BatchNorm`
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, pool=2, pool_stride=None,
                 momentum=0.9, eps=1e-5, dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=False, pool=pool,
                         pool_stride=pool_stride, dtype=dtype, rng=rng)
        add_batchnorm_arrays(self, self.out_channels, momentum, eps, self.params["W"].dtype)

    def config(self):
        conv = {k: v for k, v in super().config().items() if k != "bias"}
        return {**conv, "momentum": self.momentum, "eps": self.eps}

    def forward(self, x, training=False):
        return self._run(x, "train" if training else "infer")

    def eval_forward(self, x):
        return self._run(x, "eval")

    def _run(self, x, mode):
        self._check_input(x, 4)
        _, oh, ow = self.conv_output_shape(x.shape[1:])
        if mode == "train":
            check_batch_values(x.shape[0] * oh * ow)
        p, b = self.params, self.buffers
        out, mean, var, self.ctx = kernels_for(x).conv_bn_relu_pool_forward(
            x, p["W"], p["gamma"], p["beta"], b["running_mean"], b["running_var"], self.eps, self.stride, self.pad,
            self.pool, self.pool_stride, mode, self.needs_input_grad)
        if mode == "train":
            update_running_statistics(self, mean, var, x.shape[0] * oh * ow)
        return out

    def conv_output_shape(self, input_shape):
        """(F, OH, OW): the convolution's output before the pooling (checks the pooled shape too)."""
        self.output_shape(input_shape)
        return super(ConvReLUPool, self).output_shape(input_shape)

    def backward(self, dout):
        dx, self.grads["W"], self.grads["gamma"], self.grads["beta"] = kernels_for(dout).conv_bn_relu_pool_backward(
            self._forward_ctx(), dout, self.needs_input_grad)
        return dx


class DenseBNReLUDropout(Dense):
    """Dense (no bias), BatchNorm, ReLU and Dropout(p) fused into one layer.

    The same parameters, buffers and results as the four layers in a row, with
    the same names (W, gamma, beta; running_mean, running_var). Built with the
    same ``rng`` as ``Dense`` followed by ``Dropout(p, rng=rng.integers(2**32))``
    (as :func:`nncore.cnn` builds them), it draws the same weights and the same
    dropout masks, so a fused and an unfused model give the same numbers.

    Shapes: x (N, D); W (D, M); gamma, beta, running_mean, running_var (M,); out (N, M).

    Training::

        y = x @ W;   z = gamma * (y - mean) / sqrt(var + eps) + beta     (statistics over the batch)
        out = relu(z) * keep / (1 - p)                                    keep = (u >= p), u ~ U[0, 1)

    Backward: dz = dout * keep / (1 - p) where relu(z) > 0, BatchNorm's backward
    to dy, then dW = x.T @ dy and dx = dy @ W.T. Evaluation: no dropout, and
    BatchNorm folded into the product (as :class:`ConvBNReLUPool`).

    ``fixed_keep``: set it to a bool array (N, M) to use those kept entries
    instead of drawing them (gradient checks need the same mask every time).
    One kernel call per pass: ``dense_bn_relu_dropout_forward`` / ``_backward``.
    """

    def __init__(self, in_features, out_features, p=0.0, momentum=0.9, eps=1e-5, dtype=np.float32, rng=None):
        if not 0.0 <= float(p) < 1.0:
            raise UsageError(f"DenseBNReLUDropout p must be in [0, 1), got {p!r}")
        rng = make_rng(rng)
        super().__init__(in_features, out_features, bias=False, dtype=dtype, rng=rng)
        add_batchnorm_arrays(self, self.out_features, momentum, eps, self.params["W"].dtype)
        self.p = float(p)
        self.rng = np.random.default_rng(rng.integers(2**32)) if self.p else None   # drawn after W, as cnn() does
        self.fixed_keep = None

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "p": self.p,
                "momentum": self.momentum, "eps": self.eps}

    def forward(self, x, training=False):
        return self._run(x, "train" if training else "infer")

    def eval_forward(self, x):
        return self._run(x, "eval")

    def _keep(self, x):
        """The entries dropout keeps, drawn on the host as Dropout draws its mask (or ``fixed_keep``)."""
        if self.fixed_keep is not None:
            keep = self.fixed_keep
            if tuple(keep.shape) != (x.shape[0], self.out_features):
                raise UsageError(f"DenseBNReLUDropout.fixed_keep has shape {tuple(keep.shape)}, the output "
                                 f"{(x.shape[0], self.out_features)}")
        else:
            keep = self.rng.random((x.shape[0], self.out_features)) >= self.p
        return backend.get_array_module(x).asarray(keep, dtype=bool)

    def _run(self, x, mode):
        self._check_input(x, 2)
        self.output_shape(x.shape[1:])
        if mode == "train":
            check_batch_values(x.shape[0])
        keep = self._keep(x) if mode == "train" and self.p else None
        p, b = self.params, self.buffers
        out, mean, var, self.cache = kernels_for(x).dense_bn_relu_dropout_forward(
            x, p["W"], p["gamma"], p["beta"], b["running_mean"], b["running_var"], self.eps, keep, self.p, mode,
            self.needs_input_grad)
        if mode == "train":
            update_running_statistics(self, mean, var, x.shape[0])
        return out

    def backward(self, dout):
        if self.cache is None:
            raise UsageError("DenseBNReLUDropout.backward needs a forward(x, training=True) or eval_forward(x) "
                             "pass first")
        dx, self.grads["W"], self.grads["gamma"], self.grads["beta"] = kernels_for(dout).dense_bn_relu_dropout_backward(
            self.cache, dout, self.needs_input_grad)
        return dx
