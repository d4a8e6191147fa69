"""Learning-rate schedules: functions of training progress measured in epochs.

Each schedule is called with a (fractional) epoch, e.g. ``sched(2.5)`` halfway
through the third epoch, and returns the learning rate to use. The training
loop sets ``optimizer.lr = sched(epoch + step / steps_per_epoch)``.
"""

import math

from .errors import UsageError


class Constant:
    """lr(t) = base_lr."""

    def __init__(self, base_lr):
        self.base_lr = float(base_lr)

    def __call__(self, epoch):
        return self.base_lr


class StepLR:
    """lr(t) = base_lr * gamma ** floor(t / step_size)."""

    def __init__(self, base_lr, step_size, gamma=0.1):
        if step_size <= 0 or not 0 < gamma <= 1:
            raise UsageError(f"StepLR needs step_size > 0 and 0 < gamma <= 1, got {step_size}, {gamma}")
        self.base_lr, self.step_size, self.gamma = float(base_lr), float(step_size), float(gamma)

    def __call__(self, epoch):
        return self.base_lr * self.gamma ** math.floor(epoch / self.step_size)


class CosineLR:
    """Linear warm-up for ``warmup`` epochs, then a cosine from base_lr down to min_lr at ``total``.

    lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2
    """

    def __init__(self, base_lr, total, warmup=0.0, min_lr=0.0):
        if total <= 0 or warmup < 0 or warmup >= total:
            raise UsageError(f"CosineLR needs 0 <= warmup < total, got warmup={warmup}, total={total}")
        self.base_lr, self.total, self.warmup, self.min_lr = float(base_lr), float(total), float(warmup), float(min_lr)

    def __call__(self, epoch):
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1e-3) / self.warmup
        t = min(1.0, (epoch - self.warmup) / (self.total - self.warmup))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def make_schedule(name, base_lr, epochs, step_size=None, gamma=0.1, warmup=0.0):
    """Build a schedule by name: ``constant``, ``step`` or ``cosine``."""
    key = str(name).lower()
    if key == "constant":
        return Constant(base_lr)
    if key == "step":
        return StepLR(base_lr, step_size or max(1, epochs // 3), gamma)
    if key == "cosine":
        return CosineLR(base_lr, epochs, warmup=warmup)
    raise UsageError(f"unknown schedule {name!r}; choose constant, step or cosine")
