"""Pictures in and out of the draw page: the canvas PNG in, feature-map grids out.

Everything happens in memory (the server never writes to disk). Decoding refuses
a picture by its header before decoding its pixels, so a small PNG that declares
a huge canvas costs nothing.
"""

import base64
import functools
import io
import math
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ApiError

#: the largest canvas accepted, in pixels (a 4096x4096 drawing); preprocess_image works at 512 px anyway
MAX_PIXELS = 4096 * 4096
#: feature maps per grid row
GRID_COLUMNS = 16


def decode_png(body):
    """The request body (bytes of a PNG or JPEG) -> a decoded PIL image.

    Raises ApiError 400 (empty body), 413 (over MAX_PIXELS, read from the header
    before decoding) or 415 (not a readable PNG/JPEG image).
    """
    if not body:
        raise ApiError(400, "the request body is empty; send the canvas as a PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(body), formats=["PNG", "JPEG"])
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ApiError(413, f"the image is {w}x{h} pixels, over the limit of {MAX_PIXELS:,}; "
                                    f"send a smaller canvas")
            if w < 1 or h < 1:
                raise ApiError(415, f"the image has no pixels ({w}x{h})")
            img.load()
    except ApiError:
        raise
    except (UnidentifiedImageError, SyntaxError):
        raise ApiError(415, "the request body is not a PNG image; send canvas.toBlob(..., 'image/png')") from None
    except (OSError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ApiError(415, f"the PNG image cannot be decoded ({reason}); send a complete PNG") from None
    return img


def to_data_url(rgb):
    """uint8 (H, W, 3) or (H, W) array -> a ``data:image/png;base64,...`` URL (PNG compressed in memory)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@functools.cache
def lut(name):
    """matplotlib's colour map ``name`` as a (256, 3) uint8 lookup table (built once per name)."""
    from matplotlib import colormaps
    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def map_grid(maps, columns=GRID_COLUMNS):
    """One layer's feature maps as one picture, on one colour scale for the whole layer.

    Parameters
    ----------
    maps : (C, H, W) float array
        The layer's output for one image (C channels of H x W), or (D,) for a dense
        layer, shown as one map of ceil(sqrt(D)) columns.
    columns : int
        Maps per grid row.

    Returns
    -------
    dict
        ``grid`` (a PNG data URL: the maps in rows of ``columns``, channel 0 top left,
        separated by 1-pixel gaps), ``rows``, ``columns``, ``tile`` [H, W], ``colours``
        (``"RdBu_r"`` when the layer has negative values, blue below 0 and red above on a
        scale symmetric around 0; ``"magma"`` from 0 to the maximum otherwise), ``min``, ``max``.
    """
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim == 1:
        side = math.ceil(math.sqrt(a.size))
        a = np.pad(a, (0, side * side - a.size), constant_values=np.nan).reshape(1, side, -1)
        columns = 1
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo < 0:
        colours, scale = "RdBu_r", max(abs(lo), abs(hi)) or 1.0
        level = (a / scale + 1.0) / 2.0
    else:
        colours, scale = "magma", hi or 1.0
        level = a / scale
    index = np.nan_to_num(np.clip(level, 0.0, 1.0) * 255.0, nan=0.0).round().astype(np.uint8)
    coloured = lut(colours)[index]  # (C, H, W, 3)
    coloured[np.isnan(a)] = 255
    c, h, w = a.shape
    columns = max(1, min(columns, c))
    rows = math.ceil(c / columns)
    sheet = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1, 3), 255, dtype=np.uint8)
    for k in range(c):
        r, q = divmod(k, columns)
        sheet[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = coloured[k]
    return {"grid": to_data_url(sheet), "rows": rows, "columns": columns, "tile": [h, w],
            "colours": colours, "min": lo, "max": hi}
