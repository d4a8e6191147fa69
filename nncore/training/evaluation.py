"""Loss and accuracy of a model over a whole labelled set."""

import numpy as np

from ..sequential import PREDICT_BATCH


def evaluate(model, images, labels, batch_size=PREDICT_BATCH):
    """Loss and accuracy over ALL samples (the last partial batch included), in inference mode.

    images: raw images (N, 28, 28) (anything :meth:`nncore.Sequential.prepare` takes); labels: int (N,).
    Returns {"loss": float, "accuracy": float (NaN for N = 0), "pred": (N,) int64, "proba": (N, K) float32}.
    """
    labels = np.asarray(labels).astype(np.int64)
    n = len(labels)
    logp = model.predict_log_proba(images, batch_size).astype(np.float64)
    nll = -float(logp[np.arange(n), labels].sum())
    proba = np.exp(logp).astype(np.float32)
    pred = proba.argmax(axis=1)
    return {"loss": nll / max(n, 1), "accuracy": float((pred == labels).mean()) if n else float("nan"),
            "pred": pred, "proba": proba}
