"""Softmax cross-entropy on integer labels, computed through log-sum-exp."""

from . import backend
from .errors import UsageError


def log_softmax(logits):
    """Row-wise log-softmax, stable for any finite logits.

    ``log_softmax(z)_k = z_k - m - log(sum_j exp(z_j - m))`` with m = max_j z_j:
    every exponent is <= 0, so nothing overflows, and the log is never taken
    of a number that underflowed to 0 (unlike ``log(softmax(z) + eps)``).
    logits: (N, K) -> (N, K), same dtype.
    """
    xp = backend.get_array_module(logits)
    # exercise: softmax
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    # end exercise


class SoftmaxCrossEntropy:
    """Mean cross-entropy between softmax(logits) and integer class labels.

    Shapes: logits (N, K) float; labels (N,) integers in [0, K).

    Forward::

        loss = -(1/N) * sum_n log_softmax(logits)[n, labels[n]]

    Backward (the classic result: softmax minus one-hot, over N)::

        dlogits = (softmax(logits) - onehot(labels)) / N        (N, K)

    Both stay finite for logits as large as +-1e4 (and beyond) because the
    log-softmax is computed through log-sum-exp.

    Label smoothing ``smoothing`` = s in [0, 1) trains towards the target
    (1 - s) * onehot + s / K instead of the one-hot, which keeps the logits
    from growing without bound on easy examples::

        loss = (1 - s) * nll - s * (1/N) * sum_n mean_k log_softmax(logits)[n, k]
        dlogits = (softmax - onehot) / N + s * (onehot - 1/K) / N
    """

    def __init__(self, smoothing=0.0):
        if not 0.0 <= float(smoothing) < 1.0:
            raise UsageError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self.cache = None

    def forward(self, logits, labels):
        xp = backend.get_array_module(logits)
        if logits.ndim != 2:
            raise UsageError(f"SoftmaxCrossEntropy expects logits of shape (N, K), got {tuple(logits.shape)}")
        labels = xp.asarray(labels)
        if labels.shape != (logits.shape[0],):
            raise UsageError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        if labels.dtype.kind not in "iu":
            raise UsageError(f"labels must be integers, got {labels.dtype}")
        k = logits.shape[1]
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise UsageError(f"labels must lie in [0, {k}), got values in [{int(labels.min())}, {int(labels.max())}]")
        logp = log_softmax(logits)
        n = logits.shape[0]
        picked = logp[xp.arange(n), labels]
        self.cache = (logp, labels)
        if not self.smoothing:
            return -picked.mean()
        s = logp.dtype.type(self.smoothing)
        return -(1 - s) * picked.mean() - s * logp.mean(axis=1).mean()

    def backward(self):
        logp, labels = self.cache
        xp = backend.get_array_module(logp)
        n = logp.shape[0]
        # exercise: softmax
        d = xp.exp(logp)
        d[xp.arange(n), labels] -= 1
        d /= logp.dtype.type(n)
        # end exercise
        if self.smoothing:
            s = logp.dtype.type(self.smoothing)
            d[xp.arange(n), labels] += s / n
            d -= s / (logp.shape[1] * n)
        return d
