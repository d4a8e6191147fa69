"""Sequential: shapes, summary, modes, dtype discipline, raw-image preparation and batched prediction."""

import numpy as np
import pytest

import nncore
from nncore.errors import UsageError
from nncore.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from nncore.sequential import Sequential


def test_ref_cnn_shapes_and_parameter_count():
    model = nncore.ref_cnn()
    assert model.shapes == [(1, 28, 28), (32, 28, 28), (32, 28, 28), (32, 14, 14), (64, 14, 14), (64, 14, 14),
                            (64, 7, 7), (3136,), (128,), (128,), (10,)]
    assert model.num_params() == 320 + 18496 + 401536 + 1290
    text = model.summary()
    assert "3136" in text and "421,642" in text


def test_forward_keeps_dtype_and_first_layer_skips_input_gradient():
    model = nncore.ref_cnn()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    logits = model.forward(x, training=True)
    assert logits.dtype == np.float32 and logits.shape == (3, 10)
    assert model.backward(np.ones_like(logits)) is None
    assert model.layers[0].grads["W"].dtype == np.float32


def test_mismatched_dtype_is_refused_not_upcast():
    model = nncore.ref_cnn()
    with pytest.raises(UsageError, match="float32 parameters but got a float64"):
        model.forward(np.zeros((1, 1, 28, 28)))


def test_wrong_input_shape_is_refused():
    with pytest.raises(UsageError, match="expects input of shape"):
        nncore.ref_cnn().forward(np.zeros((2, 1, 27, 28), np.float32))


def test_incompatible_layers_are_refused_when_built():
    with pytest.raises(UsageError, match="Dense expects 100 input features"):
        Sequential([Flatten(), Dense(100, 10)], (1, 28, 28))


def test_prepare_accepts_uint8_float_and_channel_axis():
    model = nncore.ref_cnn()
    imgs = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    a = model.prepare(imgs)
    b = model.prepare(imgs.astype(np.float64) / 255)
    c = model.prepare(imgs[:, None])
    assert a.shape == (4, 1, 28, 28) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a.mean(), ((imgs / 255 - 0.1307) / 0.3081).mean(), rtol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.full((2, 28, 28), 3.0), r"\[0, 1\]"),
    (np.zeros((2, 32, 32), np.uint8), "shape"),
    (np.zeros((28, 28), np.uint8), "shape"),
    (np.zeros((2, 28, 28), np.int32), "uint8"),
    (np.array([["a"]]), "numeric"),
])
def test_prepare_rejects_bad_images(bad, match):
    with pytest.raises(UsageError, match=match):
        nncore.ref_cnn().predict(bad)


def test_predict_in_batches_matches_one_batch_and_keeps_the_last_partial_batch():
    model = nncore.ref_cnn()
    imgs = np.random.default_rng(2).integers(0, 256, (23, 28, 28), dtype=np.uint8)
    p_small = model.predict_proba(imgs, batch_size=5)
    p_all = model.predict_proba(imgs, batch_size=1000)
    assert p_small.shape == (23, 10)
    np.testing.assert_allclose(p_small, p_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_all.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(imgs, batch_size=7), p_all.argmax(axis=1))


def test_train_and_eval_modes_change_dropout_and_batchnorm():
    layers = [Conv2D(1, 2, 3, padding=1, bias=False, rng=0), BatchNorm(2), ReLU(), MaxPool2D(2), Flatten(),
              Dropout(0.5, rng=0), Dense(2 * 4 * 4, 3, rng=1)]
    model = Sequential(layers, (1, 8, 8))
    x = np.random.default_rng(3).standard_normal((5, 1, 8, 8)).astype(np.float32)
    model.eval()
    np.testing.assert_array_equal(model.forward(x), model.forward(x))  # deterministic at inference
    model.train()
    assert not np.array_equal(model.forward(x), model.forward(x))      # dropout draws new masks
    assert not np.allclose(layers[1].buffers["running_mean"], 0)       # running statistics moved


def test_batchnorm_training_with_one_value_per_feature_is_a_clear_error():
    bn = BatchNorm(4)
    with pytest.raises(UsageError, match="at least 2 values"):
        bn.forward(np.zeros((1, 4), np.float32), training=True)
    assert bn.forward(np.zeros((1, 4), np.float32), training=False).shape == (1, 4)


@pytest.mark.parametrize("make", [
    lambda: Conv2D(1, 2, 4, padding="same"), lambda: Conv2D(0, 2, 3), lambda: Conv2D(1, 2, 3, stride=0),
    lambda: Conv2D(1, 2, 3, padding=-1), lambda: Dense(0, 3), lambda: MaxPool2D(0), lambda: Dropout(1.0),
    lambda: BatchNorm(3, momentum=1.5), lambda: Conv2D(1, 2, 3, dtype=np.int32),
])
def test_invalid_layer_arguments_are_refused(make):
    with pytest.raises(UsageError):
        make()


def test_a_training_step_reduces_the_loss_on_a_fixed_batch():
    model = nncore.ref_cnn(seed=1)
    opt = nncore.optim.SGD(model, lr=0.05, momentum=0.9)
    loss_fn = nncore.SoftmaxCrossEntropy()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    first = float(model.train_step(x, y, loss_fn, opt)[0])
    for _ in range(15):
        last = float(model.train_step(x, y, loss_fn, opt)[0])
    assert last < 0.5 * first


def test_inference_on_a_large_batch_equals_slice_by_slice():
    """Conv layers slice big inference batches internally; the result must not change."""
    for fused in (False, True):
        model = nncore.ref_cnn(seed=2, fused=fused)
        x = np.random.default_rng(5).standard_normal((300, 1, 28, 28)).astype(np.float32)
        whole = model.forward(x, training=False)
        parts = np.concatenate([model.forward(x[i:i + 100], training=False) for i in range(0, 300, 100)])
        np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-5)
