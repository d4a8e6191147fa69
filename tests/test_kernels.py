"""The fast kernels (numba) must return what the reference kernels (plain NumPy) return.

The reference kernels are short enough to check by eye; the reference
convolution is in turn checked against the textbook four-loop definition.
Shapes cover odd sizes, strides above one, padding, a batch of one and both
float dtypes, because those are where index arithmetic goes wrong.
"""

import numpy as np
import pytest

from nncore.kernels import cpu
from nncore.kernels import reference as ref
from nncore.kernels.cpu import winograd as cpu_winograd

CONV_CASES = [
    # (N, C, H, W, KH, KW, stride, pad)
    (2, 3, 7, 9, 3, 3, 1, 1),
    (1, 1, 28, 28, 3, 3, 1, 1),
    (3, 2, 8, 8, 3, 3, 2, 1),
    (2, 4, 11, 6, 5, 5, 2, 2),
    (1, 2, 5, 5, 1, 1, 1, 0),
    (2, 3, 9, 10, 4, 2, 3, 0),
    (1, 5, 6, 7, 2, 3, 1, 2),
]
DTYPES = [np.float32, np.float64]


def test_every_reference_kernel_has_a_numba_twin_with_its_signature():
    """The layers swap kernel packages freely, so the numba package must offer each reference name,
    a function whose parameters start with the reference's, in order; any it adds (the algorithm
    choice) are keywords with defaults, so a call written for the reference fits it. No flags remain
    for the layers to read: every exported name is a function."""
    import inspect
    assert set(ref.__all__) <= set(cpu.__all__) and set(cpu.__all__) <= set(dir(cpu))
    for name in ref.__all__:
        slow, fast = getattr(ref, name), getattr(cpu, name)
        assert callable(slow) and callable(fast), name
        p_slow = list(inspect.signature(slow).parameters.values())
        p_fast = list(inspect.signature(fast).parameters.values())
        assert [p.name for p in p_fast[:len(p_slow)]] == [p.name for p in p_slow], name
        assert [p.default for p in p_fast[:len(p_slow)]] == [p.default for p in p_slow], name
        assert all(p.default is not inspect.Parameter.empty for p in p_fast[len(p_slow):]), name


def test_the_gpu_module_has_the_reference_kernels_but_the_cpu_only_paths():
    """nncore/kernels/gpu.py needs CuPy to import, so its names and parameters are read from its source:
    every reference kernel but the CPU-only paths (direct, Winograd) and the test-only loops is defined
    there with the reference's parameters, or imported from the reference (the array-generic ones)."""
    import ast
    import inspect
    from pathlib import Path

    import nncore.kernels
    tree = ast.parse((Path(nncore.kernels.__file__).parent / "gpu.py").read_text())
    defs = {node.name: [a.arg for a in node.args.args] for node in tree.body if isinstance(node, ast.FunctionDef)}
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    cpu_only = {name for name in ref.__all__
                if getattr(ref, name).__module__.rsplit(".", 1)[1] in ("direct", "winograd")} | {"conv2d_naive"}
    assert {"conv3x3_relu_pool2_forward", "winograd_forward"} <= cpu_only
    for name in sorted(set(ref.__all__) - cpu_only):
        assert name in defs or name in imported, name
        if name in defs:
            assert defs[name] == list(inspect.signature(getattr(ref, name)).parameters), name


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_matches_reference(case, dtype):
    n, c, h, w, kh, kw, s, p = case
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype)
    fast, slow = cpu.im2col(x, kh, kw, s, p), ref.im2col(x, kh, kw, s, p)
    assert fast.dtype == dtype and fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)  # a pure copy: bit-identical


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im_matches_reference(case, dtype):
    n, c, h, w, kh, kw, s, p = case
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    cols = np.random.default_rng(1).standard_normal((c * kh * kw, n * oh * ow)).astype(dtype)
    fast, slow = cpu.col2im(cols, (n, c, h, w), kh, kw, s, p), ref.col2im(cols, (n, c, h, w), kh, kw, s, p)
    assert fast.dtype == dtype
    np.testing.assert_allclose(fast, slow, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("case", CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the backward pass."""
    n, c, h, w, kh, kw, s, p = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    cols = rng.standard_normal(ref.im2col(x, kh, kw, s, p).shape)
    lhs = np.sum(cpu.im2col(x, kh, kw, s, p) * cols)
    rhs = np.sum(x * cpu.col2im(cols, x.shape, kh, kw, s, p))
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_reference_convolution_equals_four_loop_definition(case):
    n, c, h, w, kh, kw, s, p = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((4, c, kh, kw))
    b = rng.standard_normal(4)
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    via_gemm = ref.rows_to_nchw(wt.reshape(4, -1) @ ref.im2col(x, kh, kw, s, p), b, n, oh, ow)
    np.testing.assert_allclose(via_gemm, ref.conv2d_naive(x, wt, b, s, p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 4, 4), (3, 8, 14, 14)])
def test_rows_nchw_reorders_match_reference(dtype, shape):
    n, f, oh, ow = shape
    rng = np.random.default_rng(4)
    y = rng.standard_normal((f, n * oh * ow)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    np.testing.assert_array_equal(cpu.rows_to_nchw(y, b, n, oh, ow), ref.rows_to_nchw(y, b, n, oh, ow))
    d = rng.standard_normal(shape).astype(dtype)
    d2f, dbf = cpu.nchw_to_rows(d)
    d2r, dbr = ref.nchw_to_rows(d)
    np.testing.assert_array_equal(d2f, d2r)
    assert dbf.dtype == dtype
    np.testing.assert_allclose(dbf, dbr, rtol=1e-5 if dtype == np.float32 else 1e-12)


POOL_CASES = [((2, 3, 8, 8), 2, 2), ((1, 2, 7, 9), 2, 2), ((2, 1, 9, 9), 3, 2), ((1, 4, 6, 5), 3, 3),
              ((3, 2, 5, 5), 2, 1)]


@pytest.mark.parametrize("shape,k,s", POOL_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_matches_reference(shape, k, s, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    out_f, arg_f = cpu.maxpool_forward(x, k, s)
    out_r, arg_r = ref.maxpool_forward(x, k, s)
    np.testing.assert_array_equal(out_f, out_r)
    np.testing.assert_array_equal(arg_f, arg_r)
    dout = rng.standard_normal(out_r.shape).astype(dtype)
    np.testing.assert_allclose(cpu.maxpool_backward(dout, arg_f, shape, k, s),
                               ref.maxpool_backward(dout, arg_r, shape, k, s), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernels", [cpu, ref], ids=["numba", "reference"])
def test_maxpool_tie_sends_gradient_to_exactly_one_input(kernels):
    x = np.ones((1, 1, 4, 4))  # every window is a four-way tie
    out, arg = kernels.maxpool_forward(x, 2, 2)
    dx = kernels.maxpool_backward(np.full(out.shape, 3.0), arg, x.shape, 2, 2)
    windows = dx.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    assert (np.count_nonzero(windows, axis=1) == 1).all()
    assert dx.sum() == pytest.approx(3.0 * out.size)


@pytest.mark.parametrize("shape,k,s", POOL_CASES)
def test_avgpool_backward_is_adjoint_of_forward(shape, k, s):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    d = rng.standard_normal(cpu.avgpool_forward(x, k, s).shape)
    assert np.sum(cpu.avgpool_forward(x, k, s) * d) == pytest.approx(np.sum(x * cpu.avgpool_backward(d, shape, k, s)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (8, 32, 32, 33)])   # NumPy's loop below 2**18 elements, numba's above
def test_relu_kernels_match_reference(dtype, shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[::97] = np.nan                          # a NaN stays NaN on both paths (as in np.maximum)
    out = cpu.relu_forward(x)
    np.testing.assert_array_equal(out, ref.relu_forward(x))
    d = rng.standard_normal(x.shape).astype(dtype)
    d_before = d.copy()
    np.testing.assert_array_equal(cpu.relu_backward(d, out), ref.relu_backward(d, out))
    np.testing.assert_array_equal(d, d_before)  # the upstream gradient is never modified


FUSED_CASES = [(2, 3, 8, 8, 2, 2), (1, 4, 7, 9, 2, 2), (2, 2, 9, 9, 3, 2), (3, 2, 6, 6, 2, 1)]


@pytest.mark.parametrize("n,f,oh,ow,k,s", FUSED_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_conv_relu_pool_matches_reference(n, f, oh, ow, k, s, dtype):
    rng = np.random.default_rng(8)
    y = rng.standard_normal((f, n * oh * ow)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    out_f, arg_f = cpu.bias_relu_pool_forward(y, b, n, oh, ow, k, s)
    out_r, arg_r = ref.bias_relu_pool_forward(y, b, n, oh, ow, k, s)
    np.testing.assert_array_equal(out_f, out_r)
    np.testing.assert_array_equal(arg_f, arg_r)
    assert (arg_r == -1).any() and (arg_r >= 0).any()  # both branches exercised
    dout = rng.standard_normal(out_r.shape).astype(dtype)
    d2f, dbf = cpu.bias_relu_pool_backward(dout, arg_f, oh, ow, k, s)
    d2r, dbr = ref.bias_relu_pool_backward(dout, arg_r, oh, ow, k, s)
    np.testing.assert_allclose(d2f, d2r, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dbf, dbr, rtol=1e-5, atol=1e-6)


def test_fused_reference_is_the_unfused_composition():
    """The reference fused kernel is, by definition, rows_to_nchw -> relu -> maxpool."""
    rng = np.random.default_rng(9)
    y, b = rng.standard_normal((3, 2 * 36)), rng.standard_normal(3)
    out, _ = ref.bias_relu_pool_forward(y, b, 2, 6, 6, 2, 2)
    expected, _ = ref.maxpool_forward(np.maximum(ref.rows_to_nchw(y, b, 2, 6, 6), 0), 2, 2)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("shape", [(4, 3, 5), (1, 2, 49), (6, 5, 1), (3, 8, 196)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_kernels_match_reference(shape, dtype):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    fast, slow = cpu.batchnorm_forward(x, gamma, beta, 1e-5), ref.batchnorm_forward(x, gamma, beta, 1e-5)
    for a, b in zip(fast, slow):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    d = rng.standard_normal(shape).astype(dtype)
    for need_dx in (True, False):
        got = cpu.batchnorm_backward(d, slow[1], gamma, slow[4], need_dx)
        want = ref.batchnorm_backward(d, slow[1], gamma, slow[4], need_dx)
        for a, b in zip(got, want):
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("n,f,oh,ow,k,s", FUSED_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_weight_gradient_matches_reference(n, f, oh, ow, k, s, dtype):
    rng = np.random.default_rng(11)
    y = rng.standard_normal((f, n * oh * ow)).astype(dtype)
    cols = rng.standard_normal((9, n * oh * ow)).astype(dtype)
    out, arg = ref.bias_relu_pool_forward(y, rng.standard_normal(f).astype(dtype), n, oh, ow, k, s)
    dout = rng.standard_normal(out.shape).astype(dtype)
    fast = cpu.bias_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, s)
    slow = ref.bias_relu_pool_weight_grad(dout, arg, cols, oh, ow, k, s)
    for a, b in zip(fast, slow):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5)


DIRECT_CASES = [  # (N, C, H, W, pad): odd sizes (a conv row or column left out of the pooling), pads 0 to 2
    (3, 1, 28, 28, 1), (1, 1, 5, 5, 1), (2, 3, 9, 7, 0), (2, 2, 6, 11, 2), (4, 1, 8, 6, 0)]


@pytest.mark.parametrize("n,c,h,w,pad", DIRECT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_first_layer_matches_reference(n, c, h, w, pad, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((4, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    out_f, arg_f = cpu.conv3x3_relu_pool2_forward(x, wt, b, pad)
    out_r, arg_r = ref.conv3x3_relu_pool2_forward(x, wt, b, pad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert out_f.dtype == dtype and out_f.shape == out_r.shape
    np.testing.assert_allclose(out_f, out_r, **tol)
    np.testing.assert_array_equal(arg_f, arg_r)  # random data: no two window entries within rounding
    assert (arg_r == -1).any() and (arg_r >= 0).any()
    dout = rng.standard_normal(out_r.shape).astype(dtype)
    fast = cpu.conv3x3_relu_pool2_weight_grad(dout, arg_r, x, pad)
    slow = ref.conv3x3_relu_pool2_weight_grad(dout, arg_r, x, pad)
    for a, r in zip(fast, slow):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, r, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5)
    np.testing.assert_allclose(cpu.conv3x3_relu_pool2_forward(x, wt, None, pad)[0],
                               ref.conv3x3_relu_pool2_forward(x, wt, None, pad)[0], **tol)


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_direct_first_layer_breaks_ties_as_the_reference(value):
    """A flat image makes the four conv outputs of each inner window equal: the first one wins (arg 0),
    and a window the ReLU clamps gets -1, as in the reference; the border windows differ (padding)."""
    x = np.full((2, 1, 8, 10), value, dtype=np.float32)
    wt = np.ones((3, 1, 3, 3), dtype=np.float32) * np.array([1, -1, 0], dtype=np.float32)[:, None, None, None]
    b = np.array([0.5, 0.25, 0.0], dtype=np.float32)
    out_f, arg_f = cpu.conv3x3_relu_pool2_forward(x, wt, b, 1)
    out_r, arg_r = ref.conv3x3_relu_pool2_forward(x, wt, b, 1)
    np.testing.assert_array_equal(out_f, out_r)
    np.testing.assert_array_equal(arg_f, arg_r)
    assert (arg_r[:, 0, 1:-1, 1:-1] == 0).all() and (arg_r[:, 2] == -1).all()


def test_direct_first_layer_reference_is_the_gemm_path():
    """The reference direct kernel is, by definition, im2col -> GEMM -> the fused bias_relu_pool."""
    rng = np.random.default_rng(13)
    x, wt, b = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)
    out, arg = ref.conv3x3_relu_pool2_forward(x, wt, b, 1)
    want = ref.bias_relu_pool_forward(wt.reshape(3, -1) @ ref.im2col(x, 3, 3, 1, 1), b, 2, 6, 6, 2, 2)
    np.testing.assert_array_equal(out, want[0])
    np.testing.assert_array_equal(arg, want[1])


# ----------------------------------------------------------------------------- Winograd F(4x4, 3x3)

WINOGRAD_CASES = [  # (N, C, F, H, W): a batch of one, one channel, non-square, odd (no pooling), ref-cnn's
    (2, 3, 4, 6, 8), (1, 1, 2, 4, 4), (3, 5, 3, 10, 2), (2, 4, 3, 7, 5), (4, 32, 64, 14, 14)]   # second layer


def _winograd_operands(n, c, f, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dtype), rng.standard_normal((f, c, 3, 3)).astype(dtype),
            rng.standard_normal(f).astype(dtype))


def test_winograd_reference_equals_im2col_convolution():
    """The reference Winograd functions compute exactly (to float64 rounding) what im2col and a GEMM do:
    the convolution, the fused bias-ReLU-pool, and both gradients."""
    n, c, f, h, w = 2, 3, 4, 6, 10     # 2x3 tiles of 4x4 outputs, the last ones cropped
    x, wt, b = _winograd_operands(n, c, f, h, w, np.float64, 20)
    cols = ref.im2col(x, 3, 3, 1, 1)
    v = ref.winograd_tiles(x, 1)
    m = v @ ref.winograd_weights(wt).transpose(0, 2, 1)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.winograd_output(m, b, n, h, w), ref.conv2d_naive(x, wt, b, 1, 1), **tol)
    out, arg = ref.winograd_relu_pool(m, b, n, h, w)
    want_out, want_arg = ref.bias_relu_pool_forward(wt.reshape(f, -1) @ cols, b, n, h, w, 2, 2)
    np.testing.assert_allclose(out, want_out, **tol)
    np.testing.assert_array_equal(arg, want_arg)
    dout = np.random.default_rng(21).standard_normal(out.shape)
    z, db = ref.winograd_pool_backward(dout, arg)
    d2, want_db = ref.bias_relu_pool_backward(dout, arg, h, w, 2, 2)
    np.testing.assert_allclose(ref.winograd_weight_grad(z.transpose(0, 2, 1) @ v), (d2 @ cols.T).reshape(wt.shape),
                               **tol)
    np.testing.assert_allclose(db, want_db, **tol)
    dx = ref.winograd_tiles_backward(z @ ref.winograd_weights(wt), x.shape, 1)
    np.testing.assert_allclose(dx, ref.col2im(wt.reshape(f, -1).T @ d2, x.shape, 3, 3, 1, 1), **tol)
    pipeline = ref.winograd_backward(dout, arg, v, ref.winograd_weights(wt), x.shape, True)
    for got, want in zip(pipeline, ((d2 @ cols.T).reshape(wt.shape), want_db, dx)):
        np.testing.assert_allclose(got, want, **tol)
    dy = np.random.default_rng(29).standard_normal((n, f, h, w))   # an unpooled conv's gradient
    z, db = ref.winograd_output_backward(dy)
    d2, want_db = ref.nchw_to_rows(dy)
    np.testing.assert_allclose(ref.winograd_weight_grad(z.transpose(0, 2, 1) @ v), (d2 @ cols.T).reshape(wt.shape),
                               **tol)
    np.testing.assert_allclose(db, want_db, **tol)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_winograd_tiles_backward_is_the_adjoint_of_the_input_transform(pad):
    """<tiles(x), dv> = <x, tiles_backward(dv)> for every x and dv: what makes it the input gradient."""
    rng = np.random.default_rng(27)
    x = rng.standard_normal((2, 3, 6, 4))
    dv = rng.standard_normal(ref.winograd_tiles(x, pad).shape)
    for kern in (ref, cpu):
        np.testing.assert_allclose(np.sum(kern.winograd_tiles(x, pad) * dv),
                                   np.sum(x * kern.winograd_tiles_backward(dv, x.shape, pad)), rtol=1e-12)


@pytest.mark.parametrize("n,c,f,h,w", WINOGRAD_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_kernels_match_reference(n, c, f, h, w, dtype):
    x, wt, b = _winograd_operands(n, c, f, h, w, dtype, 22)

    def close(a, r):   # float32: the transforms scale values by up to 100 before they cancel
        assert a.dtype == dtype and a.shape == r.shape
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, float(np.abs(r).max())))

    for pad in (1, 0) if h > 2 and w > 2 else (1,):
        close(cpu.winograd_tiles(x, pad), ref.winograd_tiles(x, pad))
    v = ref.winograd_tiles(x, 1)
    m = v @ ref.winograd_weights(wt).transpose(0, 2, 1)
    pooled = h % 2 == 0 and w % 2 == 0
    for bias in (b, None):
        close(cpu.winograd_output(m, bias, n, h, w), ref.winograd_output(m, bias, n, h, w))
        if pooled:
            out_f, arg_f = cpu.winograd_relu_pool(m, bias, n, h, w)
            out_r, arg_r = ref.winograd_relu_pool(m, bias, n, h, w)
            close(out_f, out_r)
            np.testing.assert_array_equal(arg_f, arg_r)  # random data: no two window entries within rounding
    dy = np.random.default_rng(25).standard_normal((n, f, h, w)).astype(dtype)
    pairs = [(cpu.winograd_output_backward(dy), ref.winograd_output_backward(dy))]
    if pooled:
        assert (arg_r == -1).any() and (arg_r >= 0).any()
        dout = np.random.default_rng(23).standard_normal(out_r.shape).astype(dtype)
        pairs.append((cpu.winograd_pool_backward(dout, arg_r), ref.winograd_pool_backward(dout, arg_r)))
    for fast, slow in pairs:
        for a, r in zip(fast, slow):
            close(a, r)
    for pad in (1, 0) if h > 2 and w > 2 else (1,):
        dv = np.random.default_rng(24).standard_normal(ref.winograd_tiles(x, pad).shape).astype(dtype)
        close(cpu.winograd_tiles_backward(dv, x.shape, pad), ref.winograd_tiles_backward(dv, x.shape, pad))


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_pipelines_match_reference(pool, dtype):
    """The numba pipelines run the steps chunk by chunk (WINOGRAD_CHUNK images) on each thread: a batch
    of 19 leaves partial chunks on both threads; results equal the whole-batch reference."""
    n, c, f, h, w = 19, 6, 5, 6, 10
    x, wt, b = _winograd_operands(n, c, f, h, w, dtype, 30)
    u = ref.winograd_weights(wt)

    def close(a, r):   # to rounding, relative to the array's scale (see the kernel test)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, float(np.abs(r).max())))

    fast, slow = cpu.winograd_forward(x, u, b, pool), ref.winograd_forward(x, u, b, pool)
    close(fast[0], slow[0])
    close(fast[2], slow[2])
    if pool:
        np.testing.assert_array_equal(fast[1], slow[1])
    else:
        assert fast[1] is None and slow[1] is None
    assert fast[0].dtype == dtype and fast[0].shape == ((n, f, h // 2, w // 2) if pool else (n, f, h, w))
    dout = np.random.default_rng(31).standard_normal(slow[0].shape).astype(dtype)
    for need_dx in (True, False):
        got = cpu.winograd_backward(dout, slow[1], slow[2], u, x.shape, need_dx)
        want = ref.winograd_backward(dout, slow[1], slow[2], u, x.shape, need_dx)
        for a, r in zip(got, want):
            if r is None:
                assert a is None and not need_dx
                continue
            assert a.dtype == dtype and a.shape == r.shape
            close(a, r)


def test_winograd_stacks_spread_their_planes_over_cache_sets():
    """The (36, T, channels) buffers get a few unused rows so their 36 planes do not start a multiple
    of 4 KiB apart (one cache set for a whole tile); rows whose size is a multiple of 1 KiB cannot be
    spread, and must still get a buffer (an earlier version searched for ever there)."""
    import math
    for rows, width in ((8 * 16, 64), (8 * 16, 32), (128 * 16, 32), (100, 7)):
        a = cpu_winograd._stack(rows, width, np.float32)
        assert a.shape[1] >= rows and a.flags.c_contiguous
        assert math.gcd(a.strides[0] % 4096, 4096) <= 512
    for width in (256, 512, 1024):
        a = cpu_winograd._stack(16, width, np.float32)
        assert a.shape[0] == 36 and 16 <= a.shape[1] < 16 + 4


@pytest.mark.parametrize("pool", [True, False])
def test_winograd_pipelines_with_wide_channels(pool):
    """256 input and 512 output channels: plane rows of 1 and 2 KiB, which no extra rows can spread."""
    x, wt, b = _winograd_operands(3, 256, 512, 4, 4, np.float64, 32)
    u = ref.winograd_weights(wt)
    fast, slow = cpu.winograd_forward(x, u, b, pool), ref.winograd_forward(x, u, b, pool)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, atol=1e-10)
    dout = np.random.default_rng(33).standard_normal(slow[0].shape)
    for got, want in zip(cpu.winograd_backward(dout, slow[1], slow[2], u, x.shape, True),
                         ref.winograd_backward(dout, slow[1], slow[2], u, x.shape, True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_winograd_tile_counts():
    """ceil(output size / 4) tiles per axis; an image too small for any output is an error."""
    assert ref.winograd_tile_counts(14, 14, 1) == (4, 4) and ref.winograd_tile_counts(8, 6, 0) == (2, 1)
    assert ref.winograd_tile_counts(7, 5, 1) == (2, 2) and ref.winograd_tile_counts(1, 1, 1) == (1, 1)
    with pytest.raises(ValueError, match="has no output"):
        ref.winograd_tile_counts(2, 5, 0)
    with pytest.raises(ValueError, match="has no output"):
        cpu.winograd_tiles(np.zeros((1, 1, 2, 5), np.float32), 0)


@pytest.mark.parametrize("shape_a,shape_b", [  # each at least threads._SPLIT_MIN_MACS multiply-adds
    ((900, 60), (60, 70)), ((60, 70), (70, 900)), ((60, 900), (900, 70))])  # rows, columns, inner dimension
def test_threaded_matmul_equals_numpy(shape_a, shape_b):
    """nncore.threads.matmul cuts products into slabs (by rows, columns or the inner dimension) for its
    threads: the result is the plain product, whatever the cut."""
    from nncore import threads
    rng = np.random.default_rng(24)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    np.testing.assert_allclose(threads.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    bt = np.ascontiguousarray(np.swapaxes(b, -1, -2))
    np.testing.assert_allclose(threads.matmul(a, np.swapaxes(bt, -1, -2)), a @ b, rtol=1e-12, atol=1e-12)


def test_threaded_matmul_keeps_the_callers_error_settings():
    """np.errstate holds for one thread: the slices run on the pool's threads under the caller's settings,
    so an overflow the caller silences (a diverged run's validation) prints no warning, and one the caller
    makes an error raises."""
    import warnings

    from nncore import threads
    a = np.full((900, 60), 1e30, np.float32)
    b = np.full((60, 70), 1e30, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="ignore"):
            assert np.isinf(threads.matmul(a, b)).all()
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        threads.matmul(a, b)
