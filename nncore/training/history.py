"""The per-epoch history of a run: ``history.json``, ``history.csv`` and the log line of an epoch."""

import csv
import io
import json
import math
import os

from ..atomic import atomic_write
from ..json_values import finite_or_none

#: The columns of history.csv, one row per epoch (val_* are NaN without validation data).
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def save_history(history, out_dir):
    """Write ``<out_dir>/history.json`` (NaN as null) and ``history.csv`` atomically."""
    clean = [{k: finite_or_none(v) for k, v in row.items()} for row in history]
    with atomic_write(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(clean, f, indent=1)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    with atomic_write(os.path.join(out_dir, "history.csv"), "w") as f:
        f.write(buf.getvalue())


def epoch_line(row, epochs):
    """The one-line summary of a history row, e.g. ``epoch 3/15: loss 0.0412 acc 98.71% | ...``."""
    val = (f" | val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}%"
           if math.isfinite(row["val_acc"]) else "")
    return (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%{val}"
            f" | lr {row['lr']:.2e} | {row['seconds']:.1f} s")
