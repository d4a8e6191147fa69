"""Temperature scaling: make a trained model's probabilities mean what they say.

Label smoothing (the default recipe uses 0.1) trains towards targets of 0.9,
so even a certain prediction comes out near 0.9; without it, networks tend
to the other extreme. One number fixes either: the logits z are divided by
a temperature T, chosen to minimise the negative log-likelihood of a held-out
set (the validation split, never the test set)::

    p = softmax(z / T),   beta = 1 / T = argmin_beta  mean_n [ logsumexp(beta * z_n) - beta * z_n[y_n] ]

The objective is convex in beta (a log-sum-exp of linear functions minus a
linear one), so a bracketing search finds the minimum. The accuracy cannot
change (dividing by T > 0 keeps every argmax); the last Dense layer's weights
and bias are multiplied by beta, so the saved model needs nothing new to use it.
"""

import math

import numpy as np

from ..layers import Dense
from ..losses import log_softmax


def _nll(beta, logp, labels):
    """Mean negative log-likelihood of softmax(beta * logp) at the labels."""
    return -float(log_softmax(beta * logp)[np.arange(len(labels)), labels].mean())


def fit_temperature(logp, labels, lo=0.05, hi=20.0, steps=60):
    """beta = 1/T minimising the NLL of softmax(beta * logp) (golden-section search on log beta).

    logp: (N, K) float log-probabilities (or logits) of a held-out set; labels: int (N,).
    Returns (beta, nll_before, nll_after): nll_before at beta = 1.
    """
    logp = np.asarray(logp, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(math.exp(c), logp, labels), _nll(math.exp(d), logp, labels)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(math.exp(c), logp, labels)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(math.exp(d), logp, labels)
    beta = math.exp((a + b) / 2)
    return beta, _nll(1.0, logp, labels), _nll(beta, logp, labels)


def calibrate(model, images, labels):
    """Fit the temperature on (images, labels) and fold it into the model's last Dense layer.

    Returns {"temperature": T, "nll_before": ..., "nll_after": ...}, or None (the model untouched)
    when its last layer is not a Dense layer to fold T into. The model's predictions (argmax) are
    unchanged; its probabilities become calibrated on that set.
    """
    last = model.layers[-1]
    if not isinstance(last, Dense):
        return None
    beta, before, after = fit_temperature(model.predict_log_proba(images), labels)
    dtype = last.params["W"].dtype.type
    last.params["W"] = last.params["W"] * dtype(beta)
    if "b" in last.params:
        last.params["b"] = last.params["b"] * dtype(beta)
    return {"temperature": round(1.0 / beta, 4), "nll_before": round(before, 5), "nll_after": round(after, 5)}
