"""Occlusion: how much a class's probability drops when a patch of the image is covered."""

import numpy as np

from .. import backend
from ..errors import UsageError


def occlusion(model, image, class_index=None, patch=6, stride=2, fill=0):
    """Cover the image with a ``patch`` x ``patch`` square at every ``stride``-th position.

    Parameters
    ----------
    model : Sequential
    image : (H, W) or (C, H, W), uint8 0-255 or float 0-1
    class_index : int or None (the class predicted for the whole image)
    patch, stride : int, the square's side and the step between positions, in pixels
    fill : the raw pixel value put under the patch (0: MNIST's black background)

    Returns
    -------
    drops : (PH, PW) float64, ``drops[i, j] = p_k(image) - p_k(image with the square at rows
        i*stride .. i*stride+patch-1 and columns j*stride .. j*stride+patch-1 set to fill)``,
        PH = (H - patch) // stride + 1 (likewise PW). Positive: covering that square hurt
        the class; negative: it helped.
    class_index : int
    """
    img = backend.to_numpy(image)
    h, w = img.shape[-2:]
    if not (isinstance(patch, (int, np.integer)) and isinstance(stride, (int, np.integer))
            and 1 <= patch <= min(h, w) and stride >= 1):
        raise UsageError(f"occlusion patch must be in [1, {min(h, w)}] and stride >= 1, got {patch}, {stride}")
    base = model.predict_proba(img[None])[0].astype(np.float64)
    k = int(base.argmax()) if class_index is None else int(class_index)
    if not 0 <= k < model.num_classes:
        raise UsageError(f"class_index must be in [0, {model.num_classes}), got {class_index}")
    rows, cols = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
    covered = np.repeat(img[None], len(rows) * len(cols), axis=0)
    for n, (r, c) in enumerate((r, c) for r in rows for c in cols):
        covered[n, ..., r:r + patch, c:c + patch] = fill
    probs = model.predict_proba(covered)[:, k].astype(np.float64)
    return (base[k] - probs).reshape(len(rows), len(cols)), k


def occlusion_heatmap(drops, shape, patch=6, stride=2):
    """Spread :func:`occlusion`'s drops back over the pixels: (H, W), each pixel the mean drop
    of the squares that covered it (0 where none did)."""
    h, w = shape
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for i in range(drops.shape[0]):
        for j in range(drops.shape[1]):
            total[i * stride:i * stride + patch, j * stride:j * stride + patch] += drops[i, j]
            count[i * stride:i * stride + patch, j * stride:j * stride + patch] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)
