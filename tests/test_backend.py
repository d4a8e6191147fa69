"""Backend selection: NumPy on the CPU, CuPy only when asked, clear errors when it cannot be had."""

import subprocess
import sys

import numpy as np
import pytest

from nncore import backend, kernels
from nncore.errors import DeviceError, UsageError


def test_numpy_arrays_use_numpy_and_the_chosen_cpu_kernels():
    x = np.zeros(3)
    assert backend.get_array_module(x) is np
    assert kernels.kernels_for(x).__name__ == "nncore.kernels.cpu"
    kernels.set_cpu_kernels("reference")
    try:
        assert kernels.kernels_for(x).__name__ == "nncore.kernels.reference"
        assert kernels.cpu_kernels_name() == "reference"
    finally:
        kernels.set_cpu_kernels("numba")


def test_unknown_kernels_and_devices_are_usage_errors():
    with pytest.raises(UsageError, match="unknown CPU kernels"):
        kernels.set_cpu_kernels("fortran")
    with pytest.raises(UsageError, match="unknown device"):
        backend.normalize_device("tpu")
    with pytest.raises(UsageError, match="unknown device"):
        backend.normalize_device("cuda:one")
    assert backend.normalize_device("cuda:0") == "gpu" and backend.normalize_device("CPU") == "cpu"


@pytest.mark.parametrize("device", ["cuda:1", "CUDA:3", "cuda:12"])
def test_a_gpu_index_other_than_0_is_refused_not_dropped(device):
    """nncore runs on one GPU. "cuda:1" used to be accepted and then run on GPU 0; now it is refused, in
    one line naming the fix, before CuPy is even imported."""
    with pytest.raises(UsageError) as info:
        backend.normalize_device(device)
    index = device.split(":")[1]
    message = str(info.value)
    assert f"CUDA_VISIBLE_DEVICES={index}" in message and "\n" not in message
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES"):
        backend.to_device(np.zeros(2), device)


def test_the_backend_does_not_import_the_kernels():
    """One-way dependency: nncore.kernels imports nncore.backend, never the reverse (at any depth)."""
    import ast
    tree = ast.parse(open(backend.__file__).read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any("kernels" in name for name in names), ast.dump(node)
    assert 'import_module("nncore.kernels' not in open(backend.__file__).read()
    assert not hasattr(backend, "set_cpu_kernels") and callable(kernels.set_cpu_kernels)


def test_importing_nncore_and_running_on_cpu_never_imports_cupy():
    code = ("import sys, numpy as np, nncore; m = nncore.ref_cnn(); "
            "m.predict(np.zeros((2, 28, 28), np.uint8)); print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_asking_for_a_gpu_without_cupy_repeats_the_real_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes "import cupy" fail, even where CuPy is installed
    monkeypatch.setitem(backend._state, "cupy", None)
    with pytest.raises(DeviceError) as info:
        backend.to_device(np.zeros(2), "gpu")
    message = str(info.value)
    assert "import of cupy halted" in message and 'pip install -e ".[gpu]"' in message
    assert "\n" not in message


def test_to_numpy_and_device_of_on_cpu():
    x = np.arange(3)
    assert backend.to_numpy(x) is x and backend.device_of(x) == "cpu"
    assert backend.to_device(x, "cpu") is x
