"""Image-folder tree -> dataset: the one extraction behind ``extract_data.py folders`` and ``--dataset symbols``."""

import os

from .dataset import SPLITS, split_counts, stratified_split
from .folders import folder_content_digest, folder_fingerprint, load_image_folder


def extract_image_folder(root, fractions=(0.7, 0.15, 0.15), seed=0, workers=2, progress=False):
    """Preprocess every image of ``root/<class>/`` and split it into train/val/test.

    Inputs:
    - root: folder with one sub-folder per class (optionally classes.csv).
    - fractions: (train, val, test), summing to 1; the split is stratified and
      a deterministic function of the files and ``seed``.
    - workers, progress: see :func:`~nncore.data.folders.load_image_folder`.

    Returns (dataset, skipped): the dataset dict of
    :func:`~nncore.data.dataset.load_dataset` (x_* uint8 (N_*, 28, 28), y_*
    int64 (N_*,), class_names, symbols, meta) and the files that were not
    used as [(path, reason)]. ``meta`` holds the source folder (absolute), its
    :func:`~nncore.data.folders.folder_fingerprint` and
    :func:`~nncore.data.folders.folder_content_digest` (``content``), the seed,
    the fractions, the skipped paths and the per-split counts.
    """
    fingerprint = folder_fingerprint(root)  # before reading: a file changed meanwhile makes it stale
    content = folder_content_digest(root)
    folder = load_image_folder(root, workers=workers, progress=progress)
    parts = stratified_split(folder.labels, fractions, seed)
    x, y = folder.images, folder.labels
    d = {"class_names": list(folder.class_names), "symbols": list(folder.symbols)}
    for split, idx in zip(SPLITS, parts):
        d[f"x_{split}"], d[f"y_{split}"] = x[idx], y[idx]
    d["meta"] = {
        "source": os.path.abspath(root), "fingerprint": fingerprint, "content": content, "seed": seed,
        "fractions": [float(f) for f in fractions], "skipped": [p for p, _ in folder.skipped],
        "counts": split_counts({s: d[f"y_{s}"] for s in SPLITS}, len(folder.class_names)),
    }
    return d, list(folder.skipped)
