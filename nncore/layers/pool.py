"""MaxPool2D and AvgPool2D: downsampling over k x k windows."""

from ..errors import UsageError
from ..kernels import kernels_for
from .base import Layer


class _Pool2D(Layer):
    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise UsageError(f"{type(self).__name__} kernel_size must be a positive integer, got {kernel_size!r}")
        if stride is not None and (not isinstance(stride, int) or stride < 1):
            raise UsageError(f"{type(self).__name__} stride must be a positive integer, got {stride!r}")
        self.k = kernel_size
        self.stride = stride or kernel_size
        self.cache = None

    def config(self):
        return {"kernel_size": self.k, "stride": self.stride}

    def output_shape(self, input_shape):
        c, h, w = input_shape
        if h < self.k or w < self.k:
            raise UsageError(f"{type(self).__name__} input {h}x{w} is smaller than its window {self.k}")
        return (c, (h - self.k) // self.stride + 1, (w - self.k) // self.stride + 1)


class MaxPool2D(_Pool2D):
    """Max pooling over k x k windows with stride S (default S = k).

    Shapes: x (N, C, H, W) -> out (N, C, OH, OW), OH = (H - k) // S + 1.
    Rows or columns that do not fill a window are dropped (floor mode).

    Forward: ``out[n, c, oh, ow] = max_{i,j} x[n, c, oh*S + i, ow*S + j]``.

    Backward: the max is locally the identity on its winning input and
    constant in the others, so ``dx`` is ``dout`` routed to the arg-max of
    each window and zero elsewhere. With ties, exactly one input (the first
    in row-major order) receives the gradient.
    """

    def forward(self, x, training=False):
        self._check_input(x, 4)
        self.output_shape(x.shape[1:])
        out, arg = kernels_for(x).maxpool_forward(x, self.k, self.stride)
        self.cache = (x.shape, arg)
        return out

    def backward(self, dout):
        x_shape, arg = self.cache
        return kernels_for(dout).maxpool_backward(dout, arg, x_shape, self.k, self.stride)


class AvgPool2D(_Pool2D):
    """Average pooling over k x k windows with stride S (default S = k).

    Shapes: x (N, C, H, W) -> out (N, C, OH, OW).
    Forward: ``out = mean_{i,j} x[n, c, oh*S + i, ow*S + j]``.
    Backward: every input of a window receives ``dout / k**2`` (summed over
    the windows that contain it when they overlap).
    """

    def forward(self, x, training=False):
        self._check_input(x, 4)
        self.output_shape(x.shape[1:])
        self.cache = x.shape
        return kernels_for(x).avgpool_forward(x, self.k, self.stride)

    def backward(self, dout):
        return kernels_for(dout).avgpool_backward(dout, self.cache, self.k, self.stride)
