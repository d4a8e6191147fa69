"""GPU parity: every CuPy kernel and layer equals the CPU result; a few ref-cnn steps match.

These run wherever CuPy and a CUDA device are present and are skipped elsewhere
(the reason is printed in pytest's summary). Tolerances are stated for float32:
kernels that only copy must match exactly; sums (col2im, pooling backward,
GEMMs) may differ by rounding order, so 1e-5 relative / 1e-5 absolute for
single kernels and layers, 1e-3 for several training steps of a network.
"""

import numpy as np
import pytest

from nncore import backend
from nncore.errors import DeviceError


def _gpu_or_skip():
    try:
        return backend.import_cupy()
    except DeviceError as exc:
        pytest.skip(f"no usable GPU: {exc}")


@pytest.fixture(scope="module")
def cp():
    return _gpu_or_skip()


@pytest.fixture(scope="module")
def gpu_kernels(cp):
    from nncore.kernels import gpu
    return gpu


CONV_CASES = [(2, 3, 7, 9, 3, 3, 1, 1), (3, 2, 8, 8, 3, 3, 2, 1), (2, 4, 11, 6, 5, 5, 2, 2), (1, 1, 28, 28, 3, 3, 1, 1)]
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_col2im(cp, gpu_kernels, case):
    from nncore.kernels import reference as ref
    n, c, h, w, kh, kw, s, p = case
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)
    cols = gpu_kernels.im2col(cp.asarray(x), kh, kw, s, p)
    np.testing.assert_array_equal(cols.get(), ref.im2col(x, kh, kw, s, p))
    d = np.random.default_rng(1).standard_normal(cols.shape).astype(np.float32)
    np.testing.assert_allclose(gpu_kernels.col2im(cp.asarray(d), x.shape, kh, kw, s, p).get(),
                               ref.col2im(d, x.shape, kh, kw, s, p), **TOL)


@pytest.mark.parametrize("shape,k,s", [((2, 3, 8, 8), 2, 2), ((1, 2, 7, 9), 3, 2), ((2, 2, 5, 5), 2, 1)])
def test_pooling(cp, gpu_kernels, shape, k, s):
    from nncore.kernels import reference as ref
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    out, arg = gpu_kernels.maxpool_forward(cp.asarray(x), k, s)
    out_r, arg_r = ref.maxpool_forward(x, k, s)
    np.testing.assert_array_equal(out.get(), out_r)
    np.testing.assert_array_equal(arg.get(), arg_r)
    d = rng.standard_normal(out_r.shape).astype(np.float32)
    np.testing.assert_allclose(gpu_kernels.maxpool_backward(cp.asarray(d), arg, shape, k, s).get(),
                               ref.maxpool_backward(d, arg_r, shape, k, s), **TOL)
    np.testing.assert_allclose(gpu_kernels.avgpool_forward(cp.asarray(x), k, s).get(),
                               ref.avgpool_forward(x, k, s), **TOL)
    np.testing.assert_allclose(gpu_kernels.avgpool_backward(cp.asarray(d), shape, k, s).get(),
                               ref.avgpool_backward(d, shape, k, s), **TOL)


def _layers():
    from nncore.layers import (
        AvgPool2D,
        BatchNorm,
        Conv2D,
        ConvBNReLUPool,
        ConvReLUPool,
        Dense,
        DenseBNReLUDropout,
        Dropout,
        Flatten,
        LeakyReLU,
        MaxPool2D,
        ReLU,
    )
    rng = np.random.default_rng(3)
    return [
        (Conv2D(3, 4, 3, padding=1, rng=0), rng.standard_normal((2, 3, 7, 7))),
        (Conv2D(2, 3, 3, stride=2, padding=1, rng=1), rng.standard_normal((2, 2, 8, 8))),
        (MaxPool2D(2), rng.standard_normal((2, 3, 6, 6))),
        (AvgPool2D(2), rng.standard_normal((2, 3, 6, 6))),
        (Dense(7, 5, rng=2), rng.standard_normal((4, 7))),
        (ReLU(), rng.standard_normal((3, 8))),
        (LeakyReLU(0.1), rng.standard_normal((3, 8))),
        (Flatten(), rng.standard_normal((2, 3, 2, 2))),
        (BatchNorm(3), rng.standard_normal((4, 3, 4, 4))),
        (BatchNorm(5), rng.standard_normal((6, 5))),
        (Dropout(0.0), rng.standard_normal((3, 4))),
        (ConvReLUPool(3, 4, 3, padding=1, rng=3), rng.standard_normal((2, 3, 8, 8))),
        (ConvBNReLUPool(3, 4, 3, padding=1, rng=4), rng.standard_normal((2, 3, 8, 8))),
        (ConvBNReLUPool(6, 4, 3, padding=1, rng=5), rng.standard_normal((2, 6, 8, 8))),   # CPU: Winograd
        (DenseBNReLUDropout(7, 5, p=0.3, rng=6), rng.standard_normal((4, 7))),   # the same masks (host draws)
    ]


@pytest.mark.parametrize("index", range(15))
def test_each_layer_forward_and_backward_match_cpu(cp, index):
    import copy
    layer_cpu, x = _layers()[index]
    x = x.astype(np.float32)
    layer_gpu = copy.deepcopy(layer_cpu).to("gpu")
    out_c = layer_cpu.forward(x, training=True)
    out_g = layer_gpu.forward(cp.asarray(x), training=True)
    np.testing.assert_allclose(out_g.get(), out_c, **TOL)
    d = np.random.default_rng(4).standard_normal(out_c.shape).astype(np.float32)
    dx_c = layer_cpu.backward(d)
    dx_g = layer_gpu.backward(cp.asarray(d))
    np.testing.assert_allclose(dx_g.get(), dx_c, **TOL)
    for name in layer_cpu.grads:
        np.testing.assert_allclose(layer_gpu.grads[name].get(), layer_cpu.grads[name], rtol=1e-4, atol=1e-4)


def test_ref_cnn_training_steps_match_cpu(cp):
    import nncore
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    losses = {}
    for device in ("cpu", "gpu"):
        model = nncore.ref_cnn(seed=0).to(device)
        opt = nncore.optim.SGD(model, lr=0.05, momentum=0.9)
        loss_fn = nncore.SoftmaxCrossEntropy()
        xb = backend.to_device(x, device)
        losses[device] = [float(model.train_step(xb, backend.to_device(y, device), loss_fn, opt)[0]) for _ in range(5)]
        losses[device + "_w"] = backend.to_numpy(model.layers[0].params["W"])
    np.testing.assert_allclose(losses["gpu"], losses["cpu"], rtol=1e-3)
    np.testing.assert_allclose(losses["gpu_w"], losses["cpu_w"], rtol=1e-3, atol=1e-4)


def test_weights_saved_from_gpu_load_on_cpu(cp, tmp_path):
    import nncore
    model = nncore.ref_cnn(seed=0).to("gpu")
    nncore.save_model(model, tmp_path / "g.npz")
    loaded = nncore.load_model(tmp_path / "g.npz")
    assert loaded.device == "cpu"
    imgs = np.random.default_rng(6).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict_proba(imgs), model.predict_proba(imgs), rtol=1e-4, atol=1e-5)


def test_explain_on_the_gpu_matches_the_cpu(cp):
    """Saliency (eval_forward and backward through BatchNorm's evaluation mode) and activations, on CuPy."""
    import os

    import nncore
    from nncore.explain import activations, saliency

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "mnist_cnn.npz")
    image = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    cpu_model, gpu_model = nncore.load_model(path), nncore.load_model(path).to("gpu")
    grad_cpu, k_cpu = saliency(cpu_model, image)
    grad_gpu, k_gpu = saliency(gpu_model, image)
    assert k_gpu == k_cpu and isinstance(grad_gpu, np.ndarray)
    np.testing.assert_allclose(grad_gpu, grad_cpu, rtol=1e-3, atol=1e-4 * np.abs(grad_cpu).max())
    for (_, a), (_, b) in zip(activations(gpu_model, image), activations(cpu_model, image)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)            # float32 sums through the whole model
