"""Gradient checks: each layer's backward pass against central differences, in float64.

How to read these tests (lecture notes)
--------------------------------------
``check_layer`` draws a random upstream gradient g and compares what
``backward(g)`` returns with the numerical gradient of the scalar
``sum(g * forward(x))``, for the input and every parameter. In float64 with
h = 1e-6 the central difference is accurate to about h**2 plus rounding
(~1e-10 relative), so a correct layer lands far below the tolerance
``LAYER_TOLERANCE = 1e-6`` and a wrong one lands near 1.

Inputs are chosen where the function is smooth: ReLU inputs stay at least
0.1 away from the kink at 0, and max-pool inputs have distinct values 0.01
apart, so no perturbation of size h can change which input is the maximum.
These helpers (``away_from_zero``, ``distinct_values``, ``smoothness_margin``,
``small_cnn``) live in :mod:`nncore.gradcheck`, shared with
``experiments/gradcheck.py``.
"""

import numpy as np
import pytest

from nncore import gradcheck
from nncore.errors import UsageError
from nncore.gradcheck import (
    LAYER_TOLERANCE,
    NETWORK_TOLERANCE,
    away_from_zero,
    check_layer,
    check_model,
    distinct_values,
    small_cnn,
    smoothness_margin,
)
from nncore.kernels import set_cpu_kernels
from nncore.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    ConvReLUPool,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ReLU,
)
from nncore.sequential import Sequential

F64 = np.float64


@pytest.fixture(params=["numba", "reference"])
def kernels(request):
    """Every check runs with both kernel sets: the fast one and the readable one."""
    set_cpu_kernels(request.param)
    yield request.param
    set_cpu_kernels("numba")


def path_of(layer):
    """The algorithm a conv layer's last training forward pass took, read from the kernels' ctx type
    (opaque to the layer; the tests look inside to know which path they checked)."""
    return {"WinogradContext": "winograd", "DirectContext": "direct", "Conv2DContext": "im2col",
            "ConvReLUPoolContext": "im2col"}[type(layer.ctx).__name__]


def assert_all_pass(results):
    """Every row passes, and there is at least one (an empty check would pass vacuously)."""
    assert results, "the check compared nothing"
    table = gradcheck.format_table(results)
    assert all(r.passed for r in results), "\n" + table


@pytest.mark.parametrize("n,c,h,w,f,k,stride,pad", [
    (2, 3, 5, 5, 4, 3, 1, 1),    # the usual 3x3 'same' convolution
    (2, 2, 7, 6, 3, 3, 2, 1),    # stride 2 with padding 1
    (1, 3, 6, 6, 2, 2, 2, 0),    # batch of one, even kernel, no padding
    (2, 1, 8, 7, 2, 5, 1, 2),    # large kernel, odd width
    (3, 2, 5, 5, 2, 1, 1, 0),    # 1x1 convolution
])
def test_conv2d(kernels, n, c, h, w, f, k, stride, pad):
    layer = Conv2D(c, f, k, stride=stride, padding=pad, dtype=F64, rng=0)
    layer.params["b"] = np.random.default_rng(1).standard_normal(f)
    assert_all_pass(check_layer(layer, np.random.default_rng(2).standard_normal((n, c, h, w))))


def test_conv2d_same_padding_keeps_size_and_checks(kernels):
    layer = Conv2D(2, 3, 5, padding="same", dtype=F64, rng=0)
    x = np.random.default_rng(3).standard_normal((2, 2, 6, 5))
    assert layer.forward(x).shape == (2, 3, 6, 5)
    assert_all_pass(check_layer(layer, x))


@pytest.mark.parametrize("shape,k,s", [((2, 3, 6, 6), 2, 2), ((1, 2, 7, 5), 3, 2), ((2, 2, 5, 5), 2, 1)])
def test_maxpool(kernels, shape, k, s):
    assert_all_pass(check_layer(MaxPool2D(k, s), distinct_values(shape, 4)))


@pytest.mark.parametrize("shape,k,s", [((2, 3, 6, 6), 2, 2), ((1, 2, 7, 5), 3, 2), ((2, 2, 5, 5), 2, 1)])
def test_avgpool(kernels, shape, k, s):
    assert_all_pass(check_layer(AvgPool2D(k, s), np.random.default_rng(5).standard_normal(shape)))


@pytest.mark.parametrize("n,d,m", [(4, 7, 5), (1, 3, 2), (6, 20, 10)])
def test_dense(n, d, m):
    layer = Dense(d, m, dtype=F64, rng=0)
    layer.params["b"] = np.random.default_rng(1).standard_normal(m)
    assert_all_pass(check_layer(layer, np.random.default_rng(6).standard_normal((n, d))))


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_relu(kernels, shape):
    assert_all_pass(check_layer(ReLU(), away_from_zero(shape, 7)))


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_leaky_relu(shape):
    assert_all_pass(check_layer(LeakyReLU(0.1), away_from_zero(shape, 8)))


def test_flatten():
    assert_all_pass(check_layer(Flatten(), np.random.default_rng(9).standard_normal((3, 2, 4, 5))))


@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4, 5)])
def test_dropout_with_fixed_mask(shape):
    """Dropout is linear in x once the mask is fixed; a fresh mask per evaluation would make f random."""
    layer = Dropout(0.4, rng=0)
    keep = np.random.default_rng(10).random(shape) >= 0.4
    layer.fixed_mask = keep / 0.6
    assert_all_pass(check_layer(layer, np.random.default_rng(11).standard_normal(shape), training=True))


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 4, 5), (1, 3, 3, 3)])
def test_batchnorm_training_mode(kernels, shape):
    """Training mode: the statistics depend on x, so this checks the full chain rule through mean and variance."""
    layer = BatchNorm(shape[1], dtype=F64)
    rng = np.random.default_rng(12)
    layer.params["gamma"] = rng.uniform(0.5, 1.5, shape[1])
    layer.params["beta"] = rng.standard_normal(shape[1])
    assert_all_pass(check_layer(layer, rng.standard_normal(shape) * 2 + 1, training=True))


def batchnorm_with_statistics(rng):
    """A float64 BatchNorm(3) with random running statistics, gamma and beta: (layer, mean, var)."""
    layer = BatchNorm(3, dtype=F64)
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    layer.buffers["running_mean"], layer.buffers["running_var"] = mean.copy(), var.copy()
    layer.params["gamma"] = rng.uniform(0.5, 1.5, 3)
    layer.params["beta"] = rng.standard_normal(3)
    return layer, mean, var


def test_batchnorm_inference_mode():
    """Evaluation mode normalises with the running statistics (as they were) and leaves them unchanged."""
    rng = np.random.default_rng(13)
    layer, mean, var = batchnorm_with_statistics(rng)
    x = rng.standard_normal((4, 3, 2, 2))
    out = layer.forward(x, training=False)
    c = (1, 3, 1, 1)
    expected = ((x - mean.reshape(c)) / np.sqrt(var.reshape(c) + layer.eps) * layer.params["gamma"].reshape(c)
                + layer.params["beta"].reshape(c))
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)
    np.testing.assert_array_equal(layer.buffers["running_var"], var)


def test_small_cnn_end_to_end(kernels):
    """The chain rule across layers: loss gradient w.r.t. every parameter and the input of a small CNN."""
    model = small_cnn()
    for layer in model.layers:  # non-zero biases so that no bias gradient is trivially right
        if "b" in layer.params:
            layer.params["b"] = np.random.default_rng(5).standard_normal(layer.params["b"].shape) * 0.1
    x = np.random.default_rng(14).standard_normal((3, 1, 8, 8))
    assert smoothness_margin(model, x) > 1e-4, "pick another seed: the check point is near a kink or tie"
    results = check_model(model, x, np.array([0, 2, 1]))
    assert_all_pass(results)
    assert [(r.layer, r.array) for r in results] == [("model", "x")] + [  # the input and every parameter
        (f"{i}:{type(layer).__name__}", name) for i, layer in enumerate(model.layers) for name in layer.params]


def test_gradcheck_catches_a_wrong_backward():
    """A check that cannot fail proves nothing: break ReLU's backward and watch it fail."""
    class BrokenReLU(ReLU):
        def backward(self, dout):
            return dout  # forgets the mask

    results = check_layer(BrokenReLU(), away_from_zero((4, 5), 15))
    assert not results[0].passed and results[0].rel_error > 0.1


def test_gradcheck_refuses_float32():
    with pytest.raises(UsageError, match="float64"):
        check_layer(Dense(3, 2, rng=0), np.zeros((2, 3), np.float32))


class SlightlyWrongDense(Dense):
    """dW off by one part in 10**4: invisible in training, a bug all the same."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * (1 + 1e-4)
        return dx


class SlightlyWrongLeakyReLU(LeakyReLU):
    """The negative slope's gradient off by 0.1%."""

    def backward(self, dout):
        return np.where(self.positive, dout, dout * (self.alpha * 1.001))


@pytest.mark.parametrize("cls", [Dense, SlightlyWrongDense])
def test_layer_tolerance_separates_right_from_subtly_wrong(cls):
    """A correct backward lands 100x below LAYER_TOLERANCE (rounding cannot fail it), a backward
    off by 1e-4 lands above it (the tolerance is tight enough to catch it)."""
    layer = cls(7, 5, dtype=F64, rng=0)
    layer.params["b"] = np.random.default_rng(1).standard_normal(5)
    errors = {r.array: r.rel_error for r in check_layer(layer, np.random.default_rng(6).standard_normal((4, 7)))}
    assert max(errors["x"], errors["b"]) < LAYER_TOLERANCE / 100
    if cls is Dense:
        assert errors["W"] < LAYER_TOLERANCE / 100
    else:
        assert errors["W"] > LAYER_TOLERANCE


@pytest.mark.parametrize("wrong", [False, True])
def test_network_tolerance_separates_right_from_subtly_wrong(wrong):
    """The same for NETWORK_TOLERANCE: a LeakyReLU whose backward slope is off by 0.1% fails every
    gradient upstream of it (the input and layers 0-4), and nothing downstream."""
    model = small_cnn()
    if wrong:
        model.layers[5] = SlightlyWrongLeakyReLU(0.1)
    x = np.random.default_rng(14).standard_normal((3, 1, 8, 8))
    results = check_model(model, x, np.array([0, 2, 1]))
    upstream = [r for r in results if r.layer == "model" or int(r.layer.split(":")[0]) < 5]
    downstream = [r for r in results if r not in upstream]
    assert upstream and downstream
    assert max(r.rel_error for r in downstream) < NETWORK_TOLERANCE / 100
    if wrong:
        assert min(r.rel_error for r in upstream) > NETWORK_TOLERANCE
    else:
        assert max(r.rel_error for r in upstream) < NETWORK_TOLERANCE / 100


@pytest.mark.parametrize("input_grad", [False, True])
def test_check_model_leaves_the_model_as_it_found_it(input_grad):
    """The caller's input-gradient setting and BatchNorm's running statistics survive the check
    (which turns input gradients on and runs hundreds of training-mode forwards), even when it fails."""
    model = small_cnn().set_input_grad(input_grad)
    stats = {k: v.copy() for k, v in model.layers[4].buffers.items()}
    x = np.random.default_rng(14).standard_normal((3, 1, 8, 8))
    check_model(model, x, np.array([0, 2, 1]))
    with pytest.raises(UsageError, match="labels"):
        check_model(model, x, np.array([0, 2]))
    for name, value in stats.items():
        np.testing.assert_array_equal(model.layers[4].buffers[name], value)
    assert model.input_grad is input_grad
    logits = model.forward(x, training=True)
    dx = model.backward(np.ones_like(logits))
    assert (dx is not None) == input_grad


def test_check_layer_keeps_batchnorm_running_statistics():
    layer = BatchNorm(3, dtype=F64)
    stats = {k: v.copy() for k, v in layer.buffers.items()}
    assert_all_pass(check_layer(layer, np.random.default_rng(12).standard_normal((4, 3))))
    for name, value in stats.items():
        np.testing.assert_array_equal(layer.buffers[name], value)


def test_smoothness_margin_sees_leaky_relu_kinks_and_ties_in_strided_windows():
    """A LeakyReLU input at 0 is a kink; a tie in any pooling window (overlapping ones too) is a tie."""
    model = Sequential([LeakyReLU(0.1), MaxPool2D(3, 2), Flatten(), Dense(4, 2, dtype=F64, rng=0)], (1, 5, 5))
    x = distinct_values((1, 1, 5, 5), 0)                       # all in [-1, -0.76], 0.01 apart
    assert smoothness_margin(model, x) > 0.0009                 # at least 0.01 apart, times the 0.1 slope
    kink = x.copy()
    kink[0, 0, 0, 0] = 0.0
    assert smoothness_margin(model, kink) == 0
    tie = x.copy()
    tie[0, 0, 3, 3] = tie[0, 0, 4, 4] = 5.0                     # only in the window at rows/cols 2-4
    assert smoothness_margin(model, tie) == 0


def test_conv_relu_pool_fused_layer(kernels):
    """The fused layer, checked like any other (weights chosen so no conv output sits near 0 or a tie)."""
    from nncore.layers import ConvReLUPool
    layer = ConvReLUPool(2, 3, 3, padding=1, dtype=F64, rng=0)
    x = np.random.default_rng(16).standard_normal((2, 2, 6, 6))
    conv_out = Conv2D(2, 3, 3, padding=1, dtype=F64, rng=0).forward(x)   # the same weights, unfused
    assert np.abs(conv_out).min() > 1e-4                                 # away from the ReLU kink
    windows = np.sort(conv_out.reshape(2, 3, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 3, 3, 4), axis=-1)
    assert (windows[..., -1] - windows[..., -2]).min() > 1e-4           # and from pooling ties
    assert_all_pass(check_layer(layer, x))


@pytest.mark.parametrize("c,f,h,w,bias,input_grad", [(4, 2, 4, 8, True, True), (5, 3, 6, 4, False, True),
                                                      (6, 2, 4, 6, True, False)])
def test_winograd_conv_relu_pool(kernels, c, f, h, w, bias, input_grad):
    """3x3, stride 1, padding 1, 2x2/2 pooling, even sizes, at least 4 input channels: the numba
    kernels take the Winograd path (the reference ones im2col); with and without bias and input
    gradient, on non-square images."""
    from nncore.layers import ConvReLUPool
    layer = ConvReLUPool(c, f, 3, padding=1, bias=bias, dtype=F64, rng=2)
    layer.needs_input_grad = input_grad
    x = np.random.default_rng(25).standard_normal((2, c, h, w))
    conv_out = Conv2D(c, f, 3, padding=1, bias=bias, dtype=F64, rng=2).forward(x)
    assert np.abs(conv_out).min() > 1e-4
    windows = np.sort(conv_out.reshape(2, f, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
                      .reshape(2, f, h // 2, w // 2, 4), axis=-1)
    assert (windows[..., -1] - windows[..., -2]).min() > 1e-4
    results = check_layer(layer, x)
    assert [r.array for r in results] == (["x"] if input_grad else []) + ["W"] + (["b"] if bias else [])
    assert_all_pass(results)
    layer.forward(x, training=True)
    assert (path_of(layer) == "winograd") == (kernels == "numba")


@pytest.mark.parametrize("c,f,h,w,bias,input_grad", [(4, 3, 4, 6, True, True), (5, 2, 6, 6, False, True),
                                                      (4, 2, 2, 4, True, False), (4, 2, 7, 5, True, True)])
def test_winograd_conv2d(kernels, c, f, h, w, bias, input_grad):
    """The plain Conv2D takes Winograd F(4x4, 3x3) under the same conditions (numba kernels), odd sizes
    too (the last tiles cropped), writing every output tile with its bias; checked like any layer (it
    is linear, so no kink to avoid)."""
    layer = Conv2D(c, f, 3, padding=1, bias=bias, dtype=F64, rng=5)
    layer.needs_input_grad = input_grad
    x = np.random.default_rng(28).standard_normal((2, c, h, w))
    results = check_layer(layer, x)
    assert [r.array for r in results] == (["x"] if input_grad else []) + ["W"] + (["b"] if bias else [])
    assert_all_pass(results)
    layer.forward(x, training=True)
    assert (path_of(layer) == "winograd") == (kernels == "numba")


def test_winograd_conditions():
    """Fewer than 4 input channels, other kernels, strides or paddings, and odd sizes when pooling:
    im2col instead (the numba package's choice, asked with the shapes the layers pass it)."""
    from nncore.kernels import cpu
    from nncore.layers import ConvReLUPool

    def conv(layer, x):
        return cpu.conv2d_algorithm(x.shape, layer.params["W"].shape, layer.stride, layer.pad)

    def fused(layer, x):
        return cpu.conv_relu_pool_algorithm(x.shape, layer.params["W"].shape, layer.stride, layer.pad, layer.pool,
                                            layer.pool_stride, layer.needs_input_grad)

    x = np.zeros((1, 4, 6, 6))
    assert conv(Conv2D(4, 2, 3, padding=1), x) == "winograd"
    assert conv(Conv2D(4, 2, 3, padding=1), x[:, :, :5]) == "winograd"
    assert conv(Conv2D(3, 2, 3, padding=1), x[:, :3]) == "im2col"
    assert conv(Conv2D(4, 2, 5, padding=2), x) == "im2col"
    assert conv(Conv2D(4, 2, 3, padding=1, stride=2), x) == "im2col"
    assert conv(Conv2D(4, 2, 3, padding=0), x) == "im2col"
    assert fused(ConvReLUPool(4, 2, 3, padding=1), x) == "winograd"
    assert fused(ConvReLUPool(4, 2, 3, padding=1, pool=3), x) == "im2col"
    assert fused(ConvReLUPool(4, 2, 3, padding=1), x[:, :, :5]) == "im2col"
    set_cpu_kernels("reference")
    try:
        layer = Conv2D(4, 2, 3, padding=1, dtype=F64)
        layer.forward(x, training=True)
        assert path_of(layer) == "im2col"
    finally:
        set_cpu_kernels("numba")


def test_odd_sizes_leave_the_winograd_path():
    """A 7x7 input (a 3x3 pooled map drops the last conv row): im2col, same results as unfused."""
    from nncore.kernels import cpu
    from nncore.layers import ConvReLUPool
    set_cpu_kernels("numba")
    layer = ConvReLUPool(4, 3, 3, padding=1, dtype=F64, rng=4)
    x = np.random.default_rng(26).standard_normal((2, 4, 7, 7))
    w_shape = layer.params["W"].shape
    assert cpu.conv_relu_pool_algorithm(x.shape, w_shape, 1, 1, 2, 2, True) == "im2col"
    assert cpu.conv_relu_pool_algorithm(x[:, :, :6, :6].shape, w_shape, 1, 1, 2, 2, True) == "winograd"
    want = x
    for unfused in (Conv2D(4, 3, 3, padding=1, dtype=F64, rng=4), ReLU(), MaxPool2D(2)):
        want = unfused.forward(want, training=True)
    np.testing.assert_allclose(layer.forward(x, training=True), want, rtol=1e-12, atol=1e-12)
    assert path_of(layer) == "im2col"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_ref_cnn_equals_the_unfused_one(dtype):
    """Same seed, same parameters: the same logits and the same gradients.

    Bit for bit with the reference kernels. With the numba kernels the fused
    first layer convolves directly (conv3x3_relu_pool2_forward), summing the
    nine taps in another order, and the second by Winograd F(4x4, 3x3), so
    the two agree to rounding.
    """
    import nncore
    rng = np.random.default_rng(17)
    x = rng.standard_normal((8, 1, 28, 28)).astype(dtype)
    plain, fused = nncore.ref_cnn(seed=3, dtype=dtype), nncore.ref_cnn(seed=3, dtype=dtype, fused=True)
    out_p, out_f = plain.forward(x, training=True), fused.forward(x, training=True)
    np.testing.assert_allclose(out_p, out_f, **(dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else
                                                  dict(rtol=1e-12, atol=1e-12)))
    d = rng.standard_normal(out_p.shape).astype(dtype)
    plain.backward(d)
    fused.backward(d)
    for i_plain, i_fused in ((0, 0), (3, 1), (7, 3), (9, 5)):
        for name in ("W", "b"):
            # sums in another order (Winograd: of transformed tiles): equal to float32 rounding of the
            # gradient's largest entry, and to 1e-10 in float64
            want = plain.layers[i_plain].grads[name]
            tol = (dict(rtol=1e-4, atol=1e-5 * np.abs(want).max()) if dtype == np.float32 else
                   dict(rtol=1e-10, atol=1e-12))
            np.testing.assert_allclose(want, fused.layers[i_fused].grads[name], **tol)


def test_conv_relu_pool_as_a_first_layer(kernels):
    """As a first layer (no input gradient) the fused layer sums dW straight from the window maxima.

    With the numba kernels this is the direct path (no im2col, no GEMM), with
    the reference kernels the im2col one: both are checked.
    """
    from nncore.layers import ConvReLUPool
    layer = ConvReLUPool(1, 3, 3, padding=1, dtype=F64, rng=0)
    layer.needs_input_grad = False
    x = np.random.default_rng(18).standard_normal((2, 1, 6, 6))
    conv_out = Conv2D(1, 3, 3, padding=1, dtype=F64, rng=0).forward(x)
    assert np.abs(conv_out).min() > 1e-4
    results = check_layer(layer, x)
    assert [r.array for r in results] == ["W", "b"]
    assert_all_pass(results)
    layer.forward(x, training=True)
    assert (path_of(layer) == "direct") == (kernels == "numba")


def test_direct_first_layer_with_three_channels_and_no_padding(kernels):
    """An RGB-like first layer (C*9 = 27 rows) without padding, odd sizes: still exact."""
    from nncore.layers import ConvReLUPool
    layer = ConvReLUPool(3, 2, 3, padding=0, dtype=F64, rng=1)
    layer.needs_input_grad = False
    x = np.random.default_rng(19).standard_normal((2, 3, 7, 9))
    conv_out = Conv2D(3, 2, 3, padding=0, dtype=F64, rng=1).forward(x)   # 5x7: the last row and column
    assert np.abs(conv_out).min() > 1e-4                                  # fall outside the 2x2 windows
    windows = np.sort(conv_out[:, :, :4, :6].reshape(2, 2, 2, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5)
                      .reshape(2, 2, 2, 3, 4), axis=-1)
    assert (windows[..., -1] - windows[..., -2]).min() > 1e-4
    assert_all_pass(check_layer(layer, x))
    layer.forward(x, training=True)
    assert (path_of(layer) == "direct") == (kernels == "numba")


def _smooth_for_conv_relu_pool(c, f, h, w, seed, rng_w):
    """An input whose conv outputs (weights from ``rng_w``) sit away from 0 and from pooling ties."""
    x = np.random.default_rng(seed).standard_normal((2, c, h, w))
    conv_out = Conv2D(c, f, 3, padding=1, dtype=F64, rng=rng_w).forward(x)
    assert np.abs(conv_out).min() > 1e-4
    windows = np.sort(conv_out.reshape(2, f, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
                      .reshape(2, f, h // 2, w // 2, 4), axis=-1)
    assert (windows[..., -1] - windows[..., -2]).min() > 1e-4
    return x


@pytest.mark.parametrize("path,allowed,c,input_grad", [
    ("direct", {}, 1, False),                  # a first layer, straight from the image
    ("im2col", {"direct": False}, 1, False),   # the same by im2col: dW summed from the window maxima
    ("im2col", {"direct": False}, 1, True),    # ... and with dx: d2 and the GEMMs
    ("winograd", {}, 4, True),
    ("winograd", {}, 4, False),
    ("im2col", {"winograd": False}, 4, True),
])
def test_conv_relu_pool_gradients_on_each_numba_path(path, allowed, c, input_grad):
    """Every path the numba kernels can take for the fused layer, steered with cpu.conv_algorithms."""
    from nncore.kernels import cpu
    from nncore.layers import ConvReLUPool
    set_cpu_kernels("numba")
    layer = ConvReLUPool(c, 3, 3, padding=1, dtype=F64, rng=7)
    layer.needs_input_grad = input_grad
    x = _smooth_for_conv_relu_pool(c, 3, 6, 8, 31, 7)
    with cpu.conv_algorithms(**allowed):
        results = check_layer(layer, x)
        layer.forward(x, training=True)
    assert path_of(layer) == path
    assert [r.array for r in results] == (["x"] if input_grad else []) + ["W", "b"]
    assert_all_pass(results)


@pytest.mark.parametrize("path,allowed", [("winograd", {}), ("im2col", {"winograd": False})])
def test_conv2d_gradients_on_each_numba_path(path, allowed):
    from nncore.kernels import cpu
    set_cpu_kernels("numba")
    layer = Conv2D(4, 3, 3, padding=1, dtype=F64, rng=8)
    layer.params["b"] = np.random.default_rng(9).standard_normal(3)
    x = np.random.default_rng(32).standard_normal((2, 4, 5, 7))
    with cpu.conv_algorithms(**allowed):
        results = check_layer(layer, x)
        layer.forward(x, training=True)
    assert path_of(layer) == path
    assert_all_pass(results)


def test_backward_after_an_inference_pass_is_a_clear_error():
    """forward(x, training=False) keeps nothing for backward (and may run in slices): a one-line UsageError."""
    from nncore.errors import UsageError
    layer = Conv2D(2, 3, 3, padding=1, dtype=F64, rng=0)
    out = layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(UsageError, match="training=True"):
        layer.backward(np.ones_like(out))


# -- evaluation mode: the gradient through the trained network (saliency) ------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (3, 3, 4, 5)])
def test_batchnorm_evaluation_mode_backward(shape):
    """eval_forward normalises by the running statistics (constants): dx = dout * gamma / sqrt(running_var + eps),
    dgamma = sum(dout * xhat), dbeta = sum(dout); the running statistics stay as they were."""
    rng = np.random.default_rng(21)
    layer, mean, var = batchnorm_with_statistics(rng)
    x = rng.standard_normal(shape) * 2 + 1
    np.testing.assert_array_equal(layer.eval_forward(x), layer.forward(x, training=False))
    assert_all_pass(check_layer(layer, x, training=False))
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)
    np.testing.assert_array_equal(layer.buffers["running_var"], var)


def test_batchnorm_backward_after_an_inference_pass_is_a_clear_error():
    layer = BatchNorm(3, dtype=F64)
    out = layer.forward(np.ones((2, 3)), training=False)
    with pytest.raises(UsageError, match="eval_forward"):
        layer.backward(np.ones_like(out))


def test_conv_layers_eval_forward_keeps_the_backward_context(kernels):
    """The convolution is the same in both modes: eval_forward returns forward's output and can back-propagate."""
    x = away_from_zero((2, 2, 6, 6), seed=22)
    for layer in (Conv2D(2, 4, 3, padding=1, dtype=F64, rng=0), ConvReLUPool(2, 4, 3, padding=1, dtype=F64, rng=0)):
        np.testing.assert_allclose(layer.eval_forward(x), layer.forward(x, training=False), rtol=1e-12)
        assert_all_pass(check_layer(layer, x, training=False))


def test_small_cnn_end_to_end_in_evaluation_mode(kernels):
    """The saliency's gradient: the loss through a network with BatchNorm (running statistics) and Dropout
    (the identity), checked against every parameter and the input; eval_forward equals forward(training=False)."""
    base = small_cnn()
    layers = base.layers[:-1] + [Dropout(0.5, rng=0), base.layers[-1]]
    model = Sequential(layers, base.input_shape, class_names=base.class_names)
    rng = np.random.default_rng(23)
    bn = layers[4]
    bn.buffers["running_mean"], bn.buffers["running_var"] = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    for layer in layers:
        if "b" in layer.params:
            layer.params["b"] = rng.standard_normal(layer.params["b"].shape) * 0.1
    x = rng.standard_normal((3, 1, 8, 8))
    np.testing.assert_allclose(model.eval_forward(x), model.forward(x, training=False), rtol=1e-12)
    assert smoothness_margin(model, x, training=False) > 1e-4, "pick another seed: near a kink or tie"
    assert_all_pass(check_model(model, x, np.array([0, 2, 1]), training=False))
