"""The fused BatchNorm layers and kernels: ConvBNReLUPool and DenseBNReLUDropout.

- the numba kernels against the reference ones (which are the unfused kernels composed), on every
  CPU path: the direct first layer (statistics from the patch moments), Winograd and im2col, odd
  sizes, overlapping pooling, negative and zero gamma; float64 to 1e-10, float32 to 1e-4 of the scale;
- each fused layer against the unfused layers it replaces, built from the same seed: outputs,
  running statistics, every gradient, in training, inference and evaluation (``eval_forward``) mode;
- float64 gradient checks of the fused layers at points away from the ReLU kink and pooling ties;
- the CuPy twins, run on NumPy arrays (a stand-in module for CuPy), against the reference;
- a fused model through save/load, explain, and a short MNIST training run beside the unfused one.
"""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import nncore
from nncore import backend
from nncore.architectures import cnn
from nncore.errors import UsageError
from nncore.gradcheck import LAYER_TOLERANCE, check_layer
from nncore.kernels import cpu, set_cpu_kernels
from nncore.kernels import reference as ref
from nncore.layers import BatchNorm, Conv2D, ConvBNReLUPool, Dense, DenseBNReLUDropout, Dropout, MaxPool2D, ReLU
from nncore.losses import SoftmaxCrossEntropy
from nncore.optim import Adam

F64 = np.float64

# (N, C, H, W, F, pool, pool_stride, pad, need_dx, numba path)
CONV_CASES = [
    (3, 1, 8, 10, 5, 2, 2, 1, False, "GramContext"),          # a first layer: patch moments + direct kernel
    (2, 2, 7, 6, 3, 2, 2, 1, False, "GramContext"),           # two channels, odd height
    (2, 6, 8, 8, 7, 2, 2, 1, True, "WinogradContext"),
    (2, 4, 6, 10, 3, 2, 2, 1, False, "WinogradContext"),      # Winograd without dx
    (19, 6, 6, 6, 4, 2, 2, 1, True, "WinogradContext"),       # more images than a chunk, split over threads
    (2, 3, 7, 9, 4, 3, 2, 1, True, "Conv2DContext"),          # odd sizes, overlapping 3x3/2 windows
    (1, 5, 6, 7, 4, 2, 1, 0, True, "Conv2DContext"),          # pool stride 1, no padding, a batch of one
    (2, 1, 9, 9, 3, 2, 2, 1, True, "Conv2DContext"),          # a thin layer that needs dx: im2col
]


def _conv_operands(case, dtype, seed=0):
    n, c, h, w, f = case[:5]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    gamma = rng.standard_normal(f).astype(dtype)                 # negative gammas flip the pooling's order
    gamma[0] = 0                                                 # and a zero one makes every window tie
    beta = rng.standard_normal(f).astype(dtype)
    rm, rv = rng.standard_normal(f).astype(dtype), (0.5 + rng.random(f)).astype(dtype)
    return x, wt, gamma, beta, rm, rv


def _close(a, b, dtype):
    if dtype == F64:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(b).max()))
    else:           # float32: sums in another order, and folded weights on the first layer's path
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


def _inner_type(ctx):
    conv = getattr(ctx, "conv", None)
    return type(ctx).__name__ if conv is None else type(conv).__name__


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_conv_bn_relu_pool_numba_matches_reference(case, dtype, mode):
    x, wt, gamma, beta, rm, rv = _conv_operands(case, dtype)
    pool, ps, pad, need_dx, path = case[5:]
    args = (x, wt, gamma, beta, rm, rv, 1e-5, 1, pad, pool, ps, mode, need_dx)
    out_r, mean_r, var_r, ctx_r = ref.conv_bn_relu_pool_forward(*args)
    out, mean, var, ctx = cpu.conv_bn_relu_pool_forward(*args)
    assert out.dtype == dtype and out.shape == out_r.shape
    _close(out, out_r, dtype)
    if mode == "train":
        assert _inner_type(ctx) == path
        _close(mean, mean_r, dtype)
        _close(var, var_r, dtype)
        if dtype == F64:    # no near-ties in float64: the same maxima, and -1 where the ReLU clamped
            arg = ctx.arg if hasattr(ctx, "arg") else ctx.inner.arg
            np.testing.assert_array_equal(arg, ctx_r.arg)
    else:
        assert mean is None and var is None
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dout_before = dout.copy()
    got = cpu.conv_bn_relu_pool_backward(ctx, dout, need_dx)
    want = ref.conv_bn_relu_pool_backward(ctx_r, dout, need_dx)
    np.testing.assert_array_equal(dout, dout_before)
    for name, a, b in zip(("dx", "dw", "dgamma", "dbeta"), got, want):
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == dtype and a.shape == b.shape, name
            _close(a, b, dtype)


@pytest.mark.parametrize("n, c, h, w, pad", [(5, 1, 28, 28, 1), (3, 2, 7, 9, 1), (4, 3, 6, 5, 0), (1, 1, 3, 3, 0)])
def test_patch_moments_are_the_sums_of_the_patches_and_their_products(n, c, h, w, pad):
    """patch_moments (shifted products, then window sums) against im2col's columns in float64:
    s1 = cols.sum(axis=1) and G = cols @ cols.T, to 1e-12 relative."""
    from nncore.kernels.cpu.fused_batchnorm import patch_moments
    x = np.random.default_rng(c * h + w).standard_normal((n, c, h, w)).astype(np.float32) + 0.5
    cols = ref.im2col(x.astype(F64), 3, 3, 1, pad)                       # (C*9, N*OH*OW)
    s1, g = patch_moments(x, pad)
    np.testing.assert_allclose(s1, cols.sum(axis=1), rtol=1e-12, atol=1e-12 * np.abs(cols).sum())
    np.testing.assert_allclose(g, cols @ cols.T, rtol=1e-12, atol=1e-12 * (cols * cols).sum())


def test_conv_bn_relu_pool_modes_and_promises():
    x, wt, gamma, beta, rm, rv = _conv_operands(CONV_CASES[0], F64)
    for kernels in (ref, cpu):
        out, mean, var, ctx = kernels.conv_bn_relu_pool_forward(x, wt, gamma, beta, rm, rv, 1e-5, 1, 1, 2, 2,
                                                                "infer", False)
        assert ctx is None and mean is None
        _, _, _, ctx = kernels.conv_bn_relu_pool_forward(x, wt, gamma, beta, rm, rv, 1e-5, 1, 1, 2, 2, "train", False)
        with pytest.raises(UsageError, match="need_dx=False"):
            kernels.conv_bn_relu_pool_backward(ctx, np.ones_like(out), True)
        with pytest.raises(UsageError, match="unknown BatchNorm mode 'training'"):
            kernels.conv_bn_relu_pool_forward(x, wt, gamma, beta, rm, rv, 1e-5, 1, 1, 2, 2, "training")


def test_inference_folds_batchnorm_into_the_convolution():
    """eval/infer is ConvReLUPool with W' = W * s and b' = beta - mean * s, s = gamma * (1/sqrt(var + eps)),
    exactly."""
    x, wt, gamma, beta, rm, rv = _conv_operands(CONV_CASES[2], F64)
    out, *_ = ref.conv_bn_relu_pool_forward(x, wt, gamma, beta, rm, rv, 1e-5, 1, 1, 2, 2, "infer")
    s = gamma * (1 / np.sqrt(rv + 1e-5))
    want, _ = ref.conv_relu_pool_forward(x, wt * s[:, None, None, None], beta - rm * s, 1, 1, 2, 2, False)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_dense_bn_relu_dropout_numba_matches_reference(dtype, p, mode):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((9, 13)).astype(dtype), rng.standard_normal((13, 7)).astype(dtype)
    gamma, beta = rng.standard_normal(7).astype(dtype), rng.standard_normal(7).astype(dtype)
    rm, rv = rng.standard_normal(7).astype(dtype), (0.5 + rng.random(7)).astype(dtype)
    keep = rng.random((9, 7)) >= p if p and mode == "train" else None
    for need_dx in (True, False):
        args = (x, w, gamma, beta, rm, rv, 1e-5, keep, p, mode, need_dx)
        out_r, mean_r, var_r, ctx_r = ref.dense_bn_relu_dropout_forward(*args)
        out, mean, var, ctx = cpu.dense_bn_relu_dropout_forward(*args)
        _close(out, out_r, dtype)
        if mode == "train":
            _close(mean, mean_r, dtype)
            _close(var, var_r, dtype)
        dout = rng.standard_normal(out.shape).astype(dtype)
        for a, b in zip(cpu.dense_bn_relu_dropout_backward(ctx, dout, need_dx),
                        ref.dense_bn_relu_dropout_backward(ctx_r, dout, need_dx)):
            assert (a is None) == (b is None)
            if b is not None:
                assert a.dtype == dtype
                _close(a, b, dtype)
    with pytest.raises(UsageError, match="train mode only"):
        cpu.dense_bn_relu_dropout_forward(x, w, gamma, beta, rm, rv, 1e-5, np.ones((9, 7), bool), 0.5, "eval")


# ----------------------------------------------------------------------------- fused layers vs unfused layers

@pytest.fixture(params=["numba", "reference"])
def kernels(request):
    set_cpu_kernels(request.param)
    yield request.param
    set_cpu_kernels("numba")


def _run(layers, x, mode):
    for layer in layers:
        x = layer.forward(x, training=True) if mode == "train" else (
            layer.eval_forward(x) if mode == "eval" else layer.forward(x, training=False))
    return x


def _back(layers, d):
    for layer in reversed(layers):
        d = layer.backward(d)
    return d


def _compare_blocks(fused, unfused, x, mode, tol):
    out_f, out_u = _run([fused], x, mode), _run(unfused, x, mode)
    np.testing.assert_allclose(out_f, out_u, **tol)
    if mode == "infer":
        return
    d = np.random.default_rng(7).standard_normal(out_f.shape)
    dx_f, dx_u = _back([fused], d), _back(unfused, d)
    np.testing.assert_allclose(dx_f, dx_u, **tol)
    grads_u = {name: g for layer in unfused for name, g in layer.grads.items()}
    assert set(fused.grads) == set(grads_u) == set(fused.params)
    for name in fused.grads:
        np.testing.assert_allclose(fused.grads[name], grads_u[name], err_msg=name, **tol)
    buffers_u = {name: b for layer in unfused for name, b in layer.buffers.items()}
    for name in fused.buffers:
        np.testing.assert_allclose(fused.buffers[name], buffers_u[name], err_msg=name, **tol)


@pytest.mark.parametrize("c,h,w,pool,ps", [(1, 8, 8, 2, 2), (4, 6, 8, 2, 2), (3, 7, 9, 3, 2)])
def test_conv_block_equals_the_unfused_layers(kernels, c, h, w, pool, ps):
    fused = ConvBNReLUPool(c, 5, 3, padding=1, pool=pool, pool_stride=ps, dtype=F64, rng=11)
    conv = Conv2D(c, 5, 3, padding=1, bias=False, dtype=F64, rng=11)
    unfused = [conv, BatchNorm(5, dtype=F64), ReLU(), MaxPool2D(pool, ps)]
    np.testing.assert_array_equal(fused.params["W"], conv.params["W"])
    fused.needs_input_grad = True
    fused.params["gamma"][:] = unfused[1].params["gamma"][:] = np.linspace(-1.5, 2.0, 5)
    x = np.random.default_rng(12).standard_normal((3, c, h, w))
    tol = dict(rtol=1e-9, atol=1e-9)
    for step in range(2):                            # running statistics carried over two steps
        _compare_blocks(fused, unfused, x + step, "train", tol)
    for mode in ("infer", "eval"):
        _compare_blocks(fused, unfused, x, mode, tol)


def test_first_layer_block_without_input_gradient(kernels):
    fused = ConvBNReLUPool(1, 4, 3, padding=1, dtype=F64, rng=1)
    unfused = [Conv2D(1, 4, 3, padding=1, bias=False, dtype=F64, rng=1), BatchNorm(4, dtype=F64), ReLU(),
               MaxPool2D(2)]
    fused.needs_input_grad = unfused[0].needs_input_grad = False
    x = np.random.default_rng(2).standard_normal((4, 1, 10, 10)) + 0.5
    out_f, out_u = _run([fused], x, "train"), _run(unfused, x, "train")
    np.testing.assert_allclose(out_f, out_u, rtol=1e-10, atol=1e-10)
    d = np.random.default_rng(3).standard_normal(out_f.shape)
    assert _back([fused], d) is None and _back(unfused, d) is None
    for name, g in (("W", unfused[0].grads["W"]), ("gamma", unfused[1].grads["gamma"]),
                    ("beta", unfused[1].grads["beta"])):
        np.testing.assert_allclose(fused.grads[name], g, rtol=1e-9, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_dense_block_equals_the_unfused_layers_with_the_same_dropout_masks(kernels, p):
    """Built as cnn() builds them (one Generator: W, then the dropout seed), the masks are the same."""
    fused = DenseBNReLUDropout(6, 5, p=p, dtype=F64, rng=np.random.default_rng(21))
    rng = np.random.default_rng(21)
    unfused = [Dense(6, 5, bias=False, dtype=F64, rng=rng), BatchNorm(5, dtype=F64), ReLU()]
    unfused += [Dropout(p, rng=rng.integers(2**32))] if p else []
    x = np.random.default_rng(22).standard_normal((8, 6))
    tol = dict(rtol=1e-10, atol=1e-12)
    for step in range(3):
        _compare_blocks(fused, unfused, x * (step + 1), "train", tol)
    for mode in ("infer", "eval"):
        _compare_blocks(fused, unfused, x, mode, tol)


def test_layer_errors():
    with pytest.raises(UsageError, match="DenseBNReLUDropout p must be in"):
        DenseBNReLUDropout(3, 2, p=1.0)
    with pytest.raises(UsageError, match="ConvBNReLUPool momentum"):
        ConvBNReLUPool(1, 2, 3, momentum=1.5)
    layer = DenseBNReLUDropout(3, 2, p=0.5)
    layer.fixed_keep = np.ones((4, 3), bool)
    with pytest.raises(UsageError, match="fixed_keep has shape"):
        layer.forward(np.zeros((4, 3), np.float32), training=True)
    with pytest.raises(UsageError, match="at least 2 values"):
        DenseBNReLUDropout(3, 2).forward(np.zeros((1, 3), np.float32), training=True)
    with pytest.raises(UsageError, match="needs a forward"):
        DenseBNReLUDropout(3, 2).backward(np.zeros((4, 2), np.float32))
    with pytest.raises(UsageError, match="float64 input"):
        ConvBNReLUPool(1, 2, 3, padding=1).forward(np.zeros((2, 1, 4, 4)), training=True)


# ----------------------------------------------------------------------------- gradient checks (float64)

def _margins(conv, bn, x, pool, training):
    """Smallest |z| (distance from the ReLU kink) and smallest gap between a window's two largest z."""
    y = conv.forward(x, training=True)
    z = bn.forward(y, training=True) if training else bn.forward(y, training=False)
    win = np.lib.stride_tricks.sliding_window_view(z, (pool, pool), axis=(2, 3))[:, :, ::pool, ::pool]
    top = np.sort(win.reshape(*win.shape[:4], -1), axis=-1)
    return float(np.abs(z).min()), float((top[..., -1] - top[..., -2]).min())


@pytest.mark.parametrize("c,h,w,need_dx,seed", [(1, 6, 6, False, 31), (4, 4, 6, True, 31), (3, 5, 7, True, 32)])
@pytest.mark.parametrize("training", [True, False])
def test_conv_block_gradient_check(kernels, c, h, w, need_dx, seed, training):
    """Relative error below LAYER_TOLERANCE (1e-6) for x, W, gamma and beta, on each CPU path (direct
    first layer, Winograd, im2col), with every z at least 1e-3 from 0 and from a window tie."""
    layer = ConvBNReLUPool(c, 3, 3, padding=1, dtype=F64, rng=5)
    layer.needs_input_grad = need_dx
    layer.params["gamma"][:] = [1.3, -0.7, 0.9]
    layer.params["beta"][:] = [0.1, 0.2, -0.1]
    layer.buffers["running_mean"][:] = [0.2, -0.1, 0.05]
    layer.buffers["running_var"][:] = [1.5, 0.8, 2.0]
    x = np.random.default_rng(seed).standard_normal((2, c, h, w))
    conv = Conv2D(c, 3, 3, padding=1, bias=False, dtype=F64, rng=5)
    bn = BatchNorm(3, dtype=F64)
    for name in ("gamma", "beta"):
        bn.params[name] = layer.params[name].copy()
    for name in ("running_mean", "running_var"):
        bn.buffers[name] = layer.buffers[name].copy()
    kink, tie = _margins(conv, bn, x, 2, training)
    assert kink > 1e-3 and tie > 1e-3, (kink, tie)
    results = check_layer(layer, x, training=training)
    assert [r.array for r in results] == (["x"] if need_dx else []) + ["W", "gamma", "beta"]
    assert all(r.rel_error < LAYER_TOLERANCE for r in results), results


@pytest.mark.parametrize("training", [True, False])
def test_dense_block_gradient_check(kernels, training):
    layer = DenseBNReLUDropout(5, 4, p=0.5, dtype=F64, rng=3)
    layer.fixed_keep = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1],
                                 [1, 1, 1, 1]], bool)
    layer.params["gamma"][:] = [1.2, -0.8, 0.7, 1.1]
    layer.buffers["running_var"][:] = [1.5, 0.8, 2.0, 1.0]
    x = np.random.default_rng(4).standard_normal((6, 5))
    y = x @ layer.params["W"]
    mean, var = (y.mean(0), y.var(0)) if training else (layer.buffers["running_mean"], layer.buffers["running_var"])
    z = layer.params["gamma"] * (y - mean) / np.sqrt(var + 1e-5) + layer.params["beta"]
    assert np.abs(z).min() > 1e-3                                        # away from the ReLU kink
    results = check_layer(layer, x, training=training)
    assert [r.array for r in results] == ["x", "W", "gamma", "beta"]
    assert all(r.rel_error < LAYER_TOLERANCE for r in results), results


# ----------------------------------------------------------------------------- the CuPy twins, on NumPy

@pytest.fixture(scope="module")
def gpu_on_numpy():
    """nncore/kernels/gpu.py loaded with NumPy standing in for CuPy.

    Its CUDA elementwise kernels cannot run here, so the functions built on them (im2col, col2im,
    max-pooling, the ReLU's backward) are replaced by the reference ones, whose results they equal
    (tests/test_gpu.py checks that on a GPU); everything the fused BatchNorm twins add on top runs
    as written. Loaded under its own name: the real module is not touched.
    """
    class ElementwiseKernel:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            raise AssertionError("a CUDA kernel was called on the NumPy stand-in")

    stand_in = types.ModuleType("cupy_on_numpy")
    stand_in.__getattr__ = lambda name: getattr(np, name)
    stand_in.ElementwiseKernel = ElementwiseKernel
    saved = backend.import_cupy
    backend.import_cupy = lambda: stand_in
    try:
        path = Path(nncore.kernels.__file__).parent / "gpu.py"
        spec = importlib.util.spec_from_file_location("nncore.kernels._gpu_on_numpy", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        backend.import_cupy = saved
        sys.modules.pop("nncore.kernels._gpu_on_numpy", None)
    for name in ("im2col", "col2im", "maxpool_forward", "maxpool_backward", "relu_backward"):
        setattr(module, name, getattr(ref, name))
    return module


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[2], CONV_CASES[4]])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gpu_twins_match_reference(gpu_on_numpy, case, mode):
    x, wt, gamma, beta, rm, rv = _conv_operands(case, F64)
    pool, ps, pad, need_dx, _ = case[5:]
    args = (x, wt, gamma, beta, rm, rv, 1e-5, 1, pad, pool, ps, mode, need_dx)
    got, want = gpu_on_numpy.conv_bn_relu_pool_forward(*args), ref.conv_bn_relu_pool_forward(*args)
    for a, b in zip(got[:3], want[:3]):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, F64)
    d = np.random.default_rng(5).standard_normal(want[0].shape)
    for a, b in zip(gpu_on_numpy.conv_bn_relu_pool_backward(got[3], d, need_dx),
                    ref.conv_bn_relu_pool_backward(want[3], d, need_dx)):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, F64)
    rng = np.random.default_rng(6)
    xd, wd = rng.standard_normal((7, 5)), rng.standard_normal((5, 4))
    keep = rng.random((7, 4)) >= 0.3 if mode == "train" else None
    dargs = (xd, wd, gamma[:4] + 1, beta[:4], rm[:4], rv[:4], 1e-5, keep, 0.3, mode, True)
    got, want = gpu_on_numpy.dense_bn_relu_dropout_forward(*dargs), ref.dense_bn_relu_dropout_forward(*dargs)
    _close(got[0], want[0], F64)
    d = rng.standard_normal(want[0].shape)
    for a, b in zip(gpu_on_numpy.dense_bn_relu_dropout_backward(got[3], d, True),
                    ref.dense_bn_relu_dropout_backward(want[3], d, True)):
        _close(a, b, F64)


# ----------------------------------------------------------------------------- fused models

def test_cnn_builds_the_fused_batchnorm_layers_only_with_batchnorm():
    model = cnn(conv_channels=(4, 8), dense=(16,), batchnorm=True, dropout=0.25, fused=True)
    assert [type(layer).__name__ for layer in model.layers] == [
        "ConvBNReLUPool", "ConvBNReLUPool", "Flatten", "DenseBNReLUDropout", "Dense"]
    assert model.layers[0].needs_input_grad is False and model.layers[1].needs_input_grad is True
    unfused = cnn(conv_channels=(4, 8), dense=(16,), batchnorm=True, dropout=0.25)
    assert [k.split(".")[-1] for k in model.state_dict()] == [k.split(".")[-1] for k in unfused.state_dict()]
    for a, b in zip(model.state_dict().values(), unfused.state_dict().values()):
        np.testing.assert_array_equal(a, b)          # the same seed, the same initial weights
    plain = cnn(conv_channels=(4, 8), dense=(16,), fused=True)
    assert [type(layer).__name__ for layer in plain.layers][:2] == ["ConvReLUPool", "ConvReLUPool"]


def test_fused_model_save_load_round_trip(tmp_path):
    model = cnn(conv_channels=(4, 8), dense=(16,), batchnorm=True, dropout=0.25, fused=True).train()
    x = np.random.default_rng(0).standard_normal((6, 1, 28, 28)).astype(np.float32)
    model.train_step(x, np.arange(6) % 10, SoftmaxCrossEntropy(), Adam(model))   # running statistics move
    nncore.save_model(model, tmp_path / "fused.npz")
    loaded = nncore.load_model(tmp_path / "fused.npz")
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in model.layers]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)
    np.testing.assert_array_equal(loaded.forward(x, training=False), model.forward(x, training=False))


def test_explain_works_on_a_fused_model():
    from nncore.explain import activations, conv_filters, saliency
    model = cnn(conv_channels=(4, 8), dense=(16,), batchnorm=True, dropout=0.25, fused=True)
    image = (np.random.default_rng(1).random((28, 28)) * 255).astype(np.uint8)
    maps = activations(model, image)
    assert [name for name, _ in maps][1:3] == ["0:ConvBNReLUPool", "1:ConvBNReLUPool"]
    assert maps[1][1].shape == (4, 14, 14)
    assert [w.shape for _, w in conv_filters(model)] == [(4, 1, 3, 3), (8, 4, 3, 3)]
    grad, k = saliency(model, image)
    assert grad.shape == (1, 28, 28) and np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_short_mnist_training_fused_equals_unfused(mnist_test_digits):
    """The default architecture on 192 MNIST digits, 12 Adam steps of 32 (two passes): the fused model's
    losses equal the unfused model's (float32 rounding, grown over the steps: to 2e-3) and fall."""
    x_raw, y = mnist_test_digits
    losses = {}
    for fused in (False, True):
        model = cnn(conv_channels=(32, 64), dense=(256,), batchnorm=True, dropout=0.25, fused=fused).train()
        x = model.prepare(x_raw)
        opt, loss_fn = Adam(model, lr=2e-3), SoftmaxCrossEntropy()
        losses[fused] = [float(model.train_step(x[i:i + 32], y[i:i + 32], loss_fn, opt)[0])
                         for i in list(range(0, 192, 32)) * 2]
    np.testing.assert_allclose(losses[True], losses[False], rtol=2e-3, atol=2e-3)
    assert np.mean(losses[True][-6:]) < 0.5 * np.mean(losses[True][:6])


def test_unfused_model_gives_the_same_outputs_layer_by_layer():
    """train.py saves unfused(model): every stage visible to explain, the same predictions (float64)."""
    from nncore.architectures import unfused
    for batchnorm, dropout in ((True, 0.25), (True, 0.0), (False, 0.0)):
        fused = nncore.cnn(dense=(16,), conv_channels=(4, 8), batchnorm=batchnorm, dropout=dropout, fused=True,
                           seed=5, dtype=np.float64)
        x = np.random.default_rng(1).random((6, 28, 28))
        fused.train().forward(fused.prepare(x), training=True)     # running statistics away from 0 and 1
        plain = unfused(fused.eval())
        names = [type(layer).__name__ for layer in plain.layers]
        assert "ConvBNReLUPool" not in names and "DenseBNReLUDropout" not in names and "ConvReLUPool" not in names
        assert names.count("BatchNorm") == (3 if batchnorm else 0) and names.count("Dropout") == (1 if dropout else 0)
        np.testing.assert_allclose(plain.predict_proba(x), fused.predict_proba(x), rtol=0, atol=1e-12)
