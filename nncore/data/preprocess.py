"""Turn any picture of one handwritten character into a 28x28 MNIST-style image.

The same function, :func:`preprocess_image`, prepares the training data
(image folders such as the math-symbols set) and the photos users ask the
model to classify, so both go through identical steps. The output follows
the MNIST recipe: white ink (255) on black (0), keeping grey anti-aliased
edges, the character scaled (aspect ratio kept) to fit a 20x20 box and
placed in a 28x28 field so that its centre of mass is at pixel (14, 14).

Pipeline (shapes for an input of H x W pixels)
-----------------------------------------------
1. Decode (:func:`load_image`): EXIF rotation applied; refuses files over
   ``MAX_PIXELS`` before decoding, and unreadable or truncated files.
2. Colour (H, W, 3) or grey (H, W) float32 in [0, 1] from any PIL mode or
   numpy dtype: colour is kept until the ink/paper decision (grey when the
   channels are equal). Transparent images: if everything drawn has one
   colour, the alpha channel is the ink; otherwise the image is composited
   on white (grey). Large images are first shrunk so the longer side is <= 512.
3. Paper: a smooth quadratic surface b(y, x) per channel, fitted by
   iteratively trimmed least squares (never biased by thick strokes the way
   a blur would be). The ink's colour direction d is the principal axis of
   the residuals farthest from the paper; e = (g - b) @ d. Polarity: ink is
   the side with more outlier mass (light or dark backgrounds both work).
   The paper is then refitted twice without the pixels on the ink side
   (asymmetric trimming), so a marker filling a small crop does not pull it.
4. Blank or not, on relative evidence only (:func:`_significant`): a stroke
   is a connected region of e standing DETECT_SIGMAS paper-noise levels
   above the paper, covering >= MIN_STROKE_FRAC * (longer side)^2 pixels;
   the noise is measured robustly on the paper itself. No stroke -> an
   all-zero image. Ink strength s = e / paper brightness (flat-field
   correction: a stroke in a shadow is as strong as one in full light),
   kept only on and next to the strokes; rescaled so the noise floor maps
   to 0 and the 90th percentile of the Otsu-selected ink to 1 (grey edges
   kept, as in MNIST).
5. Crop to the ink bounding box (tiny specks separated from the character
   by empty rows/columns are ignored).
6. Stroke width: measured as 2 * area / perimeter of the Otsu mask with
   the character scaled so its longer side is 80 px (4x the 20 px box).
   Strokes thinner than MNIST's (e.g. 1 px pen traces) are thickened by grey
   dilation, much thicker ones thinned by grey erosion, to MNIST's typical
   width. Strokes in MNIST's normal range are left alone.
7. Resize (antialiased) to fit 20x20 and paste into 28x28 at the integer
   shift that brings the centre of mass closest to (14, 14).

MNIST digits themselves already follow this recipe and come out (almost)
unchanged.
"""

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CorruptInputError, MissingInputError, UsageError

# scipy.ndimage is imported in the functions that use it: importing it takes 0.4 s (2-core machine),
# and every script imports nncore, training on MNIST included, which never calls it.

MAX_PIXELS = 50_000_000  # refuse images larger than this (decompression bombs)
WORK_SIZE = 512  # longer side of the working image
CANON = 80  # longer side of the character while measuring/normalising strokes
BOX = 20  # MNIST: the character fits in a 20x20 box ...
SIZE = 28  # ... centred by mass in a 28x28 field
# Stroke width (2*area/perimeter at CANON scale) of MNIST test digits: 5th, 50th, 99th percentiles are 4.9, 7.4, 13.8;
# thinner strokes are thickened to the median, much thicker ones thinned.
WIDTH_LOW, WIDTH_TARGET, WIDTH_HIGH = 3.5, 7.5, 20.0
# The blank decision is relative: ink must stand DETECT_SIGMAS noise levels above the paper in a
# region of at least MIN_STROKE_FRAC * (longer side)^2 pixels. QUANT, half an 8-bit grey step, is
# the noise floor of a picture with no other noise (a clean drawing).
DETECT_SIGMAS = 6.5
MIN_STROKE_FRAC = 3e-3
QUANT = 0.5 / 255
# JPEG codes a picture in 8x8 blocks; heavy compression of a shaded sheet leaves steps between blocks
# that can stand out like a faint stroke. A faint candidate (its peak under JPEG_FAINT times the
# detection bar) whose gradient lies mostly across block borders (at least JPEG_GRID_SHARE of it) is
# blocking, not ink. Measured (2026-12-01) on 75 false strokes of blank sheets (JPEG quality 30 and 60)
# and the main strokes of 1,000 photographed digits and bars (quality 30-95, contrast 15-100%): the
# 53 false strokes with a share of 0.5 or more peak at 1.68 times the bar at most; real strokes lie up
# to 0.49 on the grid (flat ink areas block too) but peak at 2.2 times the bar or more, 3.2 or more
# where their share passes 0.4.
JPEG_BLOCK = 8
JPEG_GRID_SHARE = 0.5
JPEG_FAINT = 2.0


class ImageReadError(CorruptInputError):
    """A file exists but cannot be decoded as an image (or is too large)."""


# --------------------------------------------------------------------------- decoding


def load_image(path, work_size=WORK_SIZE):
    """Open an image file, decode it fully and apply its EXIF orientation.

    Inputs:
    - path: str or os.PathLike.
    - work_size: a large JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8) as long
      as its longer side stays >= 2 * work_size.

    Returns a PIL.Image (any mode). Raises MissingInputError if there is no
    such file, ImageReadError if it is not a decodable image, is truncated,
    or has more than MAX_PIXELS pixels (checked from the header, before
    decoding, so decompression bombs are refused at once).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"image {path} not found; check the path")
    if os.path.isdir(path):
        raise ImageReadError(f"cannot read {path}: it is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(img.size, path)
                if img.format == "JPEG":
                    img.draft(None, (2 * work_size, 2 * work_size))  # decode big JPEGs at reduced scale
                img.load()
                try:
                    img = ImageOps.exif_transpose(img)
                except Exception:  # a broken EXIF block should not make the picture unusable
                    img = img.copy()
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"cannot read {path}: image is too large (over {MAX_PIXELS // 1_000_000} megapixels); "
                             f"resize it first") from None
    except (UnidentifiedImageError, SyntaxError):
        raise ImageReadError(f"cannot read {path}: not an image file or an unsupported format") from None
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        raise ImageReadError(f"cannot read {path}: damaged or truncated image ({_short(exc)}); "
                             f"re-save or replace it") from None
    return img


def _short(exc):
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_size(size, name):
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageReadError(
            f"cannot read {name}: image is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the "
            f"{MAX_PIXELS // 1_000_000} megapixel limit; resize it first"
        )
    if w < 1 or h < 1:
        raise ImageReadError(f"cannot read {name}: image has no pixels ({w}x{h})")


# --------------------------------------------------------------------------- grey level


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _with_alpha(lum, alpha):
    """Grey (H, W) from luminance and alpha (H, W), both in [0, 1]."""
    if alpha.min() > 0.98:
        return lum
    drawn = alpha > 0.5
    if not drawn.any():
        return np.zeros_like(lum)
    if float(lum[drawn].std()) < 0.08:
        return alpha  # one-colour drawing on a transparent canvas: alpha is the ink
    return lum * alpha + (1.0 - alpha)  # composite on white


def _pil_to_gray(img):
    """PIL.Image of any mode -> float32 (H, W) grey level in [0, 1]."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return _with_alpha(rgba[..., :3] @ _LUMA, rgba[..., 3])
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535.0
    if mode in ("I", "F") or mode.startswith("I;"):
        a = np.asarray(img).astype(np.float32)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        return _scale_by_range(a)
    return _colour_or_grey(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)


def _colour_or_grey(rgb):
    """(H, W, 3) in [0, 1] -> itself, or grey (H, W) when the three channels are equal."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return rgb


def _scale_by_range(a):
    """Non-negative numbers -> [0, 1]: [0, 1] kept, [0, 255] and [0, 65535] divided; else by the max."""
    lo, hi = float(a.min()), float(a.max())
    if lo < 0:
        a, hi = a - lo, hi - lo
    for top in (1.0, 255.0, 65535.0):
        if hi <= top:
            return a / top
    return a / hi


def _array_to_gray(a):
    """Validated numpy image -> float32 (H, W) grey in [0, 1].

    Accepts (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) arrays of dtype bool,
    uint8 (0-255), uint16 (0-65535), other integers in 0-255, or floats in
    [0, 1] or [0, 255]. Anything else raises UsageError.
    """
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise UsageError(f"image array must have shape (H, W) or (H, W, C) with C in 1, 3, 4; got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise UsageError(f"image array has no pixels (shape {a.shape})")
    _check_size((a.shape[1], a.shape[0]), "image array")
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise UsageError(f"integer image array of dtype {a.dtype} must hold values 0-255; "
                             f"use uint16 for 16-bit images")
        f = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise UsageError("image array contains NaN or infinite values; replace them before preprocessing")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 255:
            raise UsageError(f"float image array must hold values in [0, 1] or [0, 255]; got range [{lo:g}, {hi:g}]")
        f = a.astype(np.float32) / (1.0 if hi <= 1.0 else 255.0)
    else:
        raise UsageError(f"unsupported image array dtype {a.dtype}; use uint8, uint16, bool or float")
    if f.ndim == 2:
        return f
    if f.shape[2] == 1:
        return f[..., 0]
    if f.shape[2] == 4 and f[..., 3].min() <= 0.98:
        return _with_alpha(f[..., :3] @ _LUMA, f[..., 3])
    return _colour_or_grey(f[..., :3])


def _resize(a, size, resample):
    """Resize float32 (H, W) or (H, W, C) to size=(w, h) with PIL in mode F (channel by channel)."""
    if a.ndim == 3:
        return np.stack([_resize(a[..., c], size, resample) for c in range(a.shape[2])], axis=-1)
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize(size, resample))


def _to_gray(image, work_size=WORK_SIZE):
    """Any accepted input -> float32 (h, w) grey or (h, w, 3) colour in [0, 1], longer side <= work_size.

    Colour is kept (grey only when the channels are equal or the image has
    transparency): the ink/paper decision uses the colour distance from the paper.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        _check_size(image.size, "image")
        try:  # a PIL image straight from Image.open has not applied its EXIF rotation yet
            image = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block should not make the picture unusable
            pass
        g = _pil_to_gray(image)
    elif isinstance(image, np.ndarray):
        g = _array_to_gray(image)
    else:
        raise UsageError(f"expected an image path, PIL.Image or numpy array, got {type(image).__name__}")
    h, w = g.shape[:2]
    if max(h, w) > work_size:
        s = work_size / max(h, w)
        g = _resize(g, (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)
    return g.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- background, ink


def _design(h, w):
    """Quadratic design matrix (h*w, 6) over coordinates scaled to [-1, 1]."""
    v, u = np.meshgrid(np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32), indexing="ij")
    u, v = u.ravel(), v.ravel()
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def _fit_background(g, paper=None, terms=6):
    """Robustly fit a smooth background to grey (H, W): returns the background (H, W) float32.

    A quadratic surface (``terms=6``; 3: a plane) is fitted to a small copy of the image, ignoring pixels
    more than 3 robust standard deviations (MAD) from the current fit, and,
    when ``paper`` (bool (H, W)) is given, pixels outside it (known ink).
    """
    h, w = g.shape
    small = g
    allowed = None
    if max(h, w) > 48:
        s = 48 / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = _resize(g, size, Image.Resampling.BOX)
        if paper is not None:
            allowed = (_resize(paper.astype(np.float32), size, Image.Resampling.BOX) > 0.99).ravel()
    elif paper is not None:
        allowed = paper.ravel()
    sh, sw = small.shape
    z = small.ravel()
    A = _design(sh, sw)
    A[:, terms:] = 0.0  # a plane: the quadratic terms are left out of the fit
    coef = np.zeros(6, dtype=np.float32)
    coef[0] = np.median(z if allowed is None or allowed.sum() < 12 else z[allowed])
    for _ in range(4):
        r = z - A @ coef
        rs = r if allowed is None or allowed.sum() < 12 else r[allowed]  # the spread of the paper allowed
        sigma = _robust_sigma(rs)
        keep = np.abs(r) < max(3.0 * sigma, 0.04)
        if allowed is not None and (keep & allowed).sum() >= 12:
            keep &= allowed
        if keep.sum() < 12:
            break
        zk = z[keep]
        if float(zk.max() - zk.min()) < 0.02:  # flat paper (scans, MNIST): a constant is exact
            coef = np.zeros(6, dtype=np.float32)
            coef[0] = zk.mean()
            break
        Ak = A[keep].astype(np.float64)
        # normal equations of the 6-parameter fit (tiny, no threaded LAPACK call)
        gram = Ak.T @ Ak + 1e-9 * np.eye(6)
        new = np.linalg.solve(gram, Ak.T @ zk.astype(np.float64)).astype(np.float32)
        if np.abs(new - coef).max() < 1e-3:
            coef = new
            break
        coef = new
    if np.abs(coef[1:]).max() < 1e-3:
        return np.full_like(g, coef[0])
    return _surface(coef, h, w)


def _surface(coef, h, w):
    """Evaluate the quadratic of :func:`_design` with coefficients (6,) on an (h, w) grid, by broadcasting."""
    v = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    u = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    c = coef.astype(np.float32)
    return (c[0] + c[1] * u + c[3] * u * u) + v * (c[2] + c[4] * u) + c[5] * v * v


def _otsu(values):
    """Otsu's threshold of a 1-D float array (maximises between-class variance)."""
    hist, edges = np.histogram(values, bins=64)
    p = hist.astype(np.float64)
    centers = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(p)
    w1 = w0[-1] - w0
    m0 = np.cumsum(p * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][np.argmax(between)])


def _box3(a):
    """3x3 mean filter of (H, W) (edges replicated)."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _robust_sigma(v):
    """The standard deviation of v (any shape) estimated robustly: 1.4826 * its median absolute deviation."""
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def _noise(r, lag=4):
    """Robust noise level of residuals r (H, W): the smaller of two MAD * 1.4826 estimates.

    One from the values (right while ink is a small minority), one from
    differences of pixels ``lag`` apart divided by sqrt(2) (right while ink
    edges are a minority, so also for thick markers filling half a small
    crop, where the value spread is mostly ink).
    """
    step = max(1, int(np.sqrt(r.size / 20000)))
    sample = r[::step, ::step]
    est = [_robust_sigma(sample)]
    rows, cols = r[::step, :], r[:, ::step]  # differences along one axis, sampled on the other
    for diff in (rows[:, lag:][:, ::step] - rows[:, :-lag][:, ::step], cols[lag:][::step] - cols[:-lag][::step]):
        if diff.size:
            est.append(_robust_sigma(diff) / np.sqrt(2.0))
    return min(est) if len(est) == 1 else min(est[0], max(est[1:]))


def _paper_noise(s):
    """Noise level of the paper in a signed contrast map s (H, W) (ink > 0), robust to large ink areas.

    Starts from :func:`_noise` (which may underestimate correlated paper
    texture or JPEG blocks), then re-measures the spread (MAD * 1.4826) of
    the values outside the ink candidates (s > 3 noise levels, grown by
    2 px), three times. On blank paper the excluded tail is tiny, so the
    estimate converges to the paper's full spread; on a thick marker crop
    the ink is excluded and does not inflate it.
    """
    from scipy import ndimage
    floor = sigma = max(_noise(s), QUANT)
    step = max(1, int(np.sqrt(s.size / 20000)))
    small = s[::step, ::step]  # the grown ink mask is measured on the sampled grid
    grow = max(1, round(2 / step))
    for _ in range(3):
        ink = ndimage.binary_dilation(small > 3.0 * sigma, iterations=grow)
        rest = small[~ink]
        if rest.size < 16:
            break
        # never below the first estimate: paper clipped at white has a degenerate MAD
        sigma = max(_robust_sigma(rest), floor)
    return sigma


def _paper_residual(img, paper=None, terms=6):
    """Grey (H, W) or colour (H, W, C) -> (residual r (H, W, C), paper b (H, W, C)), r = img - b.

    ``paper``: optional bool (H, W), the pixels known not to be ink; ``terms``: 6 quadratic, 3 plane.
    """
    img = img[..., None] if img.ndim == 2 else img
    bg = np.stack([_fit_background(img[..., c], paper, terms) for c in range(img.shape[2])], axis=-1)
    return img - bg, bg


def _ink_direction(r):
    """Unit colour direction d (C,) along which the ink departs from the paper.

    The principal axis of the residuals r (H, W, C) of the 5% of pixels
    farthest from the paper: black, blue or red ink on any paper give their
    own colour difference, so ink that differs from the paper mainly in hue
    (blue on grey, red on pink) is measured at its full colour distance.
    """
    c = r.shape[2]
    if c == 1:
        return np.ones(1, dtype=np.float32)
    step = max(1, int(np.sqrt(r.shape[0] * r.shape[1] / 20000)))
    flat = r[::step, ::step].reshape(-1, c).astype(np.float64)
    n2 = (flat * flat).sum(1)
    far = flat[n2 >= np.percentile(n2, 95)]
    _, vecs = np.linalg.eigh(far.T @ far)
    d = vecs[:, -1]
    return (d if d.sum() >= 0 else -d).astype(np.float32)


def _refit_paper(img, d, sign, bg):
    """Refit the paper b (H, W, C) for the chosen polarity: returns (e (H, W), b).

    e = sign * (img - b) @ d is > 0 on ink. The surface is refitted twice
    without the pixels on the ink side beyond 2 noise levels (asymmetric
    trimming), so a thick marker or a blurred blob that fills much of a small
    crop does not pull the paper towards the ink.
    """
    img3 = img[..., None] if img.ndim == 2 else img
    e = sign * ((img3 - bg) @ d)
    for _ in range(2):
        paper = e < 2.0 * max(_noise(e), QUANT)
        if paper.all() or paper.mean() < 0.2:
            break
        r, bg = _paper_residual(img, paper)
        e = sign * (r @ d)
    return e, bg


def _ink_side(e, t=None):
    """Which side of the paper the ink of residual e (H, W) lies on: -1 dark, +1 light.

    The side holding more mass beyond t (default 3 noise levels); a tie counts as dark ink.
    """
    t = 3.0 * max(_noise(e), QUANT) if t is None else t
    return -1 if float(e[e > t].sum()) + float(e[e < -t].sum()) <= 0 else 1


def _border_side(img, d):
    """Polarity judged against the paper at the picture's edge.

    A paper plane is fitted to a frame along the edge only (about 4% of the
    shorter side wide), where a written character leaves the paper bare, and
    the ink is the side with more mass beyond 3 of the frame's noise levels.
    This holds even when a thick marker covers more of a tight crop than the
    paper does, where a fit to the whole picture is pulled towards the ink and
    the outlier mass points the wrong way. When over 40% of the frame departs
    from that plane (a character cropped to touch the edge), the paper is the
    median colour of the quietest sides instead (spread within twice the
    quietest one's).

    Parameters
    ----------
    img : float32 (H, W) or (H, W, C)
    d : float32 (C,), the ink's colour direction (:func:`_ink_direction`)

    Returns
    -------
    side : int
        -1 dark ink, +1 light ink, 0 unsure (every side as busy as the others).
    paper : float32 (H, W, C) or None
        The paper surface the decision was made against (None when unsure).
    """
    h, w = img.shape[:2]
    band = max(2, int(np.ceil(0.04 * min(h, w))), int(np.ceil(2.5 * max(h, w) / 48)))
    if 3 * band >= min(h, w):
        return 0, None
    frame = np.ones((h, w), dtype=bool)
    frame[band:-band, band:-band] = False
    r, bg = _paper_residual(img, frame, terms=3)  # a plane: a quadratic is poorly held by a frame
    e = r @ d
    ef = e[frame]  # noise judged on the frame too: white paper clipped at 255 has almost none elsewhere
    t = 3.0 * max(_noise(e), _robust_sigma(ef), QUANT)
    if float((np.abs(ef) >= t).mean()) <= 0.4:
        return _ink_side(e, t), bg
    # ink along much of the edge (a character cropped to touch it), which pulls that fit too: the paper
    # is the level of the picture's quietest sides, those whose spread is within twice the quietest one's
    img3 = img[..., None] if img.ndim == 2 else img
    e = img3 @ d
    sides = [(slice(0, band), slice(None)), (slice(h - band, h), slice(None)),
             (slice(None), slice(0, band)), (slice(None), slice(w - band, w))]
    spread = np.array([_robust_sigma(e[k]) for k in sides])
    quiet = spread <= 2.0 * max(float(spread.min()), QUANT)
    if quiet.all():
        return 0, None
    paper = np.concatenate([img3[k].reshape(-1, img3.shape[2]) for k, q in zip(sides, quiet) if q])
    bg = np.broadcast_to(np.median(paper, axis=0).astype(np.float32), img3.shape)  # flat paper at that level
    return _ink_side((img3 - bg) @ d), bg


def _signed_contrast(img):
    """Image (H, W[, C]) -> (s, e, noise of s): ink strength s (H, W) and ink-side residual e (H, W).

    Both are > 0 on ink. s is flat-field corrected (for the output), e is the
    plain residual along the ink colour (for the blank decision: its noise is
    the same everywhere, whereas dividing by a dark paper's brightness
    amplifies the noise in shadows).

    Contrast is measured along the ink's colour direction and relative to the
    local paper brightness (flat-field correction): dark ink -> (b - g) / b,
    light ink -> (g - b) / (1 - b), so a stroke in a shadow is as strong as
    one in full light. Polarity: judged against the paper at the picture's
    frame (:func:`_border_side`), else the side with more outlier mass
    (:func:`_ink_side`); the paper is then refitted without the ink.
    """
    r, bg = _paper_residual(img)
    d = _ink_direction(r)
    side, frame_bg = _border_side(img, d)
    if side:
        bg = frame_bg                     # judged against the frame's paper: refit from that surface
    else:
        side = _ink_side(r @ d)
    dark = side < 0
    sign = -1.0 if dark else 1.0
    e, bg = _refit_paper(img, d, sign, bg)
    proj = sign * e
    sigma = _paper_noise(e)
    if sigma > 0.01:  # visible sensor/paper noise: a light blur before thresholding
        proj = _box3(proj)
        sigma = _paper_noise(sign * proj)
    full = float(np.abs(d).sum())  # white paper along the ink direction
    paper = bg @ np.abs(d)
    span = paper if dark else full - paper  # room for the ink below (above) the paper
    scale = np.maximum(span, 0.05 * full)
    s = sign * proj / scale
    return s.astype(np.float32), (sign * proj).astype(np.float32), max(sigma, QUANT) / float(np.median(scale))


def _significant(e, min_area=None):
    """Where the ink-side residual e (H, W) is ink: bool (H, W), all False for a blank picture.

    A stroke is a connected region of the lightly smoothed (3x3 mean) map
    standing above 0.5 * DETECT_SIGMAS paper-noise levels, that peaks above
    DETECT_SIGMAS levels and covers at least MIN_STROKE_FRAC * (longer
    side)^2 pixels (a stroke, not a speck), or ``min_area`` pixels when given. The noise level is the robust
    spread of the smoothed paper itself, so paper texture, JPEG blocks and
    sensor noise raise the bar with them: relative evidence only. A faint
    region whose gradient lies mostly on JPEG's 8x8 block grid is compression
    blocking and is dropped (:func:`_block_grid_share`, JPEG_* constants).
    """
    from scipy import ndimage
    sm = ndimage.uniform_filter(e, 3, mode="nearest")
    level = _paper_noise(sm)
    mask = sm > 0.5 * DETECT_SIGMAS * level
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    lab = labels[mask]
    peak = np.full(n + 1, -np.inf)
    np.maximum.at(peak, lab, sm[mask])
    peak, area = peak[1:], np.bincount(lab, minlength=n + 1)[1:]
    min_area = max(4.0, MIN_STROKE_FRAC * max(e.shape) ** 2) if min_area is None else min_area
    good = (peak > DETECT_SIGMAS * level) & (area >= min_area)
    faint = good & (peak < JPEG_FAINT * DETECT_SIGMAS * level)
    if faint.any():                 # measured on the box around the faint strokes only
        boxes = [box for box, f in zip(ndimage.find_objects(labels), faint) if f]
        r0, c0 = max(0, min(b[0].start for b in boxes) - 1), max(0, min(b[1].start for b in boxes) - 1)
        r1, c1 = max(b[0].stop for b in boxes) + 1, max(b[1].stop for b in boxes) + 1
        share = _block_grid_share(e[r0:r1, c0:c1], labels[r0:r1, c0:c1], n, (r0, c0))
        good &= ~(faint & (share >= JPEG_GRID_SHARE))
    return np.concatenate([[False], good])[labels]


def _block_grid_share(e, labels, n, origin=(0, 0)):
    """Per region 1..n of ``labels`` (n,): the share of the residual e's gradient in and around it (the
    absolute differences of neighbouring pixels of which at least one lies in the region) that lies
    across the borders of JPEG's 8x8 blocks (between columns 8k-1 and 8k, and rows likewise; ``origin``:
    where e and labels start in the picture, when they are a crop of it). About 1/8 for ink, which
    crosses the grid anywhere; near 1 for the steps of compression blocking. A picture scaled to the
    working size has no grid left, and its share stays low."""
    total, grid = np.zeros(n + 1), np.zeros(n + 1)
    for axis in (0, 1):
        d = np.abs(np.diff(e, axis=axis))
        a, b = (labels[1:], labels[:-1]) if axis == 0 else (labels[:, 1:], labels[:, :-1])
        lab = np.maximum(a, b)
        inside = lab > 0
        total += np.bincount(lab[inside], d[inside], n + 1)
        border = (np.arange(1, e.shape[axis]) + origin[axis]) % JPEG_BLOCK == 0
        on = inside & (border[:, None] if axis == 0 else border[None, :])
        grid += np.bincount(lab[on], d[on], n + 1)
    return (grid / np.maximum(total, 1e-12))[1:]


def _ink(img, min_area=None):
    """Image (H, W[, C]) -> ink strength (H, W) float32 in [0, 1] (1 = full ink), or None if blank.

    ``min_area``: the smallest stroke in pixels (default: relative to the image, see :func:`_significant`).

    The ink is rescaled so that the noise floor maps to 0 and the 90th
    percentile of the Otsu-selected ink pixels maps to 1 (grey edges kept).
    """
    from scipy import ndimage
    ink, e, noise = _signed_contrast(img)
    strokes = _significant(e, min_area)
    if not strokes.any():
        return None
    # ink outside the significant strokes (paper shading at the edges, noise) is dropped
    ink = np.where(ndimage.binary_dilation(strokes, iterations=1), np.maximum(ink, 0.0), 0.0)
    thr = _otsu(ink.ravel())
    strong = ink[ink > thr]
    hi = float(np.percentile(strong, 90)) if strong.size else float(ink.max())
    lo = max(min(5.0 * noise, 0.5 * hi), 0.02 * hi)
    if hi - lo <= 1e-6 * hi or hi <= 0:
        return None
    return np.clip((ink - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- geometry


def _span(profile, speck=0.01):
    """First and last index of the mass in a 1-D profile, ignoring small end runs.

    Runs of non-zero entries at either end that hold less than ``speck`` of
    the total mass and are separated from the rest by a gap are dropped.
    """
    nz = profile > 0
    idx = np.flatnonzero(nz)
    if idx.size == 0:
        return None
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    mass = np.array([profile[s : e + 1].sum() for s, e in zip(starts, ends)])
    total = mass.sum()
    i, j = 0, len(mass) - 1
    while i < j and (mass[i] < speck * total or mass[j] < speck * total):
        if mass[i] <= mass[j]:
            i += 1
        else:
            j -= 1
    return int(starts[i]), int(ends[j])


def _crop(ink):
    """Crop (H, W) to the bounding box of its ink; returns (h, w) or None if empty."""
    rows = _span(ink.sum(1))
    if rows is None:
        return None
    ink = ink[rows[0] : rows[1] + 1]
    cols = _span(ink.sum(0))
    ink = ink[:, cols[0] : cols[1] + 1]
    rows = _span(ink.sum(1))
    return ink[rows[0] : rows[1] + 1]


def _fit_size(h, w, box):
    s = box / max(h, w)
    return max(1, round(w * s)), max(1, round(h * s))


def stroke_width(mask):
    """Mean stroke width of a binary mask (H, W): 2 * area / perimeter (4-neighbour edges)."""
    m = np.pad(mask, 1)
    area = int(m.sum())
    if area == 0:
        return 0.0
    perim = int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())
    return 2.0 * area / perim


def _morph(a, radius, grow):
    """Grey dilation (grow=True) or erosion of (H, W) by an octagon of the given radius."""
    op = np.maximum if grow else np.minimum
    for i in range(radius):
        p = np.pad(a, 1)
        out = op(op(p[1:-1, 1:-1], p[:-2, 1:-1]), op(p[2:, 1:-1], op(p[1:-1, :-2], p[1:-1, 2:])))
        if i % 2:  # alternate cross and square neighbourhoods -> round-ish pen
            out = op(out, op(op(p[:-2, :-2], p[:-2, 2:]), op(p[2:, :-2], p[2:, 2:])))
        a = out
    return a


def _normalise_strokes(crop):
    """Cropped ink (h, w) -> ink with MNIST-like stroke width, or the input unchanged.

    The width is measured on the crop itself (so strokes thinner than a
    pixel at CANON scale are still measured right), expressed in CANON
    pixels, and corrected at CANON scale. Returns (image, changed); the
    image is at CANON scale (longer side 80 plus padding) when changed.
    """
    h, w = crop.shape
    width = stroke_width(crop > 0.5) * CANON / max(h, w)
    if WIDTH_LOW <= width <= WIDTH_HIGH or width == 0:
        return crop, False
    if width < WIDTH_LOW:
        radius = int(round((WIDTH_TARGET - width) / 2))
    else:
        radius = int(round(min(width - WIDTH_TARGET, width - 4) / 2))
    if radius == 0:
        return crop, False
    size = _fit_size(h, w, CANON)
    canon = _resize(crop, size, Image.Resampling.BILINEAR if size[0] >= w else Image.Resampling.BOX)
    canon = canon / max(float(canon.max()), 1e-6)  # sub-pixel strokes fade when shrunk: restore full ink
    if width < WIDTH_LOW:
        canon = _morph(np.pad(canon, radius), radius, grow=True)
    else:
        canon = _morph(canon, radius, grow=False)
    return canon, True


def _centre(box_img):
    """Paste (h, w) (h, w <= 20) into 28x28 with its centre of mass nearest (14, 14)."""
    h, w = box_img.shape
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    total = float(box_img.sum())
    cy = float(box_img.sum(1) @ np.arange(h)) / total
    cx = float(box_img.sum(0) @ np.arange(w)) / total
    top = min(max(int(round(SIZE / 2 - cy)), 0), SIZE - h)
    left = min(max(int(round(SIZE / 2 - cx)), 0), SIZE - w)
    out[top : top + h, left : left + w] = box_img
    return out


# --------------------------------------------------------------------------- public API


def preprocess_image(image):
    """Convert one picture of a handwritten character into an MNIST-style image.

    Inputs:
    - image: a file path (str / PathLike), a PIL.Image of any mode (L, RGB,
      RGBA, P, LA, 1, I, I;16, F, CMYK, ...), or a numpy array of shape
      (H, W) or (H, W, C) with C in {1, 3, 4} and dtype uint8, uint16, bool
      or float (values in [0, 1] or [0, 255]). Any size; ink may be dark on
      light or light on dark.

    Returns:
    - uint8 array of shape (28, 28): white ink (up to 255) on black (0),
      the character fitted into a 20x20 box and centred by mass.
      A picture with no detectable ink gives an all-zero array (check
      ``out.any()``); this is not an error, so one blank image does not stop
      a batch.

    Raises MissingInputError (no such file), ImageReadError (not an image,
    damaged, over MAX_PIXELS), UsageError (bad array shape/dtype/NaN).
    """
    g = _to_gray(image)
    ink = _ink(g)
    if ink is None:
        return np.zeros((SIZE, SIZE), dtype=np.uint8)
    crop = _crop(ink)
    if crop is None:
        return np.zeros((SIZE, SIZE), dtype=np.uint8)
    norm, changed = _normalise_strokes(crop)
    if changed:
        norm = _crop(norm)
        if norm is None:
            return np.zeros((SIZE, SIZE), dtype=np.uint8)
    h, w = norm.shape
    size = _fit_size(h, w, BOX)
    small = norm if size == (w, h) else _resize(norm, size, Image.Resampling.BILINEAR)
    small = np.clip(small, 0.0, None)
    top = float(small.max())
    if top <= 0:
        return np.zeros((SIZE, SIZE), dtype=np.uint8)
    small = np.minimum(small / max(top, 1e-6) if top < 1 else small, 1.0)
    return np.round(_centre(small) * 255.0).astype(np.uint8)


def ink_map(image, work_size=WORK_SIZE, min_area=None):
    """The ink of a picture: (ink, scale), the same analysis :func:`preprocess_image` starts with.

    ink: float32 (h, w) in [0, 1] (1 = full ink, 0 = paper), or None when the picture is blank;
    the picture is shrunk so its longer side is <= ``work_size``, and ``scale`` is h / (the input's height).
    min_area: the smallest stroke in working pixels (default: relative to the picture's size).
    """
    if isinstance(image, (str, os.PathLike)):
        original_h = stored_height(image)
        image = load_image(image, work_size)   # decoded once (perhaps at a reduced scale), EXIF applied
    elif isinstance(image, Image.Image):
        original_h = _shown_height(image)      # _to_gray applies the rotation itself
    else:
        original_h = np.shape(image)[0]
    g = _to_gray(image, work_size)
    return _ink(g, min_area), g.shape[0] / (original_h or g.shape[0])


def _shown_height(img):
    """Height of a PIL image as shown: its width when its EXIF orientation turns it a quarter (5-8)."""
    w, h = img.size
    return w if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else h


def stored_height(path):
    """Height of the picture in a file as shown (EXIF rotation applied), from its header; None if unreadable."""
    try:
        with Image.open(path) as img:
            return _shown_height(img)
    except Exception:  # noqa: BLE001 - load_image reports what is wrong with the file
        return None


def preprocess_images(images):
    """Apply :func:`preprocess_image` to a sequence; returns uint8 (N, 28, 28)."""
    out = np.zeros((len(images), SIZE, SIZE), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = preprocess_image(image)
    return out
