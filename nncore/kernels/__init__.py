"""The three kernel packages, and the function that picks one for an array.

=====================  ==================================================================
:mod:`.reference`      plain NumPy: the lecture version, and the oracle of the fast ones
:mod:`.cpu`            numba: the default on a CPU; chooses Winograd, a direct first layer
                       or im2col by shape
:mod:`.gpu`            CuPy: im2col and cuBLAS
=====================  ==================================================================

All three offer the same functions under the same names (the tests check
it), so a layer asks :func:`kernels_for` for the package that fits its
array and calls it::

    out, ctx = kernels_for(x).conv2d_forward(x, W, b, stride, pad, training)

The CPU package is numba's unless ``NNCORE_KERNELS=reference`` is set or
:func:`set_cpu_kernels` chose otherwise. The packages load on first use:
a CPU-only run never imports CuPy, and a reference-only run never imports numba.

Dependencies go one way: this package imports :mod:`nncore.backend` (which
tells a NumPy array from a CuPy one); the backend never imports the kernels.
"""

import importlib
import os
import threading

from .. import backend
from ..errors import UsageError

#: ``NNCORE_KERNELS`` / :func:`set_cpu_kernels` name -> the package it selects
CPU_KERNELS = {"numba": "nncore.kernels.cpu", "reference": "nncore.kernels.reference"}

_state = {"cpu_kernels": os.environ.get("NNCORE_KERNELS", "numba")}


def set_cpu_kernels(name):
    """Choose the CPU kernels: ``"numba"`` (fast, default) or ``"reference"`` (plain NumPy).

    The environment variable ``NNCORE_KERNELS`` sets the default.
    """
    if name not in CPU_KERNELS:
        raise UsageError(f"unknown CPU kernels {name!r}; choose one of {sorted(CPU_KERNELS)}")
    _state["cpu_kernels"] = name


def cpu_kernels_name():
    """Name of the CPU kernels in use: ``"numba"`` or ``"reference"`` (a bad ``NNCORE_KERNELS`` is a UsageError)."""
    name = _state["cpu_kernels"]
    if name not in CPU_KERNELS:
        raise UsageError(f"NNCORE_KERNELS={name!r} is not valid; choose one of {sorted(CPU_KERNELS)}")
    return name


def kernels_for(x):
    """The kernel package for array ``x``: :mod:`.gpu` for a CuPy array, else the chosen CPU package."""
    if backend.is_gpu_array(x):
        return importlib.import_module("nncore.kernels.gpu")
    return importlib.import_module(CPU_KERNELS[cpu_kernels_name()])


def precompile(model, training=True, announce=None, optimizer=None):
    """On numba's CPU kernels, compile the kernels ``model`` predicts with (and with ``training``,
    trains with) side by side in helper processes, before its first call; else do nothing.

    Worth it on a fresh install only (numba caches what it compiles): see
    :mod:`nncore.kernels.cpu.precompile`. Returns the number of helper processes that compiled;
    ``announce()`` is called once the cache is known to be empty, so a script can say it is compiling;
    with ``optimizer``, its step's kernels compile too.
    """
    if getattr(model, "device", "cpu") != "cpu" or cpu_kernels_name() != "numba":
        return 0
    return importlib.import_module("nncore.kernels.cpu.precompile").precompile(model, training, announce, optimizer)


def warm_up():
    """On numba's CPU kernels, set numba up in a background thread and return it (else return None).

    numba's first kernel in a process imports numba and sets up its CPU target, holding the
    interpreter: about 0.5 s when the kernel loads from the cache (:class:`.cpu.jit.KernelCache`),
    a second or more when it compiles (numba's compiler imports all its registries first). Started
    before a script reads its data (as ``train.py`` does), it runs while the data is inflated,
    which frees the interpreter (MNIST: one zlib call a file), so that less of it is left for the
    first step. A failure here is ignored: the first kernel call meets it again, in the
    caller's thread.
    """
    if cpu_kernels_name() != "numba":
        return None

    def start():
        try:
            importlib.import_module("nncore.kernels.cpu.precompile").start_numba()
        except Exception:  # noqa: BLE001 - re-raised by the first kernel call, where it belongs
            pass

    thread = threading.Thread(target=start, name="nncore-warm-up", daemon=True)
    thread.start()
    return thread
