"""The training loop: :class:`Trainer` runs epochs of steps, validates, keeps the best weights.

:meth:`Trainer.fit` is the loop, to be read top to bottom. Robustness lives
beside it: the random streams of a step in :mod:`~nncore.training.batches`,
checkpoints in :mod:`~nncore.training.checkpoint`, the Ctrl-C deferral in
:mod:`~nncore.training.interrupt`, the history files in
:mod:`~nncore.training.history`.
"""

import contextlib
import math
import os
import sys
import time

import numpy as np

from .. import backend
from ..augment import augment
from ..errors import SettingError, TrainingDivergedError, UsageError
from ..layers import Dropout
from ..losses import SoftmaxCrossEntropy
from ..sequential import PREDICT_BATCH
from .batches import augment_rng, batch_bounds, dropout_rng, epoch_order
from .checkpoint import checkpoint_on_interrupt, read_checkpoint, restore, save_checkpoint
from .evaluation import evaluate
from .history import epoch_line, save_history
from .interrupt import DeferredInterrupt
from .kernel_compile import compile_kernels

_IGNORE_FP = dict(over="ignore", invalid="ignore", divide="ignore")  # overflow is caught as divergence


def _diverged(what, lr, peak_lr):
    return TrainingDivergedError(f"training diverged: {what} (learning rate {lr:.3g}); "
                                 f"use a lower learning rate, e.g. lr={peak_lr / 10:.3g}")


class Trainer:
    """Trains ``model`` on (x_train, y_train), validating on (x_val, y_val) after every epoch.

    Parameters
    ----------
    model : Sequential. :meth:`fit` puts it in training mode for the steps and
        in evaluation mode for validation and when it returns.
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
    eval_batch_size : images per batch of the validation pass
    """

    def __init__(self, model, config, x_train, y_train, x_val=None, y_val=None, out_dir=None, progress=True,
                 log=print, callbacks=(), run_info=None, resume_hint=None, eval_batch_size=PREDICT_BATCH):
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
        self.loss_fn = SoftmaxCrossEntropy(self.config.label_smoothing)
        self.optimizer = self.config.build_optimizer(model)
        self.schedule = self.config.build_schedule()
        self.epoch, self.step = 0, 0                          # the position: the next step to run
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}  # running sums of the current epoch
        self.history = []
        self.best = {"val_acc": -1.0, "epoch": 0, "arrays": None}  # best validation accuracy so far
        self.mid_step = False                                 # True while a step is half done
        self.elapsed_before = 0.0
        self.epoch_start = None
        self._session_start = time.perf_counter()

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

    def fit(self):
        """Train until ``config.epochs``; returns the history (a list of per-epoch dicts).

        A checkpoint and the history files are written after every epoch. Ctrl-C
        stops at the end of the current step, a second Ctrl-C at once; on
        KeyboardInterrupt a checkpoint is saved (when the state is whole) and the
        interrupt re-raised. TrainingDivergedError at the first non-finite loss or weight.
        """
        cfg, model, loss_fn, optimizer = self.config, self.model, self.loss_fn, self.optimizer
        n, device = len(self.y_train), model.device
        bounds = batch_bounds(n, cfg.batch_size)
        dropouts = [(j, layer) for j, layer in enumerate(model.layers) if isinstance(layer, Dropout)]
        # compile: numba's kernels, once per install, with a message instead of a stalled progress bar
        if self.epoch < cfg.epochs:
            first = epoch_order(cfg.seed, self.epoch, n)[bounds[0][0]:bounds[0][1]]
            compile_kernels(model, self.x_train[first], self.y_train[first], self.log, optimizer)
        with DeferredInterrupt() as ctrl_c, checkpoint_on_interrupt(self, ctrl_c), _eval_on_exit(model):
            while self.epoch < cfg.epochs:
                order = epoch_order(cfg.seed, self.epoch, n)
                self.epoch_start = self.epoch_start or time.perf_counter()
                model.train()
                with self._bar(len(bounds)) as bar:
                    while self.step < len(bounds):
                        s = self.step
                        # learning rate: the schedule at the fractional epoch
                        lr = optimizer.lr = self.schedule(self.epoch + s / len(bounds))
                        # batch: a slice of the epoch order; augmentation and dropout from (seed, epoch, step)
                        idx = order[bounds[s][0]:bounds[s][1]]
                        xb, yb = self.x_train[idx], self.y_train[idx]
                        if cfg.augment:
                            xb = augment(xb, augment_rng(cfg.seed, self.epoch, s), thick=cfg.thick)
                        for j, layer in dropouts:
                            layer.rng = dropout_rng(cfg.seed, self.epoch, s, j)
                        x, y = backend.to_device(model.prepare(xb), device), backend.to_device(yb, device)
                        self.mid_step = True
                        with np.errstate(**_IGNORE_FP):
                            # forward
                            logits = model.forward(x, training=True)
                            loss = loss_fn.forward(logits, y)
                            # backward
                            model.backward(loss_fn.backward())
                            # step
                            optimizer.step()
                        # divergence: stop at the first non-finite loss or weight
                        loss = float(loss)
                        if not math.isfinite(loss) or not model.all_finite():
                            what = f"the loss became {loss}" if not math.isfinite(loss) else "the weights overflowed"
                            raise _diverged(f"{what} at epoch {self.epoch + 1}, step {s + 1}", lr, cfg.lr)
                        # log: the epoch's running sums, the progress bar, the callbacks
                        p = self.partial
                        p["loss_sum"] += loss * len(yb)
                        p["correct"] += int((backend.to_numpy(logits).argmax(axis=1) == yb).sum())
                        p["seen"] += len(yb)
                        self.step, self.mid_step = s + 1, False
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.4f}",
                                            acc=f"{100 * p['correct'] / p['seen']:.2f}%", refresh=False)
                        for cb in self.callbacks:
                            if hasattr(cb, "on_step"):
                                cb.on_step(self, loss)
                        if ctrl_c.requested:
                            raise KeyboardInterrupt
                # validate: loss and accuracy of the whole validation set, in evaluation mode
                p = self.partial
                row = {"epoch": self.epoch + 1, "lr": optimizer.lr, "train_loss": p["loss_sum"] / max(p["seen"], 1),
                       "train_acc": p["correct"] / max(p["seen"], 1), "val_loss": math.nan, "val_acc": math.nan}
                model.eval()
                if self.y_val is not None and len(self.y_val):
                    with np.errstate(**_IGNORE_FP):
                        ev = evaluate(model, self.x_val, self.y_val, self.eval_batch_size)
                    if not math.isfinite(ev["loss"]):
                        raise _diverged(f"the validation loss became {ev['loss']} after epoch {self.epoch + 1}",
                                        cfg.lr, cfg.lr)
                    row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
                row["seconds"] = round(time.perf_counter() - self.epoch_start + p.get("seconds", 0.0), 3)
                # keep the best: the weights of the best validation accuracy (without validation data: the last)
                best = self.best
                if not math.isfinite(row["val_acc"]) or row["val_acc"] >= best["val_acc"]:
                    best = {"val_acc": row["val_acc"], "epoch": row["epoch"], "arrays": model.state_dict()}
                # next epoch: commit the epoch's results together
                self.best, self.history = best, self.history + [row]
                self.epoch, self.step, self.epoch_start = self.epoch + 1, 0, None
                self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
                self.log(epoch_line(row, cfg.epochs))
                # checkpoint and history files, every epoch (a SIGKILL loses at most the epoch under way)
                save_checkpoint(self)
                if self.out_dir is not None:
                    save_history(self.history, self.out_dir)
                for cb in self.callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, row)
                if ctrl_c.requested:
                    raise KeyboardInterrupt
        return self.history

    def _bar(self, total):
        """A tqdm progress bar for the steps of this epoch (a context giving None without progress)."""
        if not self.progress:
            return contextlib.nullcontext()
        from tqdm import tqdm
        return tqdm(total=total, initial=self.step, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                    unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)

    def restore_best(self):
        """Load the best-validation weights into the model (no-op before the first epoch); evaluation mode."""
        if self.best["arrays"] is not None:
            self.model.load_state_dict(self.best["arrays"])
        self.model.eval()
        return self.model

    @classmethod
    def resume(cls, path, x_train, y_train, x_val=None, y_val=None, epochs=None, device="cpu", **kwargs):
        """A Trainer restored from a checkpoint written during :meth:`fit`.

        ``epochs`` (optional) changes the total number of epochs; everything else comes from
        the checkpoint. ``kwargs`` are the other Trainer arguments (out_dir, progress...).
        """
        ckpt = read_checkpoint(path)
        config = ckpt.config
        if epochs is not None:
            config.epochs = int(epochs)
            config.validate()
        if config.epochs < int(ckpt.meta["epoch"]):
            raise SettingError("epochs", f"must be >= {ckpt.meta['epoch']}, the epochs the checkpoint has already "
                                         f"trained, got {config.epochs}")
        if device != "cpu":
            ckpt.model.to(device)
        kwargs.setdefault("run_info", ckpt.meta.get("run"))
        trainer = cls(ckpt.model, config, x_train, y_train, x_val, y_val, **kwargs)
        return restore(trainer, ckpt, path)


@contextlib.contextmanager
def _eval_on_exit(model):
    """The model is left in evaluation mode however the block ends."""
    try:
        yield
    finally:
        model.eval()
