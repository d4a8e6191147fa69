"""Optimizers and schedules: each update rule against its formula, and learning on a toy problem."""

import math

import numpy as np
import pytest

from nncore import SoftmaxCrossEntropy
from nncore.errors import UsageError
from nncore.layers import Dense
from nncore.optim import SGD, Adam, make_optimizer
from nncore.schedules import CosineLR, StepLR, make_schedule
from nncore.sequential import Sequential


def one_param_model(value, grad):
    layer = Dense(1, 2, rng=0, dtype=np.float64)
    layer.params["W"] = np.array([[value, 0.0]])
    model = Sequential([layer], (1,))
    layer.grads = {"W": np.array([[grad, 0.0]]), "b": np.zeros(2)}
    return model, layer


def test_plain_sgd_step():
    model, layer = one_param_model(1.0, 0.5)
    SGD(model, lr=0.1).step()
    assert layer.params["W"][0, 0] == pytest.approx(1.0 - 0.1 * 0.5)


def test_momentum_accumulates_velocity():
    model, layer = one_param_model(1.0, 1.0)
    opt = SGD(model, lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # v1 = 1, v2 = 0.9 + 1 = 1.9
    assert layer.params["W"][0, 0] == pytest.approx(1.0 - 0.1 * (1.0 + 1.9))


def test_nesterov_looks_ahead():
    model, layer = one_param_model(1.0, 1.0)
    SGD(model, lr=0.1, momentum=0.9, nesterov=True).step()  # v = 1, step = g + mu*v = 1.9
    assert layer.params["W"][0, 0] == pytest.approx(1.0 - 0.19)


def test_weight_decay_applies_to_weights_not_biases():
    model, layer = one_param_model(2.0, 0.0)
    layer.params["b"] = np.array([1.0, 1.0])
    SGD(model, lr=0.1, weight_decay=0.5).step()
    assert layer.params["W"][0, 0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)
    np.testing.assert_array_equal(layer.params["b"], [1.0, 1.0])


def test_adam_first_step_moves_by_lr():
    """After bias correction, Adam's first step is lr * sign(g) (up to eps)."""
    model, layer = one_param_model(1.0, -3.0)
    Adam(model, lr=0.01).step()
    assert layer.params["W"][0, 0] == pytest.approx(1.01, rel=1e-6)


@pytest.mark.parametrize("name,kwargs", [("sgd", {"lr": 0.1, "momentum": 0.9}), ("adam", {"lr": 0.05})])
def test_optimizers_fit_a_separable_problem(name, kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = (x[:, 0] + 2 * x[:, 1] > 0).astype(np.int64)
    model = Sequential([Dense(2, 2, rng=1)], (2,))
    opt, loss = make_optimizer(name, model, **kwargs), SoftmaxCrossEntropy()
    for _ in range(200):
        model.train_step(x, y, loss, opt)
    assert (model.forward(x).argmax(1) == y).mean() > 0.95


@pytest.mark.parametrize("kwargs", [{"lr": -1}, {"lr": 0}, {"lr": float("nan")}, {"lr": 0.1, "momentum": 1.5},
                                    {"lr": 0.1, "weight_decay": -1}])
def test_invalid_hyperparameters_are_refused(kwargs):
    model, _ = one_param_model(1.0, 1.0)
    with pytest.raises(UsageError):
        SGD(model, **kwargs)


def test_unknown_optimizer():
    model, _ = one_param_model(1.0, 1.0)
    with pytest.raises(UsageError, match="unknown optimizer"):
        make_optimizer("rmsprop", model, lr=0.1)


def test_optimizer_state_round_trip():
    model, layer = one_param_model(1.0, 1.0)
    opt = SGD(model, lr=0.1, momentum=0.9)
    opt.step()
    state = opt.state_dict()
    opt2 = SGD(model, lr=0.5, momentum=0.9)
    opt2.load_state_dict(state)
    assert opt2.lr == 0.1 and opt2.steps == 1
    np.testing.assert_array_equal(opt2.state["layers.0.W"]["v"], opt.state["layers.0.W"]["v"])


def test_schedules():
    step = StepLR(1.0, step_size=2, gamma=0.5)
    assert [step(e) for e in (0, 1.9, 2, 4.5)] == [1.0, 1.0, 0.5, 0.25]
    cos = CosineLR(1.0, total=10)
    assert cos(0) == pytest.approx(1.0) and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    warm = CosineLR(1.0, total=10, warmup=1)
    assert warm(0.5) < 0.6 and warm(1) == pytest.approx(1.0)
    assert make_schedule("constant", 0.3, 5)(4) == 0.3
    with pytest.raises(UsageError):
        make_schedule("linear", 0.1, 5)
    assert math.isfinite(make_schedule("step", 0.1, 9)(8))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape", [(300, 500), (7,)])         # threaded slices, and the small-array path
@pytest.mark.parametrize("decay", [0.0, 1e-4])
def test_adam_kernel_matches_the_reference(dtype, rtol, shape, decay):
    """The numba Adam update (one pass, slices on threads) against the reference's NumPy arithmetic:
    p, m and v after three steps, updated in place, in float32 and float64."""
    from nncore.kernels import cpu
    from nncore.kernels import reference as ref
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(shape).astype(dtype)
    arrays = {name: [p0.copy(), np.zeros_like(p0), np.zeros_like(p0)] for name in ("ref", "cpu")}
    for t in (1, 2, 3):
        g = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 1, shape)).astype(dtype)
        for name, kernels in (("ref", ref), ("cpu", cpu)):
            p, m, v = arrays[name]
            kernels.adam_update(p, g, m, v, 3e-3, 0.9, 0.999, 1e-8, t, decay)
    for a, b in zip(arrays["cpu"], arrays["ref"]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    assert not np.array_equal(arrays["cpu"][0], p0)


def test_adam_kernel_leaves_non_contiguous_arrays_to_the_reference():
    from nncore.kernels import cpu
    from nncore.kernels import reference as ref
    rng = np.random.default_rng(1)
    base = rng.standard_normal((600, 400)).astype(np.float32)
    g = rng.standard_normal((600, 400)).astype(np.float32)[:, ::2]
    p, q = base[:, ::2].copy(order="F"), base[:, ::2].copy(order="F")           # Fortran order: not C-contiguous
    m1, v1, m2, v2 = (np.zeros_like(p) for _ in range(4))
    cpu.adam_update(p, g, m1, v1, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0)
    ref.adam_update(q, g, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0)
    np.testing.assert_array_equal(p, q)
