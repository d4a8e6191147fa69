"""Softmax cross-entropy: correct values, finite for extreme logits, the textbook gradient."""

import numpy as np
import pytest

from nncore import SoftmaxCrossEntropy, log_softmax
from nncore.errors import UsageError
from nncore.gradcheck import numerical_gradient, rel_error


def test_loss_of_uniform_logits_is_log_k():
    loss = SoftmaxCrossEntropy().forward(np.zeros((4, 10)), np.array([0, 3, 9, 1]))
    assert float(loss) == pytest.approx(np.log(10))


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
def test_extreme_logits_give_finite_loss_and_gradient(scale):
    """log-sum-exp shifts by the row maximum, so exp never overflows and log never sees 0."""
    logits = np.array([[scale, 0.0, -scale], [0.0, scale, 1.0]], dtype=np.float32)
    fn = SoftmaxCrossEntropy()
    loss = fn.forward(logits, np.array([2, 0]))
    grad = fn.backward()
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    # rows: label 2 scores -scale against a max of scale; label 0 scores 0 against scale (or log(1 + e))
    expected = 1.5 * scale if scale > 0 else 0.5 * np.log1p(np.e)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_gradient_is_softmax_minus_onehot_over_n():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 1, 2, 3, 1])
    fn = SoftmaxCrossEntropy()
    fn.forward(logits, labels)
    analytic = fn.backward()
    numeric = numerical_gradient(lambda: float(SoftmaxCrossEntropy().forward(logits, labels)), logits)
    assert rel_error(analytic, numeric) < 1e-8
    np.testing.assert_allclose(np.exp(log_softmax(logits)).sum(axis=1), 1.0)


@pytest.mark.parametrize("labels", [np.array([0, 5]), np.array([-1, 0]), np.array([0.0, 1.0]), np.array([0])])
def test_bad_labels_are_refused(labels):
    with pytest.raises(UsageError):
        SoftmaxCrossEntropy().forward(np.zeros((2, 5)), labels)


@pytest.mark.parametrize("smoothing", [0.1, 0.5])
def test_label_smoothing_loss_and_gradient(smoothing):
    """float64; the gradient against central differences (rel. error < 1e-7), the loss against its definition."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 5)) * 3
    labels = np.array([0, 1, 2, 3, 4, 1])
    fn = SoftmaxCrossEntropy(smoothing)
    loss = float(fn.forward(logits, labels))
    target = np.full((6, 5), smoothing / 5) + (1 - smoothing) * np.eye(5)[labels]
    assert loss == pytest.approx(-(target * log_softmax(logits)).sum(axis=1).mean(), rel=1e-12)
    analytic = fn.backward()
    numeric = numerical_gradient(lambda: float(SoftmaxCrossEntropy(smoothing).forward(logits, labels)), logits)
    assert rel_error(analytic, numeric) < 1e-7
    np.testing.assert_allclose(analytic, (np.exp(log_softmax(logits)) - target) / 6, atol=1e-15)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_label_smoothing_out_of_range_is_refused(smoothing):
    with pytest.raises(UsageError, match="label smoothing"):
        SoftmaxCrossEntropy(smoothing)
