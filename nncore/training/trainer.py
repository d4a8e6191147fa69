"""The training loop behind ``experiments/train.py``: epochs, validation, best weights, checkpoints.

Shapes: training images are uint8 (N, 28, 28) (or anything
:meth:`nncore.Sequential.prepare` accepts), labels int (N,).

Reproducibility and resumption
------------------------------
All randomness of a run derives from ``(seed, epoch, step)``:

* the shuffling of epoch ``e`` uses ``default_rng([seed, e, 0])``;
* the augmentation of step ``s`` of epoch ``e`` uses ``default_rng([seed, e, s, 1])``;
* the dropout masks of that step use ``default_rng([seed, e, s, 2, layer])``.

A checkpoint therefore only needs the model, the optimizer state, the
position ``(epoch, step)``, the running sums of the current epoch, the
history and the best weights so far; :meth:`Trainer.resume` continues from
it and ends with exactly the weights an uninterrupted run would have.

A checkpoint is written atomically at the end of every epoch (a SIGKILL loses
at most the current epoch) and when training is interrupted (Ctrl-C, or a
callback raising KeyboardInterrupt). Ctrl-C is deferred to the end of the
current step so the saved state is consistent; a second Ctrl-C stops at once
and keeps the last end-of-epoch checkpoint.
"""

import csv
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from . import backend
from .atomic import atomic_write
from .augment import augment
from .errors import TrainingDivergedError, UsageError
from .layers import Dropout
from .losses import SoftmaxCrossEntropy
from .architectures import MNIST_SCALING, cnn
from .optim import make_optimizer
from .schedules import make_schedule
from .weights import load_model, save_model

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of a run (the defaults are ``train.py``'s).

    conv: channels of each conv block; dense: units of each hidden dense layer;
    epochs/lr/schedule/warmup: the learning-rate plan (warmup in epochs);
    augment: random shifts (2 px), rotations (10 degrees) and scalings (0.9-1.1).
    """

    conv: tuple = (32, 64)
    dense: tuple = (256,)
    kernel_size: int = 3
    batchnorm: bool = True
    dropout: float = 0.25
    batch_size: int = 128
    epochs: int = 15
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: float = 0.0
    augment: bool = True
    seed: int = 0

    def validate(self):
        """Raise UsageError (one line) for any invalid setting; returns self."""
        def bad(msg):
            raise UsageError(msg)
        self.conv = tuple(int(c) for c in self.conv)
        self.dense = tuple(int(d) for d in self.dense)
        if not self.conv:
            bad("--conv needs at least one conv block, e.g. --conv 32,64")
        if any(c < 1 for c in self.conv) or any(d < 1 for d in self.dense):
            bad(f"layer sizes must be positive integers, got conv {list(self.conv)} dense {list(self.dense)}")
        if len(self.conv) > 4:
            bad(f"at most 4 conv blocks fit a 28x28 image (each halves it), got {len(self.conv)}")
        ks = self.kernel_size
        if not isinstance(ks, (int, np.integer)) or not 1 <= ks <= 27 or ks % 2 == 0:
            bad(f"kernel size must be an odd number from 1 to 27 (the image is 28x28), got {self.kernel_size}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad(f"the learning rate must be a positive number, got {self.lr}")
        if int(self.batch_size) < 1:
            bad(f"the batch size must be a positive integer, got {self.batch_size}")
        if self.batchnorm and int(self.batch_size) < 2:
            bad(f"BatchNorm needs batches of at least 2 images, got --batch-size {self.batch_size}; "
                "use a larger batch or --no-batchnorm")
        if int(self.epochs) < 1:
            bad(f"epochs must be a positive integer, got {self.epochs}")
        if str(self.optimizer).lower() not in ("sgd", "adam"):
            bad(f"unknown optimizer {self.optimizer!r}; choose sgd or adam")
        if str(self.schedule).lower() not in ("constant", "step", "cosine"):
            bad(f"unknown schedule {self.schedule!r}; choose constant, step or cosine")
        if not 0.0 <= self.momentum < 1.0:
            bad(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            bad(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.warmup < self.epochs:
            bad(f"warmup must be in [0, epochs), got {self.warmup}")
        if int(self.seed) < 0:
            bad(f"the seed must be an integer >= 0, got {self.seed}")
        self.optimizer, self.schedule = str(self.optimizer).lower(), str(self.schedule).lower()
        self.batch_size, self.epochs, self.seed = int(self.batch_size), int(self.epochs), int(self.seed)
        return self

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["conv"], d["dense"] = list(self.conv), list(self.dense)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}).validate()


def parse_sizes(text, flag, allow_empty=False):
    """'32,64' -> (32, 64). '' or 'none' -> () when allow_empty. UsageError otherwise."""
    t = str(text).strip().lower()
    if t in ("", "none", "0") and allow_empty:
        return ()
    try:
        sizes = tuple(int(p) for p in t.split(",") if p.strip() != "")
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated positive integers such as 32,64; got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"{flag} takes comma-separated positive integers such as 32,64; got {text!r}")
    return sizes


def input_scaling_for(images, use_mnist=False):
    """MNIST_SCALING, or {"mean", "std"} of the training images on the [0, 1] scale."""
    if use_mnist:
        return dict(MNIST_SCALING)
    x = np.asarray(images, dtype=np.float64) / 255.0
    std = float(x.std())
    return {"mean": round(float(x.mean()), 6), "std": round(std if std > 1e-6 else 1.0, 6)}


def build_model(config, class_names, symbols=None, input_scaling=None):
    """The :func:`nncore.architectures.cnn` described by ``config`` for len(class_names) classes."""
    return cnn(conv_channels=config.conv, dense=config.dense, num_classes=len(class_names),
               kernel_size=config.kernel_size, batchnorm=config.batchnorm, dropout=config.dropout,
               class_names=class_names, symbols=symbols, input_scaling=input_scaling, seed=config.seed)


def build_optimizer(config, model):
    if config.optimizer == "sgd":
        return make_optimizer("sgd", model, lr=config.lr, momentum=config.momentum,
                              nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    return make_optimizer("adam", model, lr=config.lr, weight_decay=config.weight_decay)


def build_schedule(config):
    return make_schedule(config.schedule, config.lr, config.epochs, warmup=config.warmup)


def evaluate(model, images, labels, batch_size=1000):
    """Loss and accuracy over ALL samples (the last partial batch included), in eval mode.

    Returns {"loss": float, "accuracy": float, "pred": (N,) int64, "proba": (N, K) float32}.
    """
    labels = np.asarray(labels).astype(np.int64)
    n = len(labels)
    logp = model.predict_log_proba(images, batch_size).astype(np.float64)
    nll = -float(logp[np.arange(n), labels].sum())
    proba = np.exp(logp).astype(np.float32)
    pred = proba.argmax(axis=1)
    return {"loss": nll / max(n, 1), "accuracy": float((pred == labels).mean()) if n else float("nan"),
            "pred": pred, "proba": proba}


def batch_bounds(n, batch_size):
    """[(start, stop), ...] covering range(n); a trailing batch of one sample is dropped
    (BatchNorm cannot normalise a single sample), every other sample is used."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
        bounds.pop()
    return bounds


def save_history(history, out_dir):
    """Write ``history.json`` and ``history.csv`` (one row per epoch) atomically."""
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
             for row in history]
    with atomic_write(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(clean, f, indent=1)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    with atomic_write(os.path.join(out_dir, "history.csv"), "w") as f:
        f.write(buf.getvalue())


class Trainer:
    """Trains ``model`` on (x_train, y_train), validating on (x_val, y_val) after every epoch.

    Parameters
    ----------
    model : Sequential (will be put in train mode during steps)
    config : TrainConfig
    x_train, y_train : uint8 (N, 28, 28), int (N,)
    x_val, y_val : the same for validation (may be None: the last epoch counts as best)
    out_dir : folder for checkpoint.npz, history.json/.csv (None: write nothing)
    progress : show a tqdm bar per epoch on stderr
    log : function taking one line (default: print to stdout); None for silence
    callbacks : objects with optional ``on_step(trainer, loss)`` / ``on_epoch_end(trainer, row)``;
        a callback may raise KeyboardInterrupt to simulate Ctrl-C
    run_info : JSON-able dict stored in checkpoints (dataset, name... for resuming)
    resume_hint : command printed after an interruption
    """

    def __init__(self, model, config, x_train, y_train, x_val=None, y_val=None, out_dir=None, progress=True,
                 log=print, callbacks=(), run_info=None, resume_hint=None, eval_batch_size=1000):
        self.config = config.validate()
        self.model = model
        self.x_train, self.y_train = x_train, np.asarray(y_train).astype(np.int64)
        if len(self.x_train) != len(self.y_train) or len(self.y_train) < 2:
            raise UsageError(f"need at least 2 training images with one label each, got {len(x_train)} images "
                             f"and {len(y_train)} labels")
        self.x_val = x_val
        self.y_val = None if y_val is None else np.asarray(y_val).astype(np.int64)
        self.out_dir = out_dir
        self.progress, self.log, self.callbacks = progress, log or (lambda line: None), list(callbacks)
        self.run_info = dict(run_info or {})
        self.resume_hint = resume_hint
        self.eval_batch_size = eval_batch_size
        self.loss_fn = SoftmaxCrossEntropy()
        self.optimizer = build_optimizer(self.config, model)
        self.schedule = build_schedule(self.config)
        self.epoch, self.step = 0, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self.history = []
        self.best = {"val_acc": -1.0, "epoch": 0, "arrays": None}  # best validation accuracy so far
        self.elapsed_before = 0.0
        self._session_start = time.perf_counter()
        self._epoch_start = None
        self._consistent = True
        self._stop_requested = False

    # -- paths and time ------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return None if self.out_dir is None else os.path.join(self.out_dir, "checkpoint.npz")

    @property
    def elapsed(self):
        """Training seconds over all sessions of this run."""
        return self.elapsed_before + time.perf_counter() - self._session_start

    @property
    def steps_per_epoch(self):
        return len(batch_bounds(len(self.y_train), self.config.batch_size))

    # -- the loop -------------------------------------------------------------------
    def fit(self):
        """Train until ``config.epochs``; returns the history (list of per-epoch dicts).

        KeyboardInterrupt: saves a checkpoint (when the state is consistent) and re-raises.
        """
        old_handler = self._install_sigint()
        try:
            while self.epoch < self.config.epochs:
                self._run_steps()
                row = self._end_epoch()
                self.save_checkpoint()
                if self.out_dir is not None:
                    save_history(self.history, self.out_dir)
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, row)
        except KeyboardInterrupt:
            self._on_interrupt()
            raise
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self.model.eval()
        return self.history

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:            # second Ctrl-C: stop right now
                self._consistent = False
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\nstopping after this step (Ctrl-C again to stop at once)...", file=sys.stderr)
        return signal.signal(signal.SIGINT, handler)

    def _run_steps(self):
        cfg, model = self.config, self.model
        bounds = batch_bounds(len(self.y_train), cfg.batch_size)
        perm = np.random.default_rng([cfg.seed, self.epoch, 0]).permutation(len(self.y_train))
        dropouts = [(j, layer) for j, layer in enumerate(model.layers) if isinstance(layer, Dropout)]
        device = model.device
        if self._epoch_start is None:
            self._epoch_start = time.perf_counter()
        bar = self._bar(len(bounds))
        try:
            while self.step < len(bounds):
                s = self.step
                idx = perm[bounds[s][0]:bounds[s][1]]
                xb = self.x_train[idx]
                if cfg.augment:
                    xb = augment(xb, np.random.default_rng([cfg.seed, self.epoch, s, 1]))
                yb = self.y_train[idx]
                for j, layer in dropouts:
                    layer.rng = np.random.default_rng([cfg.seed, self.epoch, s, 2, j])
                x = backend.to_device(model.prepare(xb), device)
                lr = self.schedule(self.epoch + s / len(bounds))
                self.optimizer.lr = lr
                self._consistent = False
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss, logits = model.train_step(x, backend.to_device(yb, device), self.loss_fn, self.optimizer)
                loss = float(loss)
                if not math.isfinite(loss) or not model.all_finite():
                    what = f"the loss became {loss}" if not math.isfinite(loss) else "the weights overflowed"
                    raise TrainingDivergedError(
                        f"training diverged: {what} at epoch {self.epoch + 1}, step {s + 1} "
                        f"(learning rate {lr:.3g}); use a lower learning rate, e.g. --lr {cfg.lr / 10:.3g}")
                correct = int((backend.to_numpy(logits).argmax(axis=1) == yb).sum())
                p = self.partial
                p["loss_sum"] += loss * len(yb)
                p["correct"] += correct
                p["seen"] += len(yb)
                self.step = s + 1
                self._consistent = True
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.4f}",
                                    acc=f"{100 * p['correct'] / p['seen']:.2f}%", refresh=False)
                for cb in self.callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(self, loss)
                if self._stop_requested:
                    raise KeyboardInterrupt
        finally:
            if bar is not None:
                bar.close()

    def _bar(self, total):
        if not self.progress:
            return None
        from tqdm import tqdm
        return tqdm(total=total, initial=self.step, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                    unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)

    def _end_epoch(self):
        """Validation, best weights, history row; moves the position to the next epoch."""
        p = self.partial
        row = {"epoch": self.epoch + 1, "lr": self.optimizer.lr,
               "train_loss": p["loss_sum"] / max(p["seen"], 1), "train_acc": p["correct"] / max(p["seen"], 1)}
        if self.y_val is not None and len(self.y_val):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                ev = evaluate(self.model, self.x_val, self.y_val, self.eval_batch_size)
            if not math.isfinite(ev["loss"]):
                raise TrainingDivergedError(
                    f"training diverged: the validation loss became {ev['loss']} after epoch {self.epoch + 1} "
                    f"(learning rate {self.config.lr:.3g}); use a lower learning rate, e.g. --lr {self.config.lr / 10:.3g}")
            row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
        else:
            row["val_loss"], row["val_acc"] = float("nan"), float("nan")
        seconds = time.perf_counter() - (self._epoch_start or time.perf_counter())
        row["seconds"] = round(seconds + p.get("seconds", 0.0), 3)
        has_val = math.isfinite(row["val_acc"])
        best = self.best
        if not has_val or row["val_acc"] >= best["val_acc"]:  # without validation data: the last epoch
            best = {"val_acc": row["val_acc"] if has_val else float("nan"), "epoch": row["epoch"],
                    "arrays": self.model.state_dict()}
        # commit everything at once
        self.best, self.history = best, self.history + [row]
        self.epoch, self.step = self.epoch + 1, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self._epoch_start = None
        val = f" | val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}%" if math.isfinite(row["val_acc"]) else ""
        self.log(f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.4f} "
                 f"acc {100 * row['train_acc']:.2f}%{val} | lr {row['lr']:.2e} | {row['seconds']:.1f} s")
        return row

    def _on_interrupt(self):
        where = f"epoch {self.epoch + 1}, step {self.step}/{self.steps_per_epoch}"
        path = self.checkpoint_path
        if path is None:
            print(f"interrupted at {where}; no --out-dir, so no checkpoint was written", file=sys.stderr)
            return
        if self._consistent:
            if self._epoch_start is not None:
                self.partial["seconds"] = self.partial.get("seconds", 0.0) + time.perf_counter() - self._epoch_start
                self._epoch_start = None
            self.save_checkpoint()
            if self.history:
                save_history(self.history, self.out_dir)
            msg = f"interrupted at {where}; checkpoint saved to {path}"
        elif os.path.exists(path):
            msg = f"interrupted mid-step at {where}; the last end-of-epoch checkpoint {path} is kept"
        else:
            msg = f"interrupted mid-step at {where} before the first checkpoint; nothing to resume"
        if self.resume_hint and os.path.exists(path):
            msg += f"; resume with: {self.resume_hint}"
        print(msg, file=sys.stderr)

    # -- best weights -------------------------------------------------------------
    def restore_best(self):
        """Load the best-validation weights into the model (no-op before the first epoch)."""
        if self.best["arrays"] is not None:
            self.model.load_state_dict(self.best["arrays"])
        self.model.eval()
        return self.model

    # -- checkpoints ------------------------------------------------------------
    def save_checkpoint(self, path=None):
        """Write model + optimizer + position + history + best weights atomically; returns the path."""
        path = path or self.checkpoint_path
        if path is None:
            return None
        opt = self.optimizer.state_dict()
        extra = {f"opt.{k}": v for k, v in opt["arrays"].items()}
        if self.best["arrays"] is not None:
            extra.update({f"best.{k}": v for k, v in self.best["arrays"].items()})
        meta = {"checkpoint": {
            "config": self.config.to_dict(), "epoch": self.epoch, "step": self.step,
            "partial": self.partial, "history": self.history,
            "best_val_acc": self.best["val_acc"], "best_epoch": self.best["epoch"],
            "optimizer": {"steps": opt["steps"], "lr": opt["lr"]}, "elapsed": self.elapsed,
            "rng": {"seed": self.config.seed, "epoch": self.epoch, "step": self.step,
                    "note": "shuffling, augmentation and dropout derive from (seed, epoch, step)"},
            "run": self.run_info,
        }}
        save_model(self.model, path, metadata=meta, extra_arrays=extra)
        return path

    @classmethod
    def resume(cls, path, x_train, y_train, x_val=None, y_val=None, epochs=None, **kwargs):
        """A Trainer restored from a checkpoint written by :meth:`save_checkpoint`.

        ``epochs`` (optional) changes the total number of epochs; everything else comes from
        the checkpoint. ``kwargs`` are the other Trainer arguments (out_dir, progress...).
        """
        model, header, extra = load_model(path, return_extra=True)
        ckpt = header.get("metadata", {}).get("checkpoint")
        if not isinstance(ckpt, dict):
            from .errors import CorruptInputError
            raise CorruptInputError(f"{path} is a weights file, not a training checkpoint")
        try:
            config = TrainConfig.from_dict(ckpt["config"])
            int(ckpt["epoch"]), int(ckpt["step"]), dict(ckpt["partial"]), list(ckpt["history"])
            ckpt["optimizer"]["steps"], ckpt["optimizer"]["lr"], ckpt["best_val_acc"], ckpt["best_epoch"]
        except (KeyError, TypeError, ValueError) as exc:
            from .errors import CorruptInputError
            raise CorruptInputError(f"{path} is a damaged training checkpoint ({type(exc).__name__}: {exc}); "
                                    "start the run again without --resume") from None
        if epochs is not None:
            config.epochs = int(epochs)
            config.validate()
        if config.epochs < ckpt["epoch"]:
            raise UsageError(f"the checkpoint has already trained {ckpt['epoch']} epochs; --epochs must be >= that")
        device = kwargs.pop("device", "cpu")
        if device != "cpu":
            model.to(device)
        kwargs.setdefault("run_info", ckpt.get("run"))
        trainer = cls(model, config, x_train, y_train, x_val, y_val, **kwargs)
        try:
            trainer.optimizer.load_state_dict({"arrays": {k[4:]: v for k, v in extra.items() if k.startswith("opt.")},
                                               "steps": ckpt["optimizer"]["steps"], "lr": ckpt["optimizer"]["lr"]})
        except (KeyError, TypeError, ValueError) as exc:
            from .errors import CorruptInputError
            raise CorruptInputError(f"{path}: the optimizer state does not fit the model ({type(exc).__name__}: {exc}); "
                                    "start the run again without --resume") from None
        best = {k[5:]: v for k, v in extra.items() if k.startswith("best.")}
        trainer.best = {"val_acc": ckpt["best_val_acc"], "epoch": ckpt["best_epoch"], "arrays": best or None}
        trainer.epoch, trainer.step = int(ckpt["epoch"]), int(ckpt["step"])
        trainer.partial = dict(ckpt["partial"])
        trainer.history = list(ckpt["history"])
        trainer.elapsed_before = float(ckpt.get("elapsed", 0.0))
        if trainer.step > trainer.steps_per_epoch:
            raise UsageError(f"{path} was made with a different training set (step {trainer.step} of an epoch "
                             f"that now has {trainer.steps_per_epoch}); resume with the same --dataset and --limit-train")
        return trainer


# -- data for the scripts ----------------------------------------------------------

def dataset_name(spec):
    """'mnist' -> 'mnist', 'symbols' -> 'symbols', 'path/to/foo.npz' -> 'foo'."""
    spec = str(spec)
    if spec.lower() in ("mnist", "symbols"):
        return spec.lower()
    return os.path.splitext(os.path.basename(spec))[0] or "dataset"


def load_data(spec, data_dir=None, val_size=5000, log=print):
    """Load a dataset for training or evaluation.

    spec: ``"mnist"`` (the IDX files under the data root, with a stratified
    validation split of ``val_size``), ``"symbols"`` (``data/symbols.npz`` if
    present, else extracted from ``<data root>/symbols`` and cached there),
    or the path of a ``.npz`` made by ``experiments/extract_data.py``.

    Returns the dataset dict (x_train, y_train, x_val, y_val, x_test, y_test:
    uint8 (N, 28, 28) / int64 (N,); class_names, symbols, meta) with
    ``meta["is_mnist"]`` telling whether MNIST's input scaling applies.
    """
    from . import data as nd
    log = log or (lambda line: None)
    key = str(spec)
    if key.lower() == "mnist":
        d = nd.mnist_dataset(data_dir, val_size=val_size, seed=0)
        d["meta"]["is_mnist"] = True
        return d
    if key.lower() == "symbols":
        cached = os.path.join("data", "symbols.npz")
        if os.path.isfile(cached):
            d = nd.load_dataset(cached)
        else:
            d = _extract_symbols(nd, data_dir, cached, log)
    else:
        if not key.endswith(".npz") and not os.path.isfile(key):
            raise UsageError(f"--dataset must be mnist, symbols or the path of a .npz dataset, got {spec!r}")
        d = nd.load_dataset(key)
    d["meta"]["is_mnist"] = d["meta"].get("source") == "mnist"
    return d


def _extract_symbols(nd, data_dir, cached, log):
    from .errors import OutputError
    root = nd.dataset_dir("symbols", data_dir)
    log(f"extracting {root} (first use; cached as {cached})...")
    folder = nd.load_image_folder(root, workers=2, progress=sys.stderr.isatty())
    tr, va, te = nd.stratified_split(folder.labels, (0.7, 0.15, 0.15), 0)
    x, y = folder.images, folder.labels
    meta = {"source": os.path.abspath(root), "seed": 0, "fractions": [0.7, 0.15, 0.15],
            "skipped": [p for p, _ in folder.skipped]}
    try:
        nd.save_dataset(cached, x[tr], y[tr], x[va], y[va], x[te], y[te], folder.class_names, folder.symbols, meta)
    except OutputError as exc:
        log(f"note: could not cache the extracted dataset ({exc})")
    return {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va], "x_test": x[te], "y_test": y[te],
            "class_names": list(folder.class_names), "symbols": list(folder.symbols), "meta": meta}

