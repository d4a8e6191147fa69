"""Cut one line of handwriting into symbols: ink, ruled lines away, connected parts, parts grouped.

Every size here is relative to the writing itself: the stroke width ``w``
(2 * area / perimeter of the ink) and the picture's own extent; none is in
pixels. Steps, on the ink map of :func:`nncore.data.preprocess.ink_map`
(paper and shading removed, any ink colour, either polarity):

1. ink mask: ink stronger than half its full strength;
2. ruled or squared paper: thin straight runs across most of the picture
   (thin pixels covering a quarter of a row, even in pieces) are
   removed; a fraction bar or a minus sign is far shorter;
3. parts: 8-connected components (``scipy.ndimage.label``); specks smaller
   than a dot of the pen (0.3 w^2) and slivers thinner than the pen
   everywhere (what a ruled line leaves beside the writing) are dropped;
4. symbols: parts stacked one above the other over a shared column range
   (the bars of ``=``, the dots and bar of ``÷``, a stroke broken by a ruled
   line; two dots up to a writing's height apart) are one symbol;
5. one line: symbols whose vertical ranges split into two bands with two or
   more symbols each are two lines of writing (an error).
"""

from dataclasses import dataclass

import numpy as np

from ..data.preprocess import ink_map, stroke_width
from ..errors import LayoutError, NoInkError

# scipy.ndimage is imported in the functions that use it: importing it takes 0.4 s (2-core machine),
# and every script imports nncore, training on MNIST included, which never calls it.

#: longer side of the working picture: a whole line needs more pixels than one symbol (512)
LINE_WORK_SIZE = 1600
#: ink stronger than this share of full strength is in the mask
INK_LEVEL = 0.4
#: a ruled line: thin pixels covering at least this share of a row (in pieces: a pale line breaks up)
RULE_SPAN = 0.25


@dataclass
class Symbol:
    """One segmented symbol: its ``box`` (x0, y0, x1, y1) in working pixels (x1, y1 exclusive) and ``parts``
    (the component labels, in ``Segmentation.labels``, that make it up)."""

    box: tuple
    parts: list


@dataclass
class Segmentation:
    """ink (h, w) float32 in [0, 1]; labels (h, w) int32 of the parts; symbols left to right;
    stroke (the stroke width in working pixels); scale (working pixels per original pixel);
    tall (the writing's height: the median height of parts taller than 3 strokes, in working pixels)."""

    ink: np.ndarray
    labels: np.ndarray
    symbols: list
    stroke: float
    scale: float
    tall: float

    def crop(self, symbol):
        """The ink of one symbol alone (other symbols blanked), padded: float32 (h', w') in [0, 1]."""
        from scipy import ndimage
        x0, y0, x1, y1 = symbol.box
        pad = int(round(2 * self.stroke)) + 2
        ys, xs = slice(max(y0 - pad, 0), y1 + pad), slice(max(x0 - pad, 0), x1 + pad)
        own = np.isin(self.labels[ys, xs], symbol.parts)
        near = ndimage.binary_dilation(own, iterations=max(1, int(round(self.stroke / 2))))
        return np.where(near, self.ink[ys, xs], 0.0).astype(np.float32)

    def original_box(self, symbol):
        """The symbol's box [x0, y0, x1, y1] in the original picture's pixels (ints)."""
        return [int(round(v / self.scale)) for v in symbol.box]


def _remove_rules(mask, stroke):
    """The mask without ruled or grid lines: thin runs in rows (columns) they cross for most of the picture.

    A pixel is thin across when the ink's run through it, across the line's direction, is shorter than
    0.8 stroke widths (printed lines are finer than the pen). A row whose thin pixels cover RULE_SPAN of
    the width (even in broken pieces) is a ruled line; its thin pixels, one row either side included,
    are removed. Strokes, bars and minus signs are a full stroke thick and stay. Columns likewise, for
    squared paper (covering 60% of the height).
    """
    from scipy import ndimage
    out = mask.copy()
    thick = max(2, int(round(0.8 * stroke)))
    for axis, span in ((1, RULE_SPAN), (0, 0.6)):
        across = (thick, 1) if axis == 1 else (1, thick)
        thin = mask & ~ndimage.binary_opening(mask, structure=np.ones(across, dtype=bool))
        cover = thin.sum(axis=axis)
        rules = cover >= span * mask.shape[axis]
        if not rules.any():
            continue
        rules = ndimage.binary_dilation(rules, iterations=1)
        out &= ~(thin & (rules[:, None] if axis == 1 else rules[None, :]))
    return out


def _stroke(mask, depth):
    """The pen's stroke width in pixels: twice the median ridge height of ``depth``, the mask's distance
    transform.

    Ridges of lines finer than 3 pixels (printed rules) are left out, so long ruled lines do not drag the
    estimate down; without thicker ridges, 2 * area / perimeter of the whole mask.
    """
    from scipy import ndimage
    ridge = (depth >= 1.5) & (depth >= ndimage.maximum_filter(depth, size=3))
    if ridge.sum() >= 10:
        return float(2 * np.median(depth[ridge]))
    return max(stroke_width(mask), 1.0)


def _boxes(labels, n):
    from scipy import ndimage
    found = ndimage.find_objects(labels, max_label=n)
    return [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in found]


def _stacked(a, b, tall):
    """Whether boxes a and b share a column range and sit one above the other, close (=, ÷, a broken stroke).

    Close: the band between them is no taller than 1.2 times the wider one's width (the bars of '=' are
    closer than they are long) or 0.6 times the writing's height ``tall`` (the dots of ÷), or when both
    are dots (no side over 0.35 ``tall``), ``tall`` itself (a ÷ whose bar is missing or too faint to be
    found); symbols of two lines of writing are farther apart.
    """
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    overlap_x = min(ax1, bx1) - max(ax0, bx0)
    narrow = min(ax1 - ax0, bx1 - bx0)
    overlap_y = min(ay1, by1) - max(ay0, by0)
    low = min(ay1 - ay0, by1 - by0)
    gap = -overlap_y                                      # the empty band between them (< 0 if they overlap)
    wide = max(ax1 - ax0, bx1 - bx0)
    dots = max(ax1 - ax0, bx1 - bx0, ay1 - ay0, by1 - by0) <= 0.35 * tall
    reach = tall if dots else max(1.2 * wide, 0.6 * tall)
    return overlap_x >= 0.5 * narrow and overlap_y <= 0.5 * low and gap <= reach


def _group(boxes, tall):
    """Union of stacked parts: a list of lists of part indices, left to right."""
    parent = list(range(len(boxes)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for k, i in enumerate(order):
        for j in order[k + 1:]:
            if boxes[j][0] >= boxes[i][2]:
                break
            if _stacked(boxes[i], boxes[j], tall):
                parent[root(j)] = root(i)
    groups = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: min(boxes[i][0] for i in g))


def union_box(boxes):
    """The smallest box (x0, y0, x1, y1) holding every box of ``boxes``."""
    x0, y0, x1, y1 = zip(*boxes)
    return (min(x0), min(y0), max(x1), max(y1))


def _check_one_line(symbols):
    """LayoutError when the symbols' vertical ranges fall into two bands of two or more symbols each."""
    if len(symbols) < 4:
        return
    spans = sorted((s.box[1], s.box[3]) for s in symbols)
    reach = spans[0][1]
    for k in range(1, len(spans)):
        if spans[k][0] >= reach and 2 <= k <= len(spans) - 2:
            raise LayoutError(f"the picture holds more than one line of writing ({k} symbols above, "
                              f"{len(spans) - k} below); photograph or draw one line at a time")
        reach = max(reach, spans[k][1])


def segment(image, work_size=LINE_WORK_SIZE):
    """Segment a picture of one line of handwriting (path, PIL image or array) into symbols.

    Returns a :class:`Segmentation`. Raises NoInkError for a picture without writing,
    LayoutError for more than one line, and the image errors of :func:`nncore.preprocess_image`.
    """
    from scipy import ndimage
    ink, scale = ink_map(image, work_size=work_size, min_area=12)
    if ink is None or not (ink > INK_LEVEL).any():
        raise NoInkError("no writing found in the picture (it looks blank); check the photo's focus and light")
    mask = ink > INK_LEVEL
    depth = ndimage.distance_transform_edt(mask)        # each ink pixel's distance to the paper
    stroke = _stroke(mask, depth)
    ruled = mask
    mask = _remove_rules(ruled, stroke)
    if not np.array_equal(mask, ruled):                  # printed lines went: the depths changed with them
        depth = ndimage.distance_transform_edt(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n:
        area = np.bincount(labels.ravel(), minlength=n + 1)
        # specks, and slivers thinner than the pen everywhere (what a ruled line leaves where it met ink)
        deep = np.bincount(labels[depth >= 0.3 * stroke], minlength=n + 1)
        specks = np.flatnonzero((area < 0.3 * stroke ** 2) | (deep == 0))
        specks = specks[specks > 0]
        if specks.size:
            labels[np.isin(labels, specks)] = 0
            labels, n = ndimage.label(labels > 0, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        raise NoInkError("no writing found in the picture (only specks or printed lines); "
                         "check the photo's focus and light")
    boxes = _boxes(labels, n)
    heights = [b[3] - b[1] for b in boxes if b[3] - b[1] >= 3 * stroke]   # digits and brackets, not dots
    tall = float(np.median(heights)) if heights else 3 * stroke
    symbols = [Symbol(union_box([boxes[i] for i in g]), [i + 1 for i in g]) for g in _group(boxes, tall)]
    _check_one_line(symbols)
    return Segmentation(ink, labels.astype(np.int32), symbols, float(stroke), float(scale), tall)
