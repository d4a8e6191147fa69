"""TrainConfig: the hyperparameters of a training run, validated, and the optimizer and schedule they describe."""

import dataclasses
import math

import numpy as np

from ..errors import SettingError
from ..optim import make_optimizer
from ..schedules import make_schedule

#: fields added after checkpoints were first written, with the value that reproduces the older runs
ADDED_FIELDS = {"label_smoothing": 0.0, "thick": 0.0}


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of a run (the defaults are ``experiments/train.py``'s).

    conv: channels of each conv block; dense: units of each hidden dense layer;
    kernel_size, batchnorm, dropout: the rest of the architecture (see
    :func:`nncore.architectures.cnn`); epochs/lr/schedule/warmup: the
    learning-rate plan (warmup in epochs; None: an eighth of the run, at most
    one epoch); augment: random shifts (2 px),
    rotations (10 degrees) and scalings (0.9-1.1); thick: with augment, the
    share of images whose strokes grow by a pixel; seed: the weights, the
    shuffling, the augmentation and the dropout masks all derive from it.
    """

    conv: tuple = (32, 48)
    dense: tuple = (256,)
    kernel_size: int = 3
    batchnorm: bool = True
    dropout: float = 0.0
    batch_size: int = 256
    epochs: int = 8
    lr: float = 6e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: float = None
    augment: bool = True
    thick: float = 0.0
    label_smoothing: float = 0.1
    seed: int = 0

    def validate(self):
        """Raise :class:`~nncore.errors.SettingError` (one line, naming the field) for an invalid setting.

        Normalises the types (tuples of int, lower-case names, int counts); returns self.
        """
        def check(ok, setting, problem):
            if not ok:
                raise SettingError(setting, problem)
        self.conv = tuple(int(c) for c in self.conv)
        self.dense = tuple(int(d) for d in self.dense)
        check(self.conv, "conv", "needs at least one conv block, e.g. (32, 64)")
        for name, sizes in (("conv", self.conv), ("dense", self.dense)):
            check(all(s >= 1 for s in sizes), name, f"must hold positive integers, got {list(sizes)}")
        check(len(self.conv) <= 4, "conv", f"has {len(self.conv)} blocks, but at most 4 fit a 28x28 image "
                                           "(each halves it)")
        ks = self.kernel_size
        check(isinstance(ks, (int, np.integer)) and 1 <= ks <= 27 and ks % 2 == 1, "kernel_size",
              f"must be an odd number from 1 to 27 (the image is 28x28), got {ks}")
        check(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0, "lr",
              f"must be a positive finite number, got {self.lr}")
        check(int(self.batch_size) >= 1, "batch_size", f"must be a positive integer, got {self.batch_size}")
        check(not self.batchnorm or int(self.batch_size) >= 2, "batch_size",
              f"must be >= 2 with BatchNorm (it normalises over the batch), got {self.batch_size}; "
              "use a larger batch or batchnorm=False")
        check(int(self.epochs) >= 1, "epochs", f"must be a positive integer, got {self.epochs}")
        check(str(self.optimizer).lower() in ("sgd", "adam"), "optimizer",
              f"must be sgd or adam, got {self.optimizer!r}")
        check(str(self.schedule).lower() in ("constant", "step", "cosine"), "schedule",
              f"must be constant, step or cosine, got {self.schedule!r}")
        check(0.0 <= self.momentum < 1.0, "momentum", f"must be in [0, 1), got {self.momentum}")
        check(0.0 <= self.thick <= 1.0, "thick", f"must be a share in [0, 1], got {self.thick}")
        check(self.thick == 0.0 or self.augment, "thick", "thickens strokes as part of the augmentation; "
                                                          "drop it or turn augment on")
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
              f"must be a finite number >= 0, got {self.weight_decay}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.warmup is None:
            self.warmup = min(1.0, int(self.epochs) / 8)
        check(0.0 <= self.warmup < self.epochs, "warmup",
              f"must be in [0, epochs) = [0, {self.epochs}), got {self.warmup}")
        check(int(self.seed) >= 0, "seed", f"must be an integer >= 0, got {self.seed}")
        self.optimizer, self.schedule = str(self.optimizer).lower(), str(self.schedule).lower()
        self.batch_size, self.epochs, self.seed = int(self.batch_size), int(self.epochs), int(self.seed)
        return self

    def to_dict(self):
        """A JSON-able dict (lists for conv and dense)."""
        d = dataclasses.asdict(self)
        d["conv"], d["dense"] = list(self.conv), list(self.dense)
        return d

    @classmethod
    def from_dict(cls, d):
        """The validated config of :meth:`to_dict` output; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {**ADDED_FIELDS, **d}  # a config saved before a field existed meant that field's old behaviour
        return cls(**{k: v for k, v in d.items() if k in names}).validate()

    def build_optimizer(self, model):
        """The optimizer of this config for ``model`` (SGD with Nesterov momentum, or Adam)."""
        if self.optimizer == "sgd":
            return make_optimizer("sgd", model, lr=self.lr, momentum=self.momentum,
                                  nesterov=self.momentum > 0, weight_decay=self.weight_decay)
        return make_optimizer("adam", model, lr=self.lr, weight_decay=self.weight_decay)

    def build_schedule(self):
        """The learning-rate schedule: a function of the fractional epoch."""
        return make_schedule(self.schedule, self.lr, self.epochs, warmup=self.warmup)
