"""The cases of every exercise, run on whichever ``nncore`` is importable (the grader's child process).

This file imports ``nncore`` by its absolute name only, so the grader runs it
twice: once with the student's folder first on PYTHONPATH and once with the
installed package, always with ``NNCORE_KERNELS=reference``. The inputs come
from seeded generators, so both runs see the same arrays. Each exercise is a
pair of functions: ``<name>_cases(rng)`` -> [(case, inputs)] and
``<name>_run(inputs, out)``, which fills ``out`` {array name: array} as it goes
(what a forward pass computed is graded even when the backward pass raises). Flags such as ``dout_unchanged``
are arrays too (1.0 or 0.0), compared like the others.
"""

import gzip
import os

import numpy as np

F64 = np.float64


def _randn(rng, *shape):
    return rng.standard_normal(shape)


def _unchanged(a, before):
    return np.array(1.0 if np.array_equal(a, before) else 0.0)


# -- im2col / col2im / conv -------------------------------------------------------------------------------

def im2col_cases(rng):
    geo = [("basic", (2, 3, 6, 5), 3, 3, 1, 0), ("padding", (2, 2, 5, 6), 3, 3, 1, 1),
           ("stride", (2, 3, 9, 8), 3, 3, 2, 1), ("batch1", (1, 2, 7, 7), 2, 3, 2, 2)]
    return [(name, {"x": _randn(rng, *shape), "geo": np.array([kh, kw, s, p])}) for name, shape, kh, kw, s, p in geo]


def im2col_run(inp, result):
    from nncore.kernels import reference
    kh, kw, s, p = (int(v) for v in inp["geo"])
    result["cols"] = reference.im2col(inp["x"], kh, kw, s, p)


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def col2im_cases(rng):
    geo = [("overlap", (2, 2, 6, 5), 3, 3, 1, 0), ("no-overlap", (2, 3, 6, 6), 2, 2, 2, 0),
           ("stride", (2, 2, 9, 8), 3, 3, 2, 1), ("batch1", (1, 2, 5, 7), 2, 3, 1, 1)]
    cases = []
    for name, (n, c, h, w), kh, kw, s, p in geo:
        cols = _randn(rng, c * kh * kw, n * _out_size(h, kh, s, p) * _out_size(w, kw, s, p))
        cases.append((name, {"cols": cols, "x_shape": np.array([n, c, h, w]), "geo": np.array([kh, kw, s, p])}))
    return cases


def col2im_run(inp, result):
    from nncore.kernels import reference
    kh, kw, s, p = (int(v) for v in inp["geo"])
    result["dx"] = reference.col2im(inp["cols"], tuple(int(v) for v in inp["x_shape"]), kh, kw, s, p)


def conv_cases(rng):
    geo = [("same", (2, 3, 6, 5), 4, 3, 3, 1, 1), ("stride", (2, 2, 9, 8), 3, 3, 3, 2, 0),
           ("batch1", (1, 2, 7, 6), 2, 2, 3, 2, 2)]
    cases = []
    for name, (n, c, h, w), f, kh, kw, s, p in geo:
        dout = _randn(rng, n, f, _out_size(h, kh, s, p), _out_size(w, kw, s, p))
        cases.append((name, {"x": _randn(rng, n, c, h, w), "w": _randn(rng, f, c, kh, kw), "b": _randn(rng, f),
                             "dout": dout, "geo": np.array([s, p])}))
    return cases


def conv_run(inp, result):
    from nncore.kernels import reference
    s, p = (int(v) for v in inp["geo"])
    dout = inp["dout"].copy()
    result["out"], ctx = reference.conv2d_forward(inp["x"], inp["w"], inp["b"], s, p, True)
    result["dx"], result["dw"], result["db"] = reference.conv2d_backward(ctx, dout, True)
    result["dout_unchanged"] = _unchanged(dout, inp["dout"])


def _conv_gradcheck():
    from nncore.gradcheck import away_from_zero, check_layer
    from nncore.layers import Conv2D
    layer = Conv2D(2, 3, 3, stride=2, padding=1, dtype=F64, rng=0)
    return check_layer(layer, away_from_zero((2, 2, 5, 6), seed=1))


# -- max-pooling ------------------------------------------------------------------------------------------

def maxpool_cases(rng):
    def distinct(shape):
        return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0

    geo = [("k2", (2, 3, 6, 6), 2, 2), ("odd", (2, 2, 7, 5), 2, 2), ("overlap", (2, 2, 7, 7), 3, 2),
           ("stride1", (1, 2, 5, 5), 2, 1), ("gap", (2, 2, 8, 8), 2, 3)]
    cases = []
    for name, shape, k, s in geo:
        cases.append((name, {"x": distinct(shape), "geo": np.array([k, s])}))
    ties = rng.integers(0, 2, size=(2, 2, 4, 4)).astype(F64)
    ties[0, 0, :2, :2] = 1.0                                      # at least one window with every input tied
    cases.append(("ties", {"x": ties, "geo": np.array([2, 2])}))
    for _name, inp in cases:
        k, s = inp["geo"]
        n, c, h, w = inp["x"].shape
        inp["dout"] = _randn(rng, n, c, (h - k) // s + 1, (w - k) // s + 1)
    return cases


def maxpool_run(inp, result):
    from nncore.kernels import reference
    k, s = (int(v) for v in inp["geo"])
    dout = inp["dout"].copy()
    result["out"], arg = reference.maxpool_forward(inp["x"], k, s)
    result["dx"] = reference.maxpool_backward(dout, arg, inp["x"].shape, k, s)
    result["dout_unchanged"] = _unchanged(dout, inp["dout"])


def _maxpool_gradcheck():
    from nncore.gradcheck import check_layer, distinct_values
    from nncore.layers import MaxPool2D
    return (check_layer(MaxPool2D(2), distinct_values((2, 2, 4, 4), seed=2))
            + check_layer(MaxPool2D(3, stride=2), distinct_values((1, 2, 7, 7), seed=3)))


# -- ReLU -------------------------------------------------------------------------------------------------

def relu_cases(rng):
    zeros = _randn(rng, 3, 4, 5)
    zeros[0, 0, :3] = 0.0
    return [("random", {"x": _randn(rng, 4, 7), "dout": _randn(rng, 4, 7)}),
            ("with-zeros", {"x": zeros, "dout": _randn(rng, 3, 4, 5)})]


def relu_run(inp, result):
    from nncore.kernels import reference
    x, dout = inp["x"].copy(), inp["dout"].copy()
    result["out"] = out = reference.relu_forward(x)
    result["x_unchanged"] = _unchanged(x, inp["x"])
    result["dx"] = reference.relu_backward(dout, out)
    result["dout_unchanged"] = _unchanged(dout, inp["dout"])


def _relu_gradcheck():
    from nncore.gradcheck import away_from_zero, check_layer
    from nncore.layers import ReLU
    return check_layer(ReLU(), away_from_zero((3, 7), seed=4))


# -- Dense ------------------------------------------------------------------------------------------------

def dense_cases(rng):
    sizes = [("basic", 3, 5, 4), ("square", 2, 4, 4), ("batch1", 1, 3, 6)]
    return [(name, {"x": _randn(rng, n, d), "W": _randn(rng, d, m), "b": _randn(rng, m), "dout": _randn(rng, n, m)})
            for name, n, d, m in sizes]


def dense_run(inp, result):
    from nncore.layers import Dense
    d, m = inp["W"].shape
    layer = Dense(d, m, dtype=F64)
    layer.params["W"], layer.params["b"] = inp["W"].copy(), inp["b"].copy()
    dout = inp["dout"].copy()
    result["out"] = layer.forward(inp["x"].copy(), training=True)
    result["dx"] = layer.backward(dout)
    result["dW"], result["db"] = layer.grads.get("W"), layer.grads.get("b")
    result["dout_unchanged"] = _unchanged(dout, inp["dout"])


def _dense_gradcheck():
    from nncore.gradcheck import check_layer
    from nncore.layers import Dense
    return check_layer(Dense(5, 4, dtype=F64, rng=5), np.random.default_rng(5).standard_normal((3, 5)))


# -- softmax cross-entropy --------------------------------------------------------------------------------

def softmax_cases(rng):
    return [("basic", {"logits": _randn(rng, 4, 5), "labels": rng.integers(0, 5, 4)}),
            ("large", {"logits": 1000.0 * _randn(rng, 3, 4), "labels": rng.integers(0, 4, 3)}),
            ("batch1", {"logits": _randn(rng, 1, 3), "labels": np.array([2])})]


def softmax_run(inp, result):
    from nncore.losses import SoftmaxCrossEntropy, log_softmax
    result["logp"] = log_softmax(inp["logits"].copy())
    loss_fn = SoftmaxCrossEntropy()
    result["loss"] = np.asarray(loss_fn.forward(inp["logits"].copy(), inp["labels"]), dtype=F64)
    result["dlogits"] = loss_fn.backward()


def _softmax_gradcheck():
    from nncore.gradcheck import LAYER_TOLERANCE, CheckResult, numerical_gradient, rel_error
    from nncore.losses import SoftmaxCrossEntropy
    rng = np.random.default_rng(6)
    z, y = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(z, y)
    analytic = loss_fn.backward()
    numeric = numerical_gradient(lambda: float(loss_fn.forward(z, y)), z)
    return [CheckResult("SoftmaxCrossEntropy", "logits", z.shape, rel_error(analytic, numeric), LAYER_TOLERANCE)]


# -- BatchNorm --------------------------------------------------------------------------------------------

def batchnorm_cases(rng):
    shapes = [("conv", (4, 3, 5)), ("dense", (6, 2, 1)), ("batch2", (2, 3, 4)), ("no-dx", (3, 2, 4))]
    return [(name, {"x3": _randn(rng, *shape) * 2 + 1, "gamma": _randn(rng, shape[1]),
                    "beta": _randn(rng, shape[1]), "dout3": _randn(rng, *shape)}) for name, shape in shapes]


def batchnorm_run(inp, result):
    from nncore.kernels import reference
    _out, xhat, _mean, _var, inv_std = reference.batchnorm_forward(inp["x3"], inp["gamma"], inp["beta"], 1e-5)
    dout = inp["dout3"].copy()
    if inp["x3"].shape == (3, 2, 4):                  # the "no-dx" case: the parameter gradients alone
        _dx, result["dgamma"], result["dbeta"] = reference.batchnorm_backward(dout, xhat, inp["gamma"], inv_std,
                                                                              False)
        return
    result["dx"], result["dgamma"], result["dbeta"] = reference.batchnorm_backward(dout, xhat, inp["gamma"],
                                                                                    inv_std, True)
    result["dout_unchanged"] = _unchanged(dout, inp["dout3"])


def _batchnorm_gradcheck():
    from nncore.gradcheck import check_layer
    from nncore.layers import BatchNorm
    rng = np.random.default_rng(7)
    return (check_layer(BatchNorm(3, dtype=F64), rng.standard_normal((4, 3, 2, 2)))
            + check_layer(BatchNorm(4, dtype=F64), rng.standard_normal((5, 4))))


# -- Dropout ----------------------------------------------------------------------------------------------

def dropout_cases(rng):
    return [("p0.3", {"x": rng.random((200, 100)) + 0.5, "dout": _randn(rng, 200, 100), "p": np.array(0.3)}),
            ("p0.6", {"x": rng.random((50, 40)) + 0.5, "dout": _randn(rng, 50, 40), "p": np.array(0.6)})]


def dropout_run(inp, result):
    """Statistics, not the draw itself: a student may draw the mask another way."""
    from nncore.layers import Dropout
    p = float(inp["p"])
    layer = Dropout(p, rng=0)
    out = layer.forward(inp["x"].copy(), training=True)
    result["out_shape"] = np.array(out.shape, dtype=F64)
    scale = out / inp["x"]
    kept = scale != 0
    result["kept_fraction"] = np.array(kept.mean())
    result["kept_scale"] = np.array(scale[kept].mean() if kept.any() else 0.0)
    result["scale_spread"] = np.array(np.ptp(scale[kept]) if kept.any() else 0.0)
    dx = layer.backward(inp["dout"].copy())
    result["dx_minus_dout_mask"] = np.array(np.abs(dx - inp["dout"] * scale).max())


def _dropout_gradcheck():
    from nncore.gradcheck import check_layer
    from nncore.layers import Dropout
    rng = np.random.default_rng(8)
    layer = Dropout(0.4)
    layer.fixed_mask = (rng.random((3, 6)) >= 0.4) / 0.6
    return check_layer(layer, rng.standard_normal((3, 6)))


# -- SGD with momentum ------------------------------------------------------------------------------------

def sgd_cases(rng):
    settings = [("momentum", 0.9, False, 0.0), ("nesterov", 0.9, True, 0.0), ("weight-decay", 0.5, False, 0.1)]
    return [(name, {"W": _randn(rng, 4, 3), "b": _randn(rng, 3), "gW": _randn(rng, 3, 4, 3), "gb": _randn(rng, 3, 3),
                    "hyper": np.array([mu, float(nesterov), wd])}) for name, mu, nesterov, wd in settings]


def sgd_run(inp, result):
    from nncore.layers import Dense
    from nncore.optim import SGD
    from nncore.sequential import Sequential
    mu, nesterov, wd = (float(v) for v in inp["hyper"])
    layer = Dense(4, 3, dtype=F64)
    layer.params["W"], layer.params["b"] = inp["W"].copy(), inp["b"].copy()
    model = Sequential([layer], (4,))
    opt = SGD(model, lr=0.1, momentum=mu, nesterov=bool(nesterov), weight_decay=wd)
    for t in range(3):
        layer.grads = {"W": inp["gW"][t].copy(), "b": inp["gb"][t].copy()}
        opt.step()
        result[f"W{t + 1}"], result[f"b{t + 1}"] = layer.params["W"].copy(), layer.params["b"].copy()


def _sgd_gradcheck():
    """No gradient to check: a descent check instead, on f(p) = |p|^2 / 2 (its gradient is p)."""
    from nncore.gradcheck import CheckResult
    from nncore.layers import Dense
    from nncore.optim import SGD
    from nncore.sequential import Sequential
    layer = Dense(4, 3, dtype=F64, rng=9)
    model = Sequential([layer], (4,))
    opt = SGD(model, lr=0.1, momentum=0.9)
    start = sum(float((p ** 2).sum()) for p in layer.params.values())
    for _ in range(30):
        layer.grads = {k: p.copy() for k, p in layer.params.items()}
        opt.step()
    end = sum(float((p ** 2).sum()) for p in layer.params.values())
    return [CheckResult("SGD", "|p|^2 after 30 steps / before", (), end / start, 0.1)]


GRADIENT_CHECKS = {"im2col": _conv_gradcheck, "col2im": _conv_gradcheck, "conv": _conv_gradcheck,
                   "maxpool": _maxpool_gradcheck, "relu": _relu_gradcheck, "dense": _dense_gradcheck,
                   "softmax": _softmax_gradcheck, "batchnorm": _batchnorm_gradcheck, "dropout": _dropout_gradcheck,
                   "sgd": _sgd_gradcheck}


# -- the training run -------------------------------------------------------------------------------------

def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def training_data(n=500, seed=0):
    """(x, y, source): n MNIST training digits from $NNCORE_DATA_DIR/mnist, or synthetic digits without it."""
    folder = os.path.join(os.environ.get("NNCORE_DATA_DIR", ""), "mnist")
    images, labels = (os.path.join(folder, f"train-{k}-idx{d}-ubyte.gz") for k, d in (("images", 3), ("labels", 1)))
    if os.environ.get("NNCORE_DATA_DIR") and os.path.isfile(images) and os.path.isfile(labels):
        x = _read_idx(images)[:n].astype(np.float32)[:, None] / 255.0
        return x, _read_idx(labels)[:n].astype(np.int64), f"MNIST, first {n} training digits"
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 1, 28, 28)) > 0.7).astype(np.float32)
    y = rng.integers(0, 10, n)
    x = templates[y] * 0.8 + 0.3 * rng.random((n, 1, 28, 28)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64), f"synthetic (MNIST not found), {n} images of 10 noisy templates"


def training_run(epochs=3, batch=50):
    """Train a small CNN of the student's layers; returns the first and last epoch's mean loss and the accuracy."""
    from nncore.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
    from nncore.losses import SoftmaxCrossEntropy
    from nncore.optim import SGD
    from nncore.sequential import Sequential
    x, y, source = training_data()
    model = Sequential([Conv2D(1, 4, 3, padding=1, rng=0), ReLU(), MaxPool2D(2),
                        Conv2D(4, 8, 3, stride=2, padding=1, bias=False, rng=1), BatchNorm(8), ReLU(), Flatten(),
                        Dropout(0.1, rng=2), Dense(8 * 7 * 7, 10, rng=3)], (1, 28, 28))
    loss_fn, opt, rng = SoftmaxCrossEntropy(), SGD(model, lr=0.05, momentum=0.9), np.random.default_rng(4)
    losses = []
    for _ in range(epochs):
        order, total = rng.permutation(len(x)), 0.0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            total += float(loss_fn.forward(model.forward(x[idx], training=True), y[idx])) * len(idx)
            model.backward(loss_fn.backward())
            opt.step()
        losses.append(total / len(x))
    accuracy = float((model.forward(x, training=False).argmax(axis=1) == y).mean())
    return {"first_loss": losses[0], "last_loss": losses[-1], "accuracy": accuracy, "data": source}
