"""Handwriting by strokes, for the draw page's tests: what a person draws on the canvas.

Each character is a few polylines in a unit box (x to the right, y down, 0-1; a polyline of
one point is a dot; ``*`` is the multiplication cross ×, ``:`` the division sign ÷). :func:`layout`
places a text on a canvas as pixel strokes (the browser test drags the pointer along them);
:func:`render` draws the same strokes with Pillow as the page would send them (black lines,
16 px wide, round joins, on white), for the API tests and the latency report.
"""

import io

from PIL import Image, ImageDraw

#: polylines per character, in a unit box
GLYPHS = {
    "0": [[(0.5, 0.05), (0.22, 0.2), (0.15, 0.5), (0.22, 0.8), (0.5, 0.95), (0.78, 0.8), (0.85, 0.5),
           (0.78, 0.2), (0.5, 0.05)]],
    "1": [[(0.35, 0.2), (0.55, 0.05), (0.55, 0.95)]],
    "2": [[(0.2, 0.25), (0.35, 0.08), (0.6, 0.05), (0.78, 0.2), (0.75, 0.42), (0.2, 0.95), (0.85, 0.95)]],
    "3": [[(0.2, 0.12), (0.5, 0.04), (0.75, 0.18), (0.7, 0.4), (0.45, 0.5), (0.75, 0.6), (0.8, 0.82),
           (0.5, 0.96), (0.2, 0.88)]],
    "4": [[(0.65, 0.95), (0.65, 0.05), (0.15, 0.65), (0.85, 0.65)]],
    "5": [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45), (0.55, 0.4), (0.8, 0.55), (0.78, 0.82), (0.5, 0.96),
           (0.2, 0.88)]],
    "6": [[(0.75, 0.08), (0.45, 0.1), (0.25, 0.4), (0.22, 0.75), (0.45, 0.95), (0.72, 0.85), (0.75, 0.62),
           (0.5, 0.5), (0.25, 0.62)]],
    "7": [[(0.15, 0.08), (0.85, 0.08), (0.42, 0.95)]],
    "8": [[(0.5, 0.5), (0.25, 0.3), (0.5, 0.05), (0.75, 0.3), (0.5, 0.5), (0.2, 0.72), (0.5, 0.95),
           (0.8, 0.72), (0.5, 0.5)]],
    "9": [[(0.75, 0.4), (0.5, 0.5), (0.25, 0.35), (0.35, 0.08), (0.65, 0.05), (0.75, 0.4), (0.7, 0.95)]],
    "+": [[(0.15, 0.5), (0.85, 0.5)], [(0.5, 0.15), (0.5, 0.85)]],
    "-": [[(0.15, 0.5), (0.85, 0.5)]],
    "=": [[(0.15, 0.36), (0.85, 0.36)], [(0.15, 0.64), (0.85, 0.64)]],
    "(": [[(0.65, 0.02), (0.38, 0.3), (0.35, 0.7), (0.65, 0.98)]],
    ")": [[(0.35, 0.02), (0.62, 0.3), (0.65, 0.7), (0.35, 0.98)]],
    "/": [[(0.8, 0.02), (0.2, 0.98)]],
    "x": [[(0.15, 0.1), (0.85, 0.9)], [(0.85, 0.1), (0.15, 0.9)]],
    "y": [[(0.15, 0.05), (0.5, 0.5)], [(0.85, 0.05), (0.3, 0.98)]],
    "*": [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],  # the multiplication cross, ×
    ":": [[(0.15, 0.5), (0.85, 0.5)], [(0.5, 0.12)], [(0.5, 0.88)]],  # the division sign, ÷
}
#: how much of the line height a character takes, and where it sits (top, height) in it
PLACE = {"+": (0.25, 0.5), "-": (0.25, 0.5), "=": (0.25, 0.5), "*": (0.25, 0.5), ":": (0.2, 0.6),
         "x": (0.35, 0.65), "y": (0.35, 0.65)}
LINE_WIDTH = 16


def layout(text, size=(320, 320), height=None):
    """The strokes of ``text`` written on one line of a canvas of ``size`` (w, h) pixels.

    Characters are ``height`` pixels tall (default 70% of the canvas height, less when the
    text would not fit), 0.75 of that wide with a gap of a quarter, centred on the canvas.
    Returns a list of strokes, each a list of (x, y) pixel coordinates (floats).
    """
    w, h = size
    height = height or min(0.7 * h, 0.9 * w / max(1, len(text)) / 1.05)
    width, gap = 0.75 * height, 0.3 * height
    x = (w - len(text) * width - (len(text) - 1) * gap) / 2
    y0 = (h - height) / 2
    strokes = []
    for ch in text:
        top, frac = PLACE.get(ch, (0.0, 1.0))
        for line in GLYPHS[ch]:
            strokes.append([(x + px * width, y0 + (top + py * frac) * height) for px, py in line])
        x += width + gap
    return strokes


def render(text, size=(320, 320), height=None):
    """``text`` drawn as the page draws it: a PIL image, black 16-px strokes on white."""
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    for stroke in layout(text, size, height):
        d.line(stroke, fill=0, width=LINE_WIDTH, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            r = LINE_WIDTH / 2
            d.ellipse([x - r, y - r, x + r, y + r], fill=0)
    return img


def png_bytes(image):
    """A PIL image or uint8 array as PNG file bytes (in memory)."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
