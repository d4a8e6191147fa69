"""Figures of what a network does: filter grids, feature maps, saliency and occlusion overlays.

Each function returns a matplotlib figure (a notebook shows it; a script saves it with
:func:`nncore.plots.save_figure`). matplotlib is imported on first use only, on the Agg
backend unless pyplot is already in use (as in a notebook).
"""

import math
import sys

import numpy as np

from .. import backend, plots
from .activations import activations
from .occlusion import occlusion, occlusion_heatmap
from .saliency import saliency

#: size of :func:`panel_figure` in inches for a model with ``n`` layers of feature maps, at 100 dpi
PANEL_WIDTH, PANEL_TOP, PANEL_ROW = 12.0, 3.4, 1.25
#: feature maps shown per layer in the panel (the most active channels)
MAPS_PER_LAYER = 10


def _plt():
    """pyplot as it is in use (a notebook's inline backend shows the figures), else on the Agg backend."""
    return sys.modules.get("matplotlib.pyplot") or plots._plt()


def _symmetric(a):
    """vmin, vmax centred on 0 for a diverging colour map."""
    v = float(np.abs(a).max()) or 1.0
    return -v, v


def filter_figure(w, title="filters"):
    """A grid of convolution filters, blue negative, red positive, white 0.

    w : (F, C, KH, KW). One input channel (a first layer): the F filters in rows of 8.
    Several: one row per filter (the first 16), one column per input channel (the first 8).
    """
    plt = _plt()
    w = backend.to_numpy(w)
    f, c = w.shape[:2]
    if c == 1:
        tiles = [(w[i, 0], f"{i}") for i in range(f)]
        ncols = min(8, f)
        nrows = math.ceil(f / ncols)
    else:
        nrows, ncols = min(f, 16), min(c, 8)
        tiles = [(w[i, j], f"f{i} c{j}") for i in range(nrows) for j in range(ncols)]
    vmin, vmax = _symmetric(np.stack([t for t, _ in tiles]))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols + 1.2, 1.1 * nrows + 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (tile, label) in zip(axes.ravel(), tiles):
        im = ax.imshow(tile, cmap="RdBu_r", vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="weight")
    fig.suptitle(f"{title}: {f} filters of {c} channel(s), {w.shape[2]}x{w.shape[3]}")
    return fig


def feature_maps(model, image):
    """The layers whose output is an image stack, for the panel: list of (name, (C, H, W) array)."""
    return [(name, a) for name, a in activations(model, image)[1:] if a.ndim == 3]


def _saliency_axes(ax, image, grad, title):
    """The signed saliency (summed over channels) in red (raises the score) and blue (lowers it),
    with the outline of the ink on top."""
    sal = grad.sum(axis=0)
    vmin, vmax = _symmetric(sal)
    im = ax.imshow(sal, cmap="RdBu_r", vmin=vmin, vmax=vmax)
    gray = image if image.ndim == 2 else image.mean(axis=0)
    if gray.max() > gray.min():
        ax.contour(gray, levels=[(gray.min() + gray.max()) / 2], colors="k", linewidths=0.8)
    ax.set_title(f"{title}\nred raises the score, blue lowers it", fontsize=10)
    ax.axis("off")
    return im


def _overlay(ax, base, heat, cmap, vmin, vmax, title):
    ax.imshow(base, cmap="gray")
    im = ax.imshow(heat, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.6)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return im


def panel_figure(model, image, title=None, patch=6, stride=2):
    """Everything explain.py shows about one image, in one figure.

    Top row: the input as the network sees it, the top-3 probabilities, the saliency
    (d score / d pixel, summed over channels, with the ink's outline) and the occlusion map (the drop in the
    predicted class's probability when a ``patch`` square around the pixel is covered).
    Below, one row per layer whose output is an image stack: its ``MAPS_PER_LAYER``
    most active channels (largest mean), on the layer's own colour scale.
    image: (H, W) or (C, H, W), uint8 0-255 or float 0-1, already the model's input size.
    """
    plt = _plt()
    img = backend.to_numpy(image)
    show = img if img.ndim == 2 else img.transpose(1, 2, 0).squeeze()
    probs = model.predict_proba(img[None])[0]
    grad, k = saliency(model, img)
    drops, _ = occlusion(model, img, k, patch=patch, stride=stride)
    heat = occlusion_heatmap(drops, img.shape[-2:], patch, stride)
    maps = feature_maps(model, img)
    fig = plt.figure(figsize=(PANEL_WIDTH, PANEL_TOP + PANEL_ROW * len(maps)))
    grid = fig.add_gridspec(2, 1, height_ratios=[PANEL_TOP, PANEL_ROW * max(len(maps), 1)], hspace=0.2,
                            top=1 - 0.8 / (PANEL_TOP + PANEL_ROW * len(maps)), bottom=0.02, left=0.03, right=0.94)
    top = grid[0].subgridspec(1, 4, wspace=0.35)
    ax = fig.add_subplot(top[0])
    ax.imshow(show, cmap="gray")
    ax.set_title(f"input as the network sees it\n{img.shape[-2]}x{img.shape[-1]}", fontsize=10)
    ax.axis("off")
    ax = fig.add_subplot(top[1])
    order = np.argsort(-probs, kind="stable")[:3]
    names = [model.symbols[i] for i in order]
    ax.barh(range(3)[::-1], 100 * probs[order], color=["tab:green", "tab:gray", "tab:gray"])
    ax.set_yticks(range(3)[::-1])
    ax.set_yticklabels(names, fontsize=12)
    ax.set_xlim(0, 100)
    ax.set_xlabel("probability (%)")
    for y, p in zip(range(3)[::-1], probs[order]):
        ax.text(min(100 * p + 2, 70), y, f"{100 * p:.1f}%", va="center", fontsize=9)
    ax.set_title("top 3", fontsize=10)
    im = _saliency_axes(fig.add_subplot(top[2]), img, grad, f"saliency d score({model.symbols[k]}) / d x")
    fig.colorbar(im, ax=fig.axes[-1], fraction=0.046, pad=0.04)
    vmin, vmax = _symmetric(heat)
    im = _overlay(fig.add_subplot(top[3]), show, heat, "RdBu_r", vmin, vmax,
                  f"occlusion: drop of p({model.symbols[k]})\n{patch}x{patch} patch")
    fig.colorbar(im, ax=fig.axes[-1], fraction=0.046, pad=0.04)
    if maps:
        rows = grid[1].subgridspec(len(maps), MAPS_PER_LAYER + 1, wspace=0.08, hspace=0.35,
                                   width_ratios=[2.2] + [1] * MAPS_PER_LAYER)
        for r, (name, a) in enumerate(maps):
            label = fig.add_subplot(rows[r, 0])
            label.axis("off")
            label.text(0, 0.5, f"{name}\n{a.shape[0]}x{a.shape[1]}x{a.shape[2]}", va="center", fontsize=9)
            chosen = np.argsort(-a.mean(axis=(1, 2)), kind="stable")[:MAPS_PER_LAYER]
            lo, hi = float(a[chosen].min()), float(a[chosen].max())
            for c, ch in enumerate(chosen):
                ax = fig.add_subplot(rows[r, c + 1])
                ax.imshow(a[ch], cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1)
                ax.set_title(f"ch {ch}", fontsize=7)
                ax.axis("off")
    fig.suptitle(title or f"predicted {model.symbols[k]} ({100 * probs[k]:.1f}%)", fontsize=13)
    return fig


def mistakes_figure(model, images, mistakes, ncols=6):
    """Each mistake of :func:`~nncore.explain.misclassified` as the image and its saliency for the wrong class.

    images: the array the mistakes index into; mistakes: its list of dicts.
    """
    plt = _plt()
    n = len(mistakes)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.7 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for m, mistake in enumerate(mistakes):
        r, c = 2 * (m // ncols), m % ncols
        img = backend.to_numpy(images[mistake["index"]])
        grad, _ = saliency(model, img, mistake["predicted"])
        axes[r, c].imshow(img.squeeze(), cmap="gray")
        axes[r, c].set_title(f"true {model.symbols[mistake['label']]}, said {model.symbols[mistake['predicted']]}"
                             f"\n{100 * mistake['confidence']:.0f}%", fontsize=8, color="tab:red")
        _saliency_axes(axes[r + 1, c], img, grad, "")
        axes[r + 1, c].set_title(f"saliency of {model.symbols[mistake['predicted']]}", fontsize=8)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "(no mistakes)", ha="center", va="center")
    fig.suptitle("misclassified, most confident first\nbelow: the saliency of the wrong answer "
                 "(red raises its score, blue lowers it)")
    fig.tight_layout()
    return fig
