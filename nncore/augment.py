"""Data augmentation for MNIST-style images: small random shifts, rotations and scalings,
and (optionally) thicker strokes.

Every image of a batch gets its own random affine map (rotation by an angle
in [-max_rotation, max_rotation] degrees about the image centre, isotropic
scaling by a factor in ``scale``, then a shift of up to ``max_shift`` pixels
on each axis), applied by bilinear interpolation with black (0) outside the
image. Everything is vectorised over the batch: one gather of four
neighbours per output pixel, no Python loop over images.

The randomness comes only from the ``rng`` argument (a NumPy Generator), so
``augment(x, np.random.default_rng([seed, epoch, step]))`` is reproducible;
the training loop relies on that for exact resumption.
"""

import numpy as np

from .errors import UsageError

#: Defaults used by ``train.py --augment``: mild enough to keep every digit readable.
DEFAULT_MAX_SHIFT = 2.0
DEFAULT_MAX_ROTATION = 10.0
DEFAULT_SCALE = (0.9, 1.1)


def affine_warp(images, angles, scales, shifts):
    """Warp each image by its own rotation/scale/shift (inverse mapping, bilinear).

    Inputs:
    - images: uint8 or float (N, H, W)
    - angles: (N,) radians (the sign convention does not matter for symmetric random angles)
    - scales: (N,) zoom factors (> 1 enlarges the character)
    - shifts: (N, 2) pixels (dy, dx) added after rotation and scaling

    Returns an array of images' dtype, shape (N, H, W). uint8 results are rounded.
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise UsageError(f"augmentation expects images of shape (N, H, W), got {x.shape}")
    n, h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32) - cy, np.arange(w, dtype=np.float32) - cx, indexing="ij")
    cos = (np.cos(angles) / scales).astype(np.float32)[:, None, None]
    sin = (np.sin(angles) / scales).astype(np.float32)[:, None, None]
    dy = (yy[None] - shifts[:, 0, None, None].astype(np.float32))
    dx = (xx[None] - shifts[:, 1, None, None].astype(np.float32))
    # inverse map: output pixel -> source pixel = R(angle)^-1 (p - c - shift) / scale + c
    sy = cos * dy - sin * dx + cy
    sx = sin * dy + cos * dx + cx
    # pad with a zero border so every sample point reads valid memory
    pad = np.zeros((n, h + 2, w + 2), dtype=np.float32)
    pad[:, 1:-1, 1:-1] = x
    sy = np.clip(sy, -1.0, h - 1e-3)
    sx = np.clip(sx, -1.0, w - 1e-3)
    y0 = np.floor(sy)
    x0 = np.floor(sx)
    fy = sy - y0
    fx = sx - x0
    iy = y0.astype(np.intp) + 1
    ix = x0.astype(np.intp) + 1
    flat = pad.reshape(n, -1)
    base = (np.arange(n, dtype=np.intp) * (h + 2) * (w + 2))[:, None, None]
    i00 = base + iy * (w + 2) + ix
    f = flat.reshape(-1)
    out = ((1 - fy) * ((1 - fx) * f[i00] + fx * f[i00 + 1])
           + fy * ((1 - fx) * f[i00 + w + 2] + fx * f[i00 + w + 3]))
    if x.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(x.dtype)


def thicken(images, which):
    """Strokes one pixel thicker in the chosen images: the maximum over each pixel's 2x2 block.

    Inputs:
    - images: (N, H, W), any dtype
    - which: bool (N,), the images to thicken

    Returns a new array, same shape and dtype; the others are copied unchanged.
    """
    out = np.array(images, copy=True)
    x = out[which]
    grown = x.copy()
    grown[:, 1:, :] = np.maximum(grown[:, 1:, :], x[:, :-1, :])
    grown[:, :, 1:] = np.maximum(grown[:, :, 1:], x[:, :, :-1])
    grown[:, 1:, 1:] = np.maximum(grown[:, 1:, 1:], x[:, :-1, :-1])
    out[which] = grown
    return out


def augment(images, rng, max_shift=DEFAULT_MAX_SHIFT, max_rotation=DEFAULT_MAX_ROTATION, scale=DEFAULT_SCALE,
            thick=0.0):
    """Randomly shift, rotate and scale every image of a batch, and thicken some images' strokes.

    Inputs:
    - images: uint8 (N, H, W) (or float)
    - rng: numpy Generator (the only source of randomness)
    - max_shift: pixels, uniform in [-max_shift, max_shift] per axis
    - max_rotation: degrees, uniform in [-max_rotation, max_rotation]
    - scale: (low, high) zoom factor range
    - thick: the share of images whose strokes grow by one pixel (:func:`thicken`) before the warp,
      for data drawn thinner than the pictures it will read (pens, markers, a canvas)

    Returns a new array, same shape and dtype.
    """
    lo, hi = float(scale[0]), float(scale[1])
    if not (0 < lo <= hi) or max_shift < 0 or max_rotation < 0 or not 0.0 <= thick <= 1.0:
        raise UsageError(f"bad augmentation settings: shift {max_shift}, rotation {max_rotation}, scale {scale}, "
                         f"thick {thick}")
    n = len(images)
    angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    scales = rng.uniform(lo, hi, n)
    shifts = rng.uniform(-max_shift, max_shift, (n, 2))
    if thick > 0:
        images = thicken(images, rng.random(n) < thick)
    return affine_warp(images, angles, scales, shifts)
