"""Seeded generator of photo-like pictures of single handwritten characters.

Re-renders a character given as white ink on black (an MNIST digit (28, 28)
or an inverted symbols image (45, 45)) as a phone photo or scan: coloured
ink on coloured paper at a chosen contrast, paper texture, a shadow
gradient, optional blur, a small or large crop, JPEG compression, and
optionally a tight crop where the character touches the border.

Used by tests/test_photo_grid.py (per-cell accuracy floors, nothing with
visible ink comes back blank, no false ink on blank paper) and by
``python tests/photo_grid.py --report`` (the full table).
"""

import io

import numpy as np
from PIL import Image, ImageFilter

# ink name -> RGB of the full-strength ink; paper name -> RGB of the paper
INKS = {
    "black": (25, 25, 30),
    "blue": (30, 55, 175),
    "red": (190, 30, 40),
    "marker": (15, 15, 15),  # black, drawn with a thicker pen
}
PAPERS = {
    "white": (245, 244, 238),
    "lightgrey": (200, 200, 198),
    "beige": (236, 222, 192),
    "pink": (246, 212, 218),
    "midgrey": (140, 140, 138),
}
# (ink, paper) pairs of the grid: the realistic combinations, including the reported hard ones
INK_PAPER = [("black", "white"), ("blue", "lightgrey"), ("red", "pink"), ("blue", "beige"), ("marker", "midgrey")]
CONTRASTS = (1.0, 0.5, 0.25, 0.15)  # fraction of the full ink-paper difference actually seen
SIZES = ((60, 80), (160, 160), (500, 420))  # (width, height) of the crop


def _thicken(mask, px):
    """Grey dilation of (H, W) float mask by ~px pixels (PIL MaxFilter, odd size)."""
    if px < 1:
        return mask
    img = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(2 * int(px) + 1))
    return np.asarray(img, dtype=np.float64) / 255


def render(glyph, ink="black", paper="white", contrast=1.0, size=(160, 160), blur=0.0, quality=90,
           touch_border=False, offset=(0.0, 0.0), seed=0):
    """Render one character as a photo: returns JPEG bytes in a BytesIO.

    Parameters
    ----------
    glyph : uint8 array (h, w)
        White ink (255) on black (0), e.g. an MNIST digit.
    ink, paper : str
        Keys of INKS and PAPERS.
    contrast : float in (0, 1]
        The ink colour seen is paper + contrast * (ink - paper).
    size : (int, int)
        (width, height) of the picture.
    blur : float
        Gaussian blur radius as a fraction of the character height (0: sharp).
    quality : int
        JPEG quality.
    touch_border : bool
        Crop so that the character touches the top and left borders.
    offset : (float, float)
        Shift of the character from the centre, as a fraction of the picture (uncentred drawings).
    seed : int
        Seed for texture, noise and the shadow direction.

    Returns
    -------
    io.BytesIO
        The JPEG file, ready for PIL or nncore.preprocess_image.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    g = np.asarray(glyph, dtype=np.float64) / 255
    rows, cols = np.nonzero(g > 0.1)
    g = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    frac = 0.98 if touch_border else rng.uniform(0.55, 0.75)
    scale = frac * min(h / g.shape[0], w / g.shape[1])
    gh, gw = max(2, round(g.shape[0] * scale)), max(2, round(g.shape[1] * scale))
    big = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((gw, gh), Image.BICUBIC), np.float64) / 255
    if ink == "marker":
        big = _thicken(big, max(1, gh // 14))
    mask = np.zeros((h, w))
    if touch_border:
        top, left = 0, 0
    else:
        top = int(np.clip((h - gh) / 2 + offset[1] * h, 0, h - gh))
        left = int(np.clip((w - gw) / 2 + offset[0] * w, 0, w - gw))
    mask[top:top + gh, left:left + gw] = big[: h - top, : w - left]
    if blur > 0:
        img = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur * gh))
        mask = np.asarray(img, np.float64) / 255
    p = np.array(PAPERS[paper], np.float64) / 255
    k = np.array(INKS[ink], np.float64) / 255
    seen = p + contrast * (k - p)
    shade = shadow(h, w, rng.uniform(0, 2 * np.pi), 0.12)  # a soft shadow across the sheet
    texture = np.asarray(Image.fromarray(rng.normal(128, 40, (h // 2 + 1, w // 2 + 1)).clip(0, 255).astype(np.uint8))
                         .resize((w, h), Image.BILINEAR), np.float64)[:h, :w] / 255 - 0.5
    m = mask[..., None]
    rgb = (p * (1 - m) + seen * m) * shade[..., None] + 0.025 * texture[..., None]
    rgb = rgb + rng.normal(0, 0.012, rgb.shape)
    out = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return buf


def shadow(h, w, angle, depth):
    """Light falling off linearly across an (h, w) sheet in direction ``angle`` (radians): a factor
    (h, w) from 1 on the bright side to 1 - ``depth`` on the dark side."""
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    return 1.0 - depth * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-9)


def render_blank(paper="white", size=(160, 160), quality=80, seed=0, shadow=0.25):
    """A photo of empty paper (texture, shadow gradient, noise, JPEG): BytesIO."""
    blank = np.zeros((28, 28), np.uint8)
    blank[14, 14] = 255  # render needs a bounding box; at contrast 0 the ink is the paper colour
    buf = render(blank, paper=paper, contrast=0.0, size=size, quality=quality, seed=seed)
    if shadow:
        a = np.asarray(Image.open(buf), np.float64)
        h, w = a.shape[:2]
        a = a * (1 - shadow * np.linspace(0, 1, w))[None, :, None]
        buf = io.BytesIO()
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
    return buf


def cells():
    """The grid's cells: list of (ink, paper, contrast, size)."""
    return [(i, p, c, s) for (i, p) in INK_PAPER for c in CONTRASTS for s in SIZES]


def realistic(cell):
    """Whether a cell counts for the >= 98% target: contrast >= 25% of the ink-paper difference.

    At 15% the blue-on-lightgrey stroke differs from the paper by ~10 grey levels, at the
    paper's texture level; those cells must still never come back blank but are not
    expected to classify like clean photos.
    """
    return cell[2] >= 0.25


def cell_photos(glyphs, cell, seed=0):
    """Photos of every glyph for one cell, varying blur, JPEG quality, border touching, offset.

    Returns a list of BytesIO, one per glyph, deterministic for (cell, seed).
    """
    ink, paper, contrast, size = cell
    out = []
    for n, gl in enumerate(glyphs):
        rng = np.random.default_rng([seed, n, INK_PAPER.index((ink, paper)), int(contrast * 100), size[0]])
        out.append(render(gl, ink, paper, contrast, size,
                          blur=float(rng.choice([0.0, 0.0, 0.02, 0.04])),
                          quality=int(rng.choice([95, 75, 50])),
                          touch_border=bool(rng.random() < 0.15),
                          offset=tuple(rng.uniform(-0.12, 0.12, 2)),
                          seed=int(rng.integers(1 << 30))))
    return out
