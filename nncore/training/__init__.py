"""Training: the loop behind ``experiments/train.py`` and the pieces that make it safe to stop.

Shapes: training images are uint8 (N, 28, 28) (or anything
:meth:`nncore.Sequential.prepare` accepts), labels int (N,).

- :class:`TrainConfig` (``config.py``): the hyperparameters, validated.
- :class:`Trainer` (``trainer.py``): :meth:`Trainer.fit` is the loop
  (learning rate, batch, forward, backward, step, log, validate, keep the best);
  :meth:`Trainer.resume` continues a checkpoint.
- ``kernel_compile.py``: the kernels compiled once before the first step, with a
  message while numba compiles them on a fresh install.
- ``batches.py``: the batches of an epoch; all randomness derives from
  ``(seed, epoch, step)``, so a resumed run ends with exactly the weights of an
  uninterrupted one.
- ``checkpoint.py``: the checkpoint file, written atomically at the end of
  every epoch (a SIGKILL loses at most the current epoch) and on interrupt.
- ``interrupt.py``: Ctrl-C is deferred to the end of the current step so the
  saved state is whole; a second Ctrl-C stops at once and keeps the last
  end-of-epoch checkpoint.
- ``history.py``: history.json / history.csv; ``evaluation.py``: loss and
  accuracy over a whole set.
"""

from .batches import batch_bounds
from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluation import evaluate
from .history import HISTORY_FIELDS, save_history
from .interrupt import DeferredInterrupt
from .trainer import Trainer

__all__ = ["HISTORY_FIELDS", "DeferredInterrupt", "TrainConfig", "Trainer", "batch_bounds", "evaluate",
           "read_checkpoint", "save_checkpoint", "save_history"]
