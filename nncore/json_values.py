"""Numbers for JSON output: JSON has no NaN or infinity, so they are written as null."""

import math

import numpy as np


def finite_or_none(value, digits=None):
    """``None`` for NaN, infinity and ``None``; a finite float (rounded to ``digits``) otherwise.

    Values that are not floats (ints, strings, lists...) come back unchanged.
    """
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return None
        return float(value) if digits is None else round(float(value), digits)
    return value
