"""Arrays and devices: which module owns an array, and where arrays live.

Layers never import NumPy or CuPy for array math. They ask this module:

* :func:`get_array_module(x)` returns ``numpy`` for a NumPy array and
  ``cupy`` for a CuPy array (the Chainer/DeZero pattern), so one layer code
  path serves both devices;
* :func:`to_device`, :func:`to_numpy` and :func:`device_of` move arrays and
  say where they are.

The kernels that do the array math are chosen by
:func:`nncore.kernels.kernels_for`, which imports this module; this module
never imports the kernels.

CuPy is imported lazily, only when a GPU is asked for, so a CPU-only install
never touches it. Asking for a GPU that is not there raises
:class:`~nncore.errors.DeviceError` carrying the real import or driver error.
"""

import importlib

import numpy as np

from .errors import DeviceError, UsageError

GPU_INSTALL_HINT = 'pip install -e ".[gpu]"  (CuPy for CUDA 12)'

_state = {"cupy": None}


def import_cupy():
    """Import CuPy and check that a CUDA device answers; raise DeviceError otherwise.

    The message repeats the real error (missing module, missing driver, no
    device) and gives the install command.
    """
    if _state["cupy"] is not None:
        return _state["cupy"]
    try:
        cp = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a broken CUDA toolkit raising at import
        raise DeviceError(
            f"the GPU needs CuPy, which could not be imported ({type(exc).__name__}: {exc}); "
            f"install it with: {GPU_INSTALL_HINT}"
        ) from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("no CUDA device found")
        _ = cp.cuda.Device(0).compute_capability  # queries the device: raises here when CUDA cannot use it
    except Exception as exc:
        raise DeviceError(
            f"CuPy is installed but no CUDA GPU is usable ({type(exc).__name__}: {exc}); "
            f"check the NVIDIA driver with nvidia-smi, or run on the CPU (device=cpu)"
        ) from None
    _state["cupy"] = cp
    return cp


def is_gpu_array(x):
    """True when ``x`` is a CuPy array (checked without importing CuPy)."""
    return type(x).__module__.startswith("cupy")


def get_array_module(*arrays):
    """``numpy`` or ``cupy``: the module that owns the given arrays."""
    for a in arrays:
        if is_gpu_array(a):
            return import_cupy()
    return np


def normalize_device(device):
    """Map user spellings to ``"cpu"`` or ``"gpu"``; anything else is a UsageError.

    ``cuda:0`` is the GPU; nncore runs on one GPU only, so ``cuda:1`` and other
    indices are refused (select that card with ``CUDA_VISIBLE_DEVICES`` instead:
    it then appears as device 0).
    """
    d = str(device).lower()
    if d in ("cpu", "numpy"):
        return "cpu"
    if d in ("gpu", "cuda", "cupy"):
        return "gpu"
    index = d[len("cuda:"):] if d.startswith("cuda:") else None
    if index is not None and index.isdigit():
        if int(index) == 0:
            return "gpu"
        raise UsageError(f"device {device!r}: nncore runs on one GPU, cuda:0; to use GPU {index}, "
                         f"set CUDA_VISIBLE_DEVICES={index} (that card is then cuda:0)")
    raise UsageError(f"unknown device {device!r}; use 'cpu' or 'gpu'")


def to_device(x, device):
    """Copy array ``x`` to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); no copy if already there."""
    device = normalize_device(device)
    if device == "gpu":
        cp = import_cupy()
        return x if is_gpu_array(x) else cp.asarray(x)
    return to_numpy(x)


def to_numpy(x):
    """A NumPy array for ``x`` (copies from the GPU when needed)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def device_of(x):
    """``"gpu"`` for a CuPy array, else ``"cpu"``."""
    return "gpu" if is_gpu_array(x) else "cpu"
