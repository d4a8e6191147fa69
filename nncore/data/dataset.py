"""Datasets as .npz files: stratified splits, saving and loading.

An nncore dataset file holds (N_* = number of examples in each split, C = classes):

- x_train (N_train, 28, 28) uint8, y_train (N_train,) int64
- x_val (N_val, 28, 28) uint8,     y_val (N_val,) int64
- x_test (N_test, 28, 28) uint8,   y_test (N_test,) int64
- class_names (C,) unicode, symbols (C,) unicode
- meta: 0-d unicode, a JSON object (source, seed, fractions, counts, ...)

No object arrays, so files load with ``allow_pickle=False``.
"""

import io
import json
import os
import zipfile

import numpy as np

from ..atomic import atomic_write
from ..errors import CorruptInputError, MissingInputError, SettingError, UsageError

SPLITS = ("train", "val", "test")
KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "class_names", "symbols", "meta")
FORMAT_VERSION = 1
MNIST_TRAIN_IMAGES = 60000  # the md5-checked MNIST training files always hold 60,000 images


def _check_fractions(fractions):
    try:
        f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UsageError(f"split fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if f.size != 3 or not np.isfinite(f).all() or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6 or f[0] <= 0:
        raise UsageError(
            f"split fractions (train, val, test) must be >= 0, sum to 1 and leave some training data; "
            f"got {tuple(f.tolist())}"
        )
    return f


def _allocate(counts, fraction):
    """Per-class counts (C,) for one split: largest-remainder rounding of counts*fraction."""
    ideal = counts * fraction
    base = np.floor(ideal).astype(np.int64)
    extra = int(round(counts.sum() * fraction)) - int(base.sum())
    if extra > 0:
        order = np.argsort(-(ideal - base), kind="stable")
        base[order[:extra]] += 1
    return base


def stratified_split(labels, fractions=(0.7, 0.15, 0.15), seed=0):
    """Split example indices into train/val/test with the same class proportions.

    Inputs:
    - labels: int array (N,) of class indices.
    - fractions: (train, val, test), non-negative, summing to 1.
    - seed: int; the split is a deterministic function of labels and seed.

    Returns (train_idx, val_idx, test_idx), int64 arrays that partition
    range(N), each in a seeded random order. Every class with >= 3 examples
    has at least one example in each split whose fraction is > 0.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise UsageError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes)).astype(np.int64)
    n_val, n_test = _allocate(counts, f[1]), _allocate(counts, f[2])
    for n, fj in ((n_val, f[1]), (n_test, f[2])):
        n[(counts >= 3) & (n == 0) & (fj > 0)] = 1
    for c in range(len(classes)):  # keep at least one training example per class
        while counts[c] - n_val[c] - n_test[c] < 1 and (n_val[c] + n_test[c]) > 0:
            if n_val[c] >= n_test[c]:
                n_val[c] -= 1
            else:
                n_test[c] -= 1
    parts = ([], [], [])
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(inverse == c))
        a, b = n_val[c], n_val[c] + n_test[c]
        parts[1].append(idx[:a])
        parts[2].append(idx[a:b])
        parts[0].append(idx[b:])
    return tuple(rng.permutation(np.concatenate(p).astype(np.int64)) if p else np.zeros(0, np.int64) for p in parts)


def split_counts(labels_by_split, num_classes):
    """{'train': (C,), 'val': (C,), 'test': (C,)} per-class counts as int lists."""
    return {s: np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).tolist()
            for s, y in labels_by_split.items()}


def save_dataset(path, x_train, y_train, x_val, y_val, x_test, y_test, class_names, symbols=None, meta=None):
    """Write a dataset .npz atomically (see the module docstring for the layout).

    Inputs: images uint8 (N_*, 28, 28), labels int (N_*,) in [0, C), class
    names (C,), symbols (C,) (default: the class names), meta: a JSON-able
    dict; ``counts`` (per split, per class) and ``format`` are added.
    Returns the path. Raises OutputError if it cannot be written.
    """
    class_names = [str(c) for c in class_names]
    symbols = class_names if symbols is None else [str(s) for s in symbols]
    if len(symbols) != len(class_names):
        raise UsageError(f"got {len(symbols)} symbols for {len(class_names)} classes")
    arrays = {}
    data = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
    for split, (x, y) in data.items():
        x = np.asarray(x)
        y = np.asarray(y).astype(np.int64)
        if x.ndim != 3 or x.shape[0] != y.shape[0] or y.ndim != 1:
            raise UsageError(f"{split} split: images must be (N, H, W) and labels (N,); got {x.shape} and {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise UsageError(f"{split} split: labels must be in [0, {len(class_names)}), got [{y.min()}, {y.max()}]")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y
    meta = dict(meta or {})
    meta["format"] = FORMAT_VERSION
    meta["counts"] = split_counts({s: arrays[f"y_{s}"] for s in SPLITS}, len(class_names))
    arrays["class_names"] = np.array(class_names, dtype=np.str_)
    arrays["symbols"] = np.array(symbols, dtype=np.str_)
    arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False), dtype=np.str_)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return os.fspath(path)


def save_dataset_dict(path, d):
    """:func:`save_dataset` of a dict with the keys of :func:`load_dataset` (x_train ... meta)."""
    return save_dataset(path, *(d[k] for k in KEYS[:6]), d["class_names"], d["symbols"], d.get("meta"))


_REMAKE = "re-create it with `python experiments/extract_data.py mnist` or `... folders PATH`"


def load_dataset(path):
    """Load a dataset written by :func:`save_dataset`.

    Returns a dict: x_train, y_train, x_val, y_val, x_test, y_test (arrays
    as saved), class_names and symbols (lists of str), meta (dict).
    Raises MissingInputError if absent, CorruptInputError if the file is not
    a complete nncore dataset.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"dataset {path} is a folder; give the path of a .npz dataset file "
                         "(make one from an image folder with `python experiments/extract_data.py folders PATH`)")
    if not os.path.isfile(path):
        raise MissingInputError(f"dataset {path} not found; {_REMAKE}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise CorruptInputError(f"{path} is not an nncore dataset (missing {', '.join(missing)}); {_REMAKE}")
            out = {k: npz[k] for k in KEYS}
    except CorruptInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CorruptInputError(f"{path} is not an nncore dataset or is truncated ({type(exc).__name__}); "
                                f"{_REMAKE}") from None
    try:
        out["meta"] = json.loads(str(out["meta"]))
    except ValueError:
        raise CorruptInputError(f"{path} has unreadable metadata; {_REMAKE}") from None
    if not isinstance(out["meta"], dict):
        raise CorruptInputError(f"{path} has metadata that is not a JSON object; {_REMAKE}")
    for key in ("class_names", "symbols"):
        if out[key].ndim != 1 or out[key].dtype.kind not in "US":
            raise CorruptInputError(f"{path}: {key} must be a 1-D array of strings, got {out[key].dtype} "
                                    f"{out[key].shape}; {_REMAKE}")
    out["class_names"] = [str(c) for c in out["class_names"]]
    out["symbols"] = [str(s) for s in out["symbols"]]
    num_classes = len(out["class_names"])
    if num_classes < 2 or len(out["symbols"]) != num_classes:
        raise CorruptInputError(f"{path} has {num_classes} class names and {len(out['symbols'])} symbols; "
                                f"a dataset needs at least 2 classes, one symbol each; {_REMAKE}")
    for split in SPLITS:
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise CorruptInputError(f"{path}: {split} images {x.shape} and labels {y.shape} do not match; {_REMAKE}")
        if x.dtype != np.uint8:
            raise CorruptInputError(f"{path}: {split} images have dtype {x.dtype}, expected uint8 (0-255); {_REMAKE}")
        if y.dtype.kind not in "iu":
            raise CorruptInputError(f"{path}: {split} labels have dtype {y.dtype}, expected integers; {_REMAKE}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise CorruptInputError(f"{path}: {split} labels lie in [{int(y.min())}, {int(y.max())}] but there are "
                                    f"{num_classes} classes (expected 0-{num_classes - 1}); {_REMAKE}")
        out[f"y_{split}"] = y.astype(np.int64)
    return out


def mnist_dataset(root=None, val_size=5000, seed=0, download=True):
    """MNIST as an nncore dataset dict (same keys as :func:`load_dataset`).

    A stratified validation set of ``val_size`` examples is split off the
    60,000 training images (deterministic from ``seed``); the official
    10,000-image test set is the test split. Shapes: x_train (60000 -
    val_size, 28, 28) uint8, x_val (val_size, 28, 28), x_test (10000, 28, 28);
    labels int64.
    """
    from .mnist import load_mnist

    if not 0 <= val_size < MNIST_TRAIN_IMAGES:  # checked before minutes of download or reading
        raise SettingError("val_size", f"must be in [0, {MNIST_TRAIN_IMAGES}), got {val_size}")
    d = load_mnist(root, download=download)
    n = len(d["y_train"])
    tr, va, _ = stratified_split(d["y_train"], (1 - val_size / n, val_size / n, 0.0), seed)
    names = [str(i) for i in range(10)]
    out = {
        "x_train": d["x_train"][tr], "y_train": d["y_train"][tr].astype(np.int64),
        "x_val": d["x_train"][va], "y_val": d["y_train"][va].astype(np.int64),
        "x_test": d["x_test"], "y_test": d["y_test"].astype(np.int64),
        "class_names": names, "symbols": list(names),
    }
    out["meta"] = {
        "source": "mnist", "seed": seed, "val_size": val_size,
        "fractions": [round(1 - val_size / n, 6), round(val_size / n, 6), None],
        "counts": split_counts({s: out[f"y_{s}"] for s in SPLITS}, 10),
    }
    return out
