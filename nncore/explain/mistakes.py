"""The images a model gets wrong."""

import numpy as np


def misclassified(model, images, labels, limit=None):
    """Find the mistakes, most confident first.

    Parameters
    ----------
    model : Sequential
    images : (N, H, W) or (N, C, H, W), uint8 0-255 or float 0-1
    labels : (N,) true class indices
    limit : int or None, the most to return

    Returns
    -------
    list of dicts ``{"index", "label", "predicted", "confidence"}``: the image's index in
    ``images``, its true class, the predicted class and that prediction's probability.
    """
    probs = model.predict_proba(images)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:limit]
    return [{"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(probs[i, predicted[i]])} for i in wrong]
