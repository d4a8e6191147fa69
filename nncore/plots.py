"""Figures for training runs and evaluations, drawn with matplotlib's Agg backend.

Every PNG is rendered in memory and written with
:func:`nncore.atomic.atomic_write`, so a figure file is either complete or
absent. matplotlib is imported on first use only.
"""

import io
import math

import numpy as np

from .atomic import atomic_write


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=100):
    """Render ``fig`` to PNG and write it atomically to ``path``; closes the figure."""
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def plot_history(history, path, title=None):
    """Loss and accuracy curves (train and validation) against the epoch.

    history: list of dicts with epoch, train_loss, train_acc, val_loss, val_acc
    (as written by :class:`nncore.training.Trainer`; None for NaN, as in history.json).
    """
    plt = _plt()
    ep = [r["epoch"] for r in history]

    def col(key):
        return [float("nan") if r.get(key) is None else r[key] for r in history]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, col("train_loss"), "o-", label="train")
    ax1.plot(ep, col("val_loss"), "s-", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [100 * v for v in col("train_acc")], "o-", label="train")
    ax2.plot(ep, [100 * v for v in col("val_acc")], "s-", label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(cm, labels, path, title="confusion matrix"):
    """Confusion matrix cm (K, K) (rows: true class, columns: predicted), counts annotated.

    Colours show each row normalised (the fraction of that true class), so small classes stay visible.
    """
    plt = _plt()
    cm = np.asarray(cm)
    k = len(labels)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    # rotate only long labels: a rotated "+" reads as "x"
    ax.set_xticklabels(labels, rotation=45 if max(len(str(lab)) for lab in labels) > 2 else 0)
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fontsize = 8 if k <= 12 else 6
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=fontsize,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_image_grid(images, titles, path, ncols=10, colors=None, title=None):
    """A grid of grey images (N, H, W) with a small title under each; N may be 0.

    colors: optional list of N matplotlib colours for the titles (e.g. red for mistakes).
    """
    plt = _plt()
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if np.asarray(images[i]).dtype == np.uint8 else 1)
        ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"))
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "(none)", ha="center", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_class_counts(labels, counts, path, title="images per class"):
    """Stacked bars of the images of each class in each split (a dataset's class balance).

    labels: C class labels for the x axis; counts: {"train": (C,), "val": (C,), "test": (C,)}
    (as in a dataset's ``meta["counts"]``); splits missing from ``counts`` are left out.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels) + 2), 4))
    bottom = np.zeros(len(labels))
    for split, colour in zip(("train", "val", "test"), ("tab:blue", "tab:orange", "tab:green")):
        if split not in counts:
            continue
        values = np.asarray(counts[split], dtype=float)
        ax.bar(range(len(labels)), values, bottom=bottom, label=split, color=colour)
        bottom += values
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 12 else 0)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
