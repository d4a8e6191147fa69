"""Training checkpoints: a weights file that also holds everything a run needs to continue.

A checkpoint is a :mod:`nncore.weights` file (it loads as a model, too) with

* ``layers.<i>.<name>``: the current weights and buffers;
* ``extra.opt.<key>.<slot>``: the optimizer state, e.g. ``extra.opt.layers.0.W.m``;
* ``extra.best.<key>``: the best-validation weights so far, e.g. ``extra.best.layers.0.W``;
* metadata ``checkpoint``: the config, the position ``(epoch, step)``, the
  running sums of the current epoch, the history, the best validation
  accuracy and its epoch, the optimizer's step count and learning rate, the
  training seconds so far and the caller's run info (dataset, name...).

The random state is not stored: it derives from ``(seed, epoch, step)``
(:mod:`nncore.training.batches`), so a resumed run ends with exactly the
weights of an uninterrupted one. Checkpoints are written atomically at the end
of every epoch and when training is interrupted (:func:`checkpoint_on_interrupt`).

Checkpoints written before the arrays were keyed ``layers.<i>.<name>`` hold
``opt.0.W.m`` and ``best.0.W``; :func:`read_checkpoint` renames them.
"""

import contextlib
import os
import re
import sys
import time
from typing import NamedTuple

from ..errors import CorruptInputError, UsageError
from ..sequential import Sequential
from ..weights import load_model, save_model
from .config import TrainConfig
from .history import save_history

_OLD_KEY = re.compile(r"^(opt|best)\.(\d+)\.")
_AGAIN = "start the run again instead of resuming it"


def migrate_key(key):
    """An extra-array name in today's scheme: ``opt.0.W.m`` -> ``opt.layers.0.W.m``,
    ``best.0.W`` -> ``best.layers.0.W``."""
    return _OLD_KEY.sub(r"\1.layers.\2.", key)


class Checkpoint(NamedTuple):
    """What :func:`read_checkpoint` returns.

    - model: the Sequential with the current weights (CPU, evaluation mode)
    - config: its validated TrainConfig
    - meta: the ``checkpoint`` metadata (position, partial sums, history, ...)
    - optimizer: the optimizer state for ``Optimizer.load_state_dict``
    - best: the best-validation arrays ``{"layers.<i>.<name>": array}``, or None
    """

    model: Sequential
    config: TrainConfig
    meta: dict
    optimizer: dict
    best: dict


def save_checkpoint(trainer, path=None):
    """Write the trainer's model, optimizer, position, history and best weights atomically; returns the path.

    ``path`` defaults to ``trainer.checkpoint_path``; with neither, nothing is written (returns None).
    """
    path = path or trainer.checkpoint_path
    if path is None:
        return None
    opt = trainer.optimizer.state_dict()
    extra = {f"opt.{k}": v for k, v in opt["arrays"].items()}
    if trainer.best["arrays"] is not None:
        extra.update({f"best.{k}": v for k, v in trainer.best["arrays"].items()})
    meta = {"checkpoint": {
        "config": trainer.config.to_dict(), "epoch": trainer.epoch, "step": trainer.step,
        "partial": trainer.partial, "history": trainer.history,
        "best_val_acc": trainer.best["val_acc"], "best_epoch": trainer.best["epoch"],
        "optimizer": {"steps": opt["steps"], "lr": opt["lr"]}, "elapsed": trainer.elapsed,
        "rng": {"seed": trainer.config.seed, "epoch": trainer.epoch, "step": trainer.step,
                "note": "shuffling, augmentation and dropout derive from (seed, epoch, step)"},
        "run": trainer.run_info,
    }}
    save_model(trainer.model, path, metadata=meta, extra_arrays=extra)
    return path


def read_checkpoint(path):
    """Load a checkpoint written by :func:`save_checkpoint` (old array names included).

    Raises CorruptInputError for a weights file that is not a checkpoint or a damaged one.
    """
    model, header, extra = load_model(path, return_extra=True)
    meta = header.get("metadata", {}).get("checkpoint")
    if not isinstance(meta, dict):
        raise CorruptInputError(f"{path} is a weights file, not a training checkpoint")
    try:
        config = TrainConfig.from_dict(meta["config"])
        int(meta["epoch"]), int(meta["step"]), dict(meta["partial"]), list(meta["history"])
        meta["best_val_acc"], meta["best_epoch"]
        optimizer = {"steps": meta["optimizer"]["steps"], "lr": meta["optimizer"]["lr"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptInputError(f"{path} is a damaged training checkpoint ({type(exc).__name__}: {exc}); "
                                f"{_AGAIN}") from None
    extra = {migrate_key(k): v for k, v in extra.items()}
    optimizer["arrays"] = {k[len("opt."):]: v for k, v in extra.items() if k.startswith("opt.")}
    best = {k[len("best."):]: v for k, v in extra.items() if k.startswith("best.")}
    return Checkpoint(model, config, meta, optimizer, best or None)


def restore(trainer, ckpt, path):
    """Put the optimizer state, position, history and best weights of ``ckpt`` into ``trainer``."""
    try:
        trainer.optimizer.load_state_dict(ckpt.optimizer)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptInputError(f"{path}: the optimizer state does not fit the model ({type(exc).__name__}: {exc}); "
                                f"{_AGAIN}") from None
    meta = ckpt.meta
    trainer.best = {"val_acc": meta["best_val_acc"], "epoch": meta["best_epoch"], "arrays": ckpt.best}
    trainer.epoch, trainer.step = int(meta["epoch"]), int(meta["step"])
    trainer.partial = dict(meta["partial"])
    trainer.history = list(meta["history"])
    trainer.elapsed_before = float(meta.get("elapsed", 0.0))
    if trainer.step > trainer.steps_per_epoch:
        raise UsageError(f"{path} was made with another training set (step {trainer.step} of an epoch that "
                                f"now has {trainer.steps_per_epoch}); resume with the same training images")
    return trainer


@contextlib.contextmanager
def checkpoint_on_interrupt(trainer, ctrl_c):
    """On KeyboardInterrupt inside the block: save a checkpoint if the state is whole, say so, re-raise.

    The state is whole unless the interrupt came mid-step (``trainer.mid_step``) or
    was a second, forced Ctrl-C (``ctrl_c.forced``, a :class:`DeferredInterrupt`);
    then the last end-of-epoch checkpoint is kept.
    """
    try:
        yield
    except KeyboardInterrupt:
        where = f"epoch {trainer.epoch + 1}, step {trainer.step}/{trainer.steps_per_epoch}"
        path = trainer.checkpoint_path
        if path is None:
            print(f"interrupted at {where}; no out_dir was given, so no checkpoint was written", file=sys.stderr)
            raise
        if not trainer.mid_step and not ctrl_c.forced:
            if trainer.epoch_start is not None:
                trainer.partial["seconds"] = (trainer.partial.get("seconds", 0.0)
                                              + time.perf_counter() - trainer.epoch_start)
                trainer.epoch_start = None
            save_checkpoint(trainer)
            if trainer.history:
                save_history(trainer.history, trainer.out_dir)
            msg = f"interrupted at {where}; checkpoint saved to {path}"
        elif os.path.exists(path):
            msg = f"interrupted mid-step at {where}; the last end-of-epoch checkpoint {path} is kept"
        else:
            msg = f"interrupted mid-step at {where} before the first checkpoint; nothing to resume"
        if trainer.resume_hint and os.path.exists(path):
            msg += f"; resume with: {trainer.resume_hint}"
        print(msg, file=sys.stderr)
        raise
