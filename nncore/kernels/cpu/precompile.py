"""Compile a model's numba kernels side by side in several processes, before its first step.

numba compiles a kernel at its first call, one kernel after another, and caches the machine code
on disk, one cache file per kernel. On a fresh install the default model's first training step
waits 8-13 s for that (2-core machines, 2026-12). The kernels do not depend on each other, so
:func:`precompile` shares them out: helper processes (``python -m nncore.kernels.cpu.precompile``,
one fewer than the cores, at most :data:`MAX_HELPERS`) compile some while this process compiles
the rest, balanced by the seconds each took when it was recorded; the first step then loads them
all from the cache.

Which kernels a layer needs, and with which argument types, is recorded in ``signatures.json``
beside this file, per layer class (float32 models; float64 ones, such as gradient checks, compile
as they run). ``python -m nncore.kernels.cpu.precompile --record`` rewrites it after a kernel
changes, and ``tests/test_precompile.py`` fails while it is out of date. A kernel missing from the
file is no error: numba compiles it at its first call, as it would without this module.
"""

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numba
from numba import types

from ... import threads

#: the recorded kernels: {layer class: [[module, kernel, [argument types], seconds], ...]}
SIGNATURES = Path(__file__).with_name("signatures.json")

#: helper processes at most (each compiles a share; more than a few gains little)
MAX_HELPERS = 3

#: seconds a helper takes to start (import numba and nncore) before it compiles anything
HELPER_START_SECONDS = 1.0

#: seconds to wait for the helpers before going on without them (the first call compiles what they lack)
HELPER_TIMEOUT_SECONDS = 300


# ----------------------------------------------------------------------------- argument types as JSON

def type_to_json(t):
    """A numba argument type as JSON: an array as [dtype, ndim, layout, readonly], a scalar as its name."""
    if isinstance(t, types.Array):
        return [str(t.dtype), t.ndim, t.layout, not t.mutable]
    if isinstance(t, (types.Number, types.Boolean)) or t == types.none:
        return str(t)
    raise TypeError(f"kernel argument type {t} is not recorded (arrays and scalars only)")


def type_from_json(j):
    if isinstance(j, list):
        dtype, ndim, layout, readonly = j
        return types.Array(getattr(types, dtype), ndim, layout, readonly=readonly)
    return types.none if j == "none" else getattr(types, j)


def _dispatcher(module, kernel):
    return getattr(importlib.import_module(f"{__package__}.{module}"), kernel)


# ----------------------------------------------------------------------------- compiling

def compile_entries(entries):
    """Compile (or load from numba's cache) each [module, kernel, args, ...] entry in this process."""
    for module, kernel, args, *_ in entries:
        _dispatcher(module, kernel).compile(tuple(type_from_json(a) for a in args))


def kernels_for_model(model):
    """The recorded entries of ``model``'s layers (float32 only), each kernel and signature once."""
    if getattr(model, "device", "cpu") != "cpu" or not model.layers:
        return []
    params = [a for layer in model.layers for a in layer.params.values()]
    if params and params[0].dtype != "float32":
        return []
    try:
        recorded = json.loads(SIGNATURES.read_text())
    except (OSError, ValueError):
        return []
    seen, entries = set(), []
    for name in dict.fromkeys(type(layer).__name__ for layer in model.layers):
        for entry in recorded.get(name, []):
            key = json.dumps(entry[:3])
            if key not in seen:
                seen.add(key)
                entries.append(entry)
    return entries


def share_out(entries, workers, head_start=HELPER_START_SECONDS):
    """Split entries into ``workers`` lists, longest kernels first, each to the least loaded worker.

    All signatures of one kernel go to one worker (two processes would race on its cache index).
    Worker 0 is this process; the others start ``head_start`` seconds late.
    """
    groups = {}
    for entry in entries:
        groups.setdefault((entry[0], entry[1]), []).append(entry)
    load = [0.0] + [head_start] * (workers - 1)
    shares = [[] for _ in range(workers)]
    for group in sorted(groups.values(), key=lambda g: -sum(e[3] for e in g)):
        w = load.index(min(load))
        shares[w] += group
        load[w] += sum(e[3] for e in group)
    return shares


def _cold(entries):
    """Whether numba compiled (rather than loaded from its cache) the cheapest of ``entries``, compiled now."""
    module, kernel, args, _ = min(entries, key=lambda e: e[3])
    dispatcher = _dispatcher(module, kernel)
    misses = sum(dispatcher.stats.cache_misses.values())
    compile_entries([[module, kernel, args]])
    return sum(dispatcher.stats.cache_misses.values()) > misses


def precompile(model):
    """Compile ``model``'s recorded kernels in this process and in helper processes, side by side.

    Does nothing (and returns 0) when the kernels are in numba's cache already, for a model not on
    the CPU or not float32, or on a single core; else returns the number of helpers it used.
    The model's first call compiles whatever is left, as it always does.
    """
    entries = kernels_for_model(model)
    workers = min(threads.get_num_threads(), 1 + MAX_HELPERS)
    if not entries or workers < 2 or not _cold(entries):
        return 0
    shares = share_out(entries, workers)
    helpers = []
    for share in shares[1:]:
        if share:
            proc = subprocess.Popen([sys.executable, "-m", __spec__.name], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc.stdin.write(json.dumps(share).encode())
            proc.stdin.close()
            helpers.append(proc)
    compile_entries(shares[0])
    deadline = time.monotonic() + HELPER_TIMEOUT_SECONDS
    for proc in helpers:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return len(helpers)


# ----------------------------------------------------------------------------- recording

def _models():
    """The models whose layers are recorded: train.py's default model and ref-cnn, fused and layer by layer."""
    from ...architectures import cnn, ref_cnn
    from ...training import TrainConfig
    cfg = TrainConfig()
    default = dict(conv_channels=cfg.conv, dense=cfg.dense, kernel_size=cfg.kernel_size, batchnorm=cfg.batchnorm,
                   dropout=cfg.dropout, seed=0)
    return {"default": lambda: cnn(**default, fused=True), "default-layers": lambda: cnn(**default, fused=False),
            "ref-cnn": lambda: ref_cnn(seed=0, fused=True), "ref-cnn-layers": lambda: ref_cnn(seed=0, fused=False)}


def _record_layer(name, k):
    """[layer class, entries] of layer k of model ``name``: its training forward, backward and inference
    forward on numba's kernels, the layers before it on the reference kernels (so that nothing else
    compiles in this process). Entries are the kernels called from Python (a kernel's callees compile
    with it), with the seconds each took when the cache is empty."""
    import numpy as np
    from numba.core import event

    from .. import set_cpu_kernels
    from . import __name__ as package

    found, clock = [], []

    class Listener(event.Listener):
        def on_start(self, ev):
            clock.append(time.perf_counter())

        def on_end(self, ev):
            seconds = time.perf_counter() - clock.pop()
            if not clock:                                   # not a callee of another kernel
                d = ev.data["dispatcher"]
                found.append([d.py_func.__module__, d.py_func.__name__, list(ev.data["args"]), round(seconds, 2)])

    model = _models()[name]().train()
    x = np.random.default_rng(0).standard_normal((16,) + model.input_shape).astype(np.float32)
    set_cpu_kernels("reference")
    for layer in model.layers[:k]:
        x = layer.forward(x, training=True)
    set_cpu_kernels("numba")
    layer = model.layers[k]
    with event.install_listener("numba:compile", Listener()):
        out = layer.forward(x, training=True)
        layer.backward(np.ones_like(out))
        layer.forward(x, training=False)
    # with a warm cache nothing compiles: then the signatures numba loaded are the record (seconds unknown)
    if not found:
        for module in [m for m in sys.modules if m.startswith(package + ".")]:
            for kernel in vars(sys.modules[module]).values():
                if isinstance(kernel, numba.core.registry.CPUDispatcher) and kernel.py_func.__module__ == module:
                    found += [[module, kernel.py_func.__name__, list(sig), None] for sig in kernel.signatures]
    entries = [[module.rsplit(".", 1)[-1], kernel, [type_to_json(t) for t in args], seconds]
               for module, kernel, args, seconds in found]
    return [type(layer).__name__, sorted(entries)]


def record(fresh_cache=True):
    """{layer class: entries} over every layer of :func:`_models`, each layer in a process of its own,
    with an empty numba cache (``fresh_cache``, to time the compiles) or the cache as it is."""
    import tempfile
    recorded = {}
    for name, build in _models().items():
        for k in range(len(build().layers)):
            with tempfile.TemporaryDirectory(prefix="nncore-record-") as cache:
                env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache} if fresh_cache else {}))
                run = subprocess.run([sys.executable, "-m", __spec__.name, "--record-layer", name, str(k)], env=env,
                                     capture_output=True, text=True, check=True)
            cls, entries = json.loads(run.stdout.strip().splitlines()[-1])
            bucket = recorded.setdefault(cls, [])
            bucket += [e for e in entries if all(e[:3] != b[:3] for b in bucket)]
    return {cls: entries for cls, entries in recorded.items() if entries}


def main(argv):
    if argv == ["--record"]:
        SIGNATURES.write_text(json.dumps(record(), indent=1) + "\n")
        print(f"wrote {SIGNATURES}")
        return 0
    if argv[:1] == ["--record-layer"]:
        print(json.dumps(_record_layer(argv[1], int(argv[2]))))
        return 0
    compile_entries(json.loads(sys.stdin.read()))     # a helper of precompile()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
