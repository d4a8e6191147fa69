"""The batches of an epoch and the random streams of each step.

All randomness of a run derives from ``(seed, epoch, step)``, so a run
resumed at any step draws exactly what an uninterrupted run draws:

* the shuffling of epoch ``e`` uses ``default_rng([seed, e, 0])``;
* the augmentation of step ``s`` of epoch ``e`` uses ``default_rng([seed, e, s, 1])``;
* the dropout masks of that step use ``default_rng([seed, e, s, 2, layer])``.
"""

import numpy as np


def batch_bounds(n, batch_size):
    """[(start, stop), ...] covering range(n); a trailing batch of one sample is dropped
    (BatchNorm cannot normalise a single sample), every other sample is used."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
        bounds.pop()
    return bounds


def epoch_order(seed, epoch, n):
    """The shuffled sample order of ``epoch``: a permutation of range(n), int64 (n,)."""
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def augment_rng(seed, epoch, step):
    """The generator of the augmentation of ``step`` of ``epoch``."""
    return np.random.default_rng([seed, epoch, step, 1])


def dropout_rng(seed, epoch, step, layer):
    """The generator of the dropout masks of layer index ``layer`` at ``step`` of ``epoch``."""
    return np.random.default_rng([seed, epoch, step, 2, layer])
