"""The layers' kernel calls: conv2d_forward/backward and conv_relu_pool_forward/backward.

The numba package computes them by the algorithm it chooses (Winograd, the
direct first layer or im2col); each algorithm, asked for explicitly, must
return what the reference package returns (im2col and one GEMM), and an
algorithm that cannot handle the shape must be refused, never swapped for
another. Shapes cover odd sizes, strides above one, padding, a batch of one
and both float dtypes.
"""

import numpy as np
import pytest

from nncore.errors import UsageError
from nncore.kernels import cpu
from nncore.kernels import reference as ref
from nncore.kernels.cpu import algorithms

DTYPES = [np.float32, np.float64]

CONV_CASES = [  # (N, C, H, W, F, KH, KW, stride, pad)
    (2, 3, 7, 9, 4, 3, 3, 1, 1),      # odd sizes: the last Winograd tiles cropped
    (1, 5, 6, 5, 3, 3, 3, 1, 1),      # a batch of one
    (3, 4, 8, 8, 2, 3, 3, 2, 1),      # stride 2
    (2, 2, 11, 6, 3, 5, 5, 1, 2),     # a larger kernel
    (1, 6, 4, 4, 5, 3, 3, 1, 0),      # no padding
    (2, 4, 9, 10, 3, 4, 2, 3, 0),     # a non-square kernel, stride 3
]

FUSED_CASES = [  # (N, C, H, W, F, K, stride, pad, pool, pool_stride)
    (3, 1, 28, 28, 4, 3, 1, 1, 2, 2),    # a first layer
    (2, 3, 9, 7, 2, 3, 1, 0, 2, 2),      # odd sizes, no padding: the last conv row and column left out
    (1, 4, 6, 10, 3, 3, 1, 1, 2, 2),     # a batch of one, non-square, Winograd-sized
    (2, 4, 7, 7, 3, 3, 1, 1, 2, 2),      # odd: no Winograd
    (2, 2, 9, 9, 3, 3, 2, 1, 3, 2),      # stride 2, 3x3/2 pooling
    (2, 5, 8, 8, 2, 5, 1, 2, 2, 1),      # 5x5 kernel, overlapping 2x2/1 pooling
]


def conv_fits(case):
    """The algorithms that can compute a plain convolution of this shape (stated independently of the kernels)."""
    _, _, _, _, _, kh, kw, s, p = case
    return {"im2col"} | ({"winograd"} if (kh, kw, s, p) == (3, 3, 1, 1) else set())


def fused_fits(case, need_dx):
    _, _, h, w, _, k, s, p, pool, ps = case
    fits = {"im2col"}
    if (k, s, pool, ps) == (3, 1, 2, 2) and not need_dx:
        fits.add("direct")
    if (k, s, p, pool, ps) == (3, 1, 1, 2, 2) and h % 2 == 0 and w % 2 == 0:
        fits.add("winograd")
    return fits


def operands(n, c, h, w, f, kh, kw, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dtype), rng.standard_normal((f, c, kh, kw)).astype(dtype),
            rng.standard_normal(f).astype(dtype))


def close(a, r, dtype, grad=False):
    """Equal to rounding, relative to the array's scale (Winograd's transforms scale float32 rounding ~10x)."""
    if r is None:
        assert a is None
        return
    assert a.dtype == r.dtype == dtype and a.shape == r.shape
    tol = (1e-4 if grad else 1e-5) if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, float(np.abs(r).max())))


@pytest.mark.parametrize("case,algorithm", [(case, a) for case in CONV_CASES
                                            for a in ["auto"] + sorted(conv_fits(case))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_matches_the_reference_on_every_algorithm_that_fits(case, dtype, algorithm):
    """Each fitting algorithm, forward and backward with and without dx, with and without a bias."""
    n, c, h, w, f, kh, kw, s, p = case
    x, wt, b = operands(n, c, h, w, f, kh, kw, dtype, 1)
    out_f, ctx_f = cpu.conv2d_forward(x, wt, b, s, p, algorithm=algorithm)
    out_r, ctx_r = ref.conv2d_forward(x, wt, b, s, p)
    close(out_f, out_r, dtype)
    close(ref.conv2d_naive(x, wt, b, s, p), out_r, dtype)
    dout = np.random.default_rng(2).standard_normal(out_r.shape).astype(dtype)
    for need_dx in (True, False):
        for got, want in zip(cpu.conv2d_backward(ctx_f, dout, need_dx), ref.conv2d_backward(ctx_r, dout, need_dx)):
            close(got, want, dtype, grad=True)
    out_nb, _ = cpu.conv2d_forward(x, wt, None, s, p, algorithm=algorithm)      # no bias
    close(out_nb, ref.conv2d_forward(x, wt, None, s, p)[0], dtype)


@pytest.mark.parametrize("case,need_dx,algorithm", [(case, need_dx, a) for case in FUSED_CASES
                                                     for need_dx in (True, False)
                                                     for a in ["auto"] + sorted(fused_fits(case, need_dx))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_relu_pool_matches_the_reference_on_every_algorithm_that_fits(case, dtype, algorithm, need_dx):
    """Each fitting algorithm, with and without the input gradient (the algorithms that do not fit:
    test_an_algorithm_that_does_not_fit_is_refused)."""
    n, c, h, w, f, k, s, p, pool, ps = case
    x, wt, b = operands(n, c, h, w, f, k, k, dtype, 3)
    out_f, ctx_f = cpu.conv_relu_pool_forward(x, wt, b, s, p, pool, ps, need_dx=need_dx, algorithm=algorithm)
    out_r, ctx_r = ref.conv_relu_pool_forward(x, wt, b, s, p, pool, ps, need_dx=need_dx)
    close(out_f, out_r, dtype)
    assert (out_r > 0).any() and ((out_r == 0).any() or ps < pool)   # the ReLU clamps some windows, passes others
                                                                      # (overlapping 5x5 fields: none all negative)
    dout = np.random.default_rng(4).standard_normal(out_r.shape).astype(dtype)
    got = cpu.conv_relu_pool_backward(ctx_f, dout, need_dx)
    want = ref.conv_relu_pool_backward(ctx_r, dout, need_dx)
    assert (got[0] is None) == (want[0] is None) == (not need_dx)
    for a, r in zip(got, want):
        close(a, r, dtype, grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_auto_takes_the_documented_path(dtype):
    """The rules of "auto": direct for a thin first layer, Winograd from 4 channels, im2col otherwise."""
    def fused(c, need_dx, h=8):
        return cpu.conv_relu_pool_algorithm((2, c, h, h), (8, c, 3, 3), 1, 1, 2, 2, need_dx)

    assert fused(1, False) == "direct" and fused(3, False) == "direct"          # C*9 <= 32
    assert fused(4, False) == "winograd" and fused(4, True) == "winograd"
    assert fused(1, True) == "im2col" and fused(3, True) == "im2col"            # too few channels for Winograd
    assert fused(4, True, h=7) == "im2col"                                       # odd size
    assert cpu.conv2d_algorithm((2, 4, 7, 7), (8, 4, 3, 3), 1, 1) == "winograd"
    assert cpu.conv2d_algorithm((2, 3, 7, 7), (8, 3, 3, 3), 1, 1) == "im2col"
    assert algorithms.WINOGRAD_MIN_CHANNELS == 4 and algorithms.DIRECT_WEIGHT_GRAD_ROWS == 32


@pytest.mark.parametrize("call", [
    lambda: cpu.conv2d_algorithm((2, 4, 8, 8), (3, 4, 5, 5), 1, 2, "winograd"),               # 5x5
    lambda: cpu.conv2d_algorithm((2, 4, 8, 8), (3, 4, 3, 3), 2, 1, "winograd"),               # stride 2
    lambda: cpu.conv2d_algorithm((2, 4, 8, 8), (3, 4, 3, 3), 1, 0, "winograd"),               # padding 0
    lambda: cpu.conv2d_algorithm((2, 1, 8, 8), (3, 1, 3, 3), 1, 1, "direct"),                 # fused only
    lambda: cpu.conv_relu_pool_algorithm((2, 4, 7, 8), (3, 4, 3, 3), 1, 1, 2, 2, True, "winograd"),   # odd H
    lambda: cpu.conv_relu_pool_algorithm((2, 4, 8, 8), (3, 4, 3, 3), 1, 1, 3, 2, True, "winograd"),   # 3x3 pool
    lambda: cpu.conv_relu_pool_algorithm((2, 1, 8, 8), (3, 1, 3, 3), 1, 1, 2, 2, True, "direct"),     # needs dx
    lambda: cpu.conv_relu_pool_algorithm((2, 1, 8, 8), (3, 1, 5, 5), 1, 2, 2, 2, False, "direct"),    # 5x5
    lambda: cpu.conv_relu_pool_algorithm((2, 1, 8, 8), (3, 1, 3, 3), 2, 1, 2, 2, False, "direct"),    # stride 2
    lambda: cpu.conv2d_algorithm((2, 4, 8, 8), (3, 4, 3, 3), 1, 1, "fft"),                    # unknown
    lambda: cpu.conv2d_forward(np.zeros((1, 4, 6, 6)), np.zeros((2, 4, 5, 5)), None, 1, 2, algorithm="winograd"),
    lambda: cpu.conv_relu_pool_forward(np.zeros((1, 1, 6, 6)), np.zeros((2, 1, 3, 3)), None, 1, 1, 2, 2,
                                       algorithm="direct"),                                  # need_dx=True
])
def test_an_algorithm_that_does_not_fit_is_refused(call):
    """Asked for a path that cannot compute the shape, the kernels say why in one line; no silent fallback."""
    with pytest.raises(UsageError) as info:
        call()
    assert "\n" not in str(info.value) and "algorithm" in str(info.value)


def test_conv_algorithms_setting_steers_auto_and_only_auto():
    x, wt, b = operands(2, 4, 6, 6, 3, 3, 3, np.float64, 5)
    shape = (x.shape, wt.shape, 1, 1, 2, 2, False)
    assert cpu.conv_relu_pool_algorithm(*shape) == "winograd"
    with cpu.conv_algorithms(winograd=False):
        assert cpu.conv_relu_pool_algorithm(*shape) == "im2col"
        assert cpu.conv2d_algorithm(x.shape, wt.shape, 1, 1) == "im2col"
        assert cpu.conv_relu_pool_algorithm(*shape, "winograd") == "winograd"     # explicit wins
        out, ctx = cpu.conv_relu_pool_forward(x, wt, b, 1, 1, 2, 2)
        assert type(ctx).__name__ == "ConvReLUPoolContext"
    assert cpu.conv_relu_pool_algorithm(*shape) == "winograd"
    thin = ((2, 1, 6, 6), (3, 1, 3, 3), 1, 1, 2, 2, False)
    with cpu.conv_algorithms(direct=False):
        assert cpu.conv_relu_pool_algorithm(*thin) == "im2col"
    with pytest.raises(RuntimeError):                                            # restored on errors too
        with cpu.conv_algorithms(direct=False, winograd=False):
            raise RuntimeError
    assert cpu.conv_relu_pool_algorithm(*thin) == "direct" and cpu.conv_relu_pool_algorithm(*shape) == "winograd"


@pytest.mark.parametrize("kwargs", [{"fft": False}, {"im2col": False}, {"winograd": "no"}, {"direct": 0}])
def test_conv_algorithms_setting_is_validated(kwargs):
    with pytest.raises(UsageError, match="conv_algorithms"):
        with cpu.conv_algorithms(**kwargs):
            pass
    assert algorithms._auto == {"winograd": True, "direct": True}


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_large_inference_batches_run_in_slices(monkeypatch, algorithm):
    """At inference the numba kernels convolve a batch larger than INFERENCE_COLS_BYTES allows in slices:
    the same output, and no ctx (nothing to back-propagate through)."""
    x, wt, b = operands(7, 4, 6, 6, 3, 3, 3, np.float64, 6)
    whole = ref.conv2d_forward(x, wt, b, 1, 1, training=False)
    whole_fused = ref.conv_relu_pool_forward(x, wt, b, 1, 1, 2, 2, training=False)
    assert whole[1] is None and whole_fused[1] is None
    per_image = (4 * 9 + 3) * 36 * 8
    monkeypatch.setattr(algorithms, "INFERENCE_COLS_BYTES", 3 * per_image)      # slices of 3 images: 3, 3, 1
    assert algorithms.inference_slice(x.shape, wt.shape, 1, 1, 8) == 3
    out, ctx = cpu.conv2d_forward(x, wt, b, 1, 1, training=False, algorithm=algorithm)
    assert ctx is None
    np.testing.assert_allclose(out, whole[0], rtol=1e-12, atol=1e-12)
    out, ctx = cpu.conv_relu_pool_forward(x, wt, b, 1, 1, 2, 2, training=False, algorithm=algorithm)
    assert ctx is None
    np.testing.assert_allclose(out, whole_fused[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernels", [cpu, ref], ids=["numba", "reference"])
def test_dx_after_a_no_dx_forward_is_refused(kernels):
    """need_dx=False at the forward pass is a promise (the direct path cannot give dx); breaking it is an error."""
    x, wt, b = operands(2, 1, 6, 6, 3, 3, 3, np.float64, 7)
    out, ctx = kernels.conv_relu_pool_forward(x, wt, b, 1, 1, 2, 2, need_dx=False)
    with pytest.raises(UsageError, match="need_dx=False"):
        kernels.conv_relu_pool_backward(ctx, np.ones_like(out), True)


def test_conv2d_stores_its_padding_once_and_saves_it_as_given():
    """``padding`` as given ("same" or an int, what weights files store); ``pad`` is derived from it."""
    from nncore.layers import Conv2D, ConvReLUPool, layer_from_config
    for padding, pad in (("same", 2), (1, 1), (0, 0)):
        for layer in (Conv2D(2, 3, 5, padding=padding), ConvReLUPool(2, 3, 5, padding=padding)):
            assert layer.padding == padding and layer.pad == pad and layer.config()["padding"] == padding
            rebuilt = layer_from_config({"type": type(layer).__name__, **layer.config()})
            assert rebuilt.config() == layer.config() and rebuilt.pad == pad
            assert not hasattr(layer, "padding_arg")
