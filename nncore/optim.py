"""Optimizers: SGD (momentum, Nesterov, weight decay) and Adam.

An optimizer holds references to the model's layers and updates
``layer.params[name]`` in place from ``layer.grads[name]`` when
:meth:`step` is called, after ``model.backward``. Gradients are overwritten
by every backward pass, so there is nothing to zero between steps.

Weight decay applies to weight matrices and kernels (arrays with two or more
dimensions), not to biases or BatchNorm's gamma and beta, as is customary.
"""

import math

from . import backend
from .errors import UsageError
from .kernels import kernels_for


def _check_hyper(name, value, low, high=math.inf, low_inclusive=True):
    ok = (value >= low if low_inclusive else value > low) and value < high and math.isfinite(value)
    if not ok:
        bound = "[" if low_inclusive else "("
        raise UsageError(f"{name} must be in {bound}{low}, {high}), got {value!r}")
    return float(value)


class Optimizer:
    """Base class: walks the model's parameters with :meth:`~nncore.Sequential.named_arrays`."""

    def __init__(self, model, lr, weight_decay=0.0):
        self.model = model
        self.lr = _check_hyper("learning rate", lr, 0.0, low_inclusive=False)
        self.weight_decay = _check_hyper("weight decay", weight_decay, 0.0)
        self.state = {}      # key -> dict of slot name -> array
        self.steps = 0

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for ref in self.model.named_arrays(("params",)):
            g = ref.layer.grads.get(ref.name)
            if g is not None:
                self.update(ref.key, ref.value, g)

    def update(self, key, p, g):
        raise NotImplementedError

    # -- checkpointing -----------------------------------------------------
    def state_dict(self):
        """Arrays (host memory) and scalars to save in a checkpoint."""
        arrays = {f"{k}.{slot}": backend.to_numpy(v) for k, st in self.state.items() for slot, v in st.items()}
        return {"arrays": arrays, "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` output (arrays moved to the params' device)."""
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])
        params = {ref.key: ref.value for ref in self.model.named_arrays(("params",))}
        self.state = {}
        for full, arr in state["arrays"].items():
            key, slot = full.rsplit(".", 1)
            if key not in params or params[key].shape != arr.shape:
                raise UsageError(f"optimizer state {full!r} does not fit this model")
            xp = backend.get_array_module(params[key])
            self.state.setdefault(key, {})[slot] = xp.asarray(arr, dtype=params[key].dtype)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    With momentum mu and L2 weight decay wd (PyTorch's formulation)::

        g = grad + wd * p
        v = mu * v + g
        p -= lr * (g + mu * v)   if nesterov
        p -= lr * v              otherwise
    """

    def __init__(self, model, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.momentum = _check_hyper("momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise UsageError("Nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)

    def update(self, key, p, g):
        if self.weight_decay and p.ndim >= 2:
            g = g + p.dtype.type(self.weight_decay) * p
        lr = p.dtype.type(self.lr)
        if self.momentum == 0:
            p -= lr * g
            return
        # exercise: sgd
        mu = p.dtype.type(self.momentum)
        st = self.state.setdefault(key, {})
        if "v" not in st:
            st["v"] = g.copy()
        else:
            v = st["v"]
            v *= mu
            v += g
        v = st["v"]
        p -= lr * (g + mu * v) if self.nesterov else lr * v
        # end exercise


class Adam(Optimizer):
    """Adam with bias correction; weight decay is decoupled (AdamW).

    ::

        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps) + lr * wd * p
    """

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.b1 = _check_hyper("beta1", betas[0], 0.0, 1.0)
        self.b2 = _check_hyper("beta2", betas[1], 0.0, 1.0)
        self.eps = _check_hyper("eps", eps, 0.0, low_inclusive=False)

    def update(self, key, p, g):
        xp = backend.get_array_module(p)
        st = self.state.setdefault(key, {})
        if "m" not in st:
            st["m"] = xp.zeros_like(p)
            st["v"] = xp.zeros_like(p)
        decay = self.lr * self.weight_decay if p.ndim >= 2 else 0.0
        # the arithmetic (m, v and p in place) is a kernel: nncore.kernels.reference.adam_update
        kernels_for(p).adam_update(p, g, st["m"], st["v"], self.lr, self.b1, self.b2, self.eps, self.steps, decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name, model, **kwargs):
    """Build an optimizer by name (``"sgd"`` or ``"adam"``)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key](model, **kwargs)
