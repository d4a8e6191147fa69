"""Compile a model's numba kernels side by side in several processes, before its first step.

numba compiles a kernel at its first call, one kernel after another, and caches the machine code
on disk, one cache file per kernel. On a fresh install the default model's first training step
waited 8-20 s for that in one process (2-core machines, 2026-12). The kernels do not depend on
each other, so :func:`precompile` shares them out: helper processes (``python -m nncore.kernels.cpu.precompile``,
one fewer than the threads, at most :data:`MAX_HELPERS`) and this process take them one at a
time, the longest (as recorded) first, each taking the next when it is free; the first step then
loads them all from the cache.

Before training, only the training step's kernels are waited for. Those that only inference needs
(the first validation, at the end of the first epoch) are left to one helper that compiles them in
the background while the first steps run (:func:`compile_in_background`): the progress bar starts
that much sooner (a second on the default model, 2-core machine).

Which kernels a layer needs, and with which argument types, is recorded in ``signatures.json``
beside this file, per layer class, for inference and for a training step (float32 models; float64
ones, such as gradient checks, compile as they run). ``python -m nncore.kernels.cpu.precompile
--record`` rewrites it after a kernel changes, and ``tests/test_precompile.py`` fails while it is
out of date. A kernel missing from the file is no error: numba compiles it at its first call, as
it would without this module.
"""

import atexit
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numba import types
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError

from ... import threads
from .jit import jit

#: the recorded kernels: {layer class: {"infer" or "train": [[module, kernel, [argument types], seconds], ...]}},
#: "infer" all that the inference forward calls, "train" all that the training forward and backward call
SIGNATURES = Path(__file__).with_name("signatures.json")

#: helper processes at most (each compiles a share; more than a few gains little)
MAX_HELPERS = 3

#: seconds to wait for the helpers before going on without them (the first call compiles what they lack)
HELPER_TIMEOUT_SECONDS = 300

#: the helpers compiling in the background (:func:`compile_in_background`); stopped when this process ends
_background = []


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
    return getattr(types, j)                # "int64", "float32", "bool", "none", ...


def _dispatcher(module, kernel):
    """The numba dispatcher ``kernel`` of ``nncore.kernels.cpu.<module>``, or None if there is none."""
    try:
        found = getattr(importlib.import_module(f"{__package__}.{module}"), kernel, None)
    except ImportError:
        return None
    return found if isinstance(found, Dispatcher) else None


# ----------------------------------------------------------------------------- compiling

@jit
def _nothing(x):
    """A kernel that returns its argument: its first call sets numba's CPU target up."""
    return x


def start_numba():
    """Set numba's CPU target up in this process (done once, by whatever kernel runs first; on a fresh
    install ``_nothing`` compiles, and numba's compiler sets itself up too: see :func:`nncore.kernels.warm_up`)."""
    _nothing(0)


def compile_entries(entries):
    """Compile (or load from numba's cache) each [module, kernel, args, ...] entry in this process;
    True if numba compiled any of them (found one missing from its cache)."""
    compiled = False
    for module, kernel, args, *_ in entries:
        dispatcher = _dispatcher(module, kernel)
        if dispatcher is None:
            continue                    # an out-of-date record: the first call compiles what it needs
        misses = sum(dispatcher.stats.cache_misses.values())
        try:
            dispatcher.compile(tuple(type_from_json(a) for a in args))
        except (NumbaError, AttributeError, TypeError, ValueError):
            continue                    # arguments the kernel no longer takes: the same
        compiled |= sum(dispatcher.stats.cache_misses.values()) > misses
    return compiled


def _add_new(bucket, entries):
    """Append to ``bucket`` the entries whose (module, kernel, arguments) it does not hold yet."""
    bucket += [e for e in entries if all(e[:3] != b[:3] for b in bucket)]


def kernels_for_model(model, training=True, optimizer=None):
    """The recorded entries of ``model``'s layers (float32 only) for its inference forward, or with
    ``training`` for a training step (forward, backward and ``optimizer``'s step, if given), as
    groups, one per kernel (all its signatures), the longest to compile first.
    (:func:`nncore.kernels.precompile` has checked that the model is on the CPU.)
    """
    if not model.layers:
        return []
    params = [a for layer in model.layers for a in layer.params.values()]
    if params and params[0].dtype != "float32":
        return []
    try:
        recorded = json.loads(SIGNATURES.read_text())
    except (OSError, ValueError):
        return []
    names = [type(layer).__name__ for layer in model.layers] + ([type(optimizer).__name__] if optimizer else [])
    groups = {}
    for name in dict.fromkeys(names):
        for entry in recorded.get(name, {}).get("train" if training else "infer", []):
            _add_new(groups.setdefault((entry[0], entry[1]), []), [entry])
    return sorted(groups.values(), key=lambda g: -sum(e[3] for e in g))


def inference_only_kernels(model):
    """The groups of ``kernels_for_model(model, training=False)`` less the entries (kernel and
    argument types) a training step calls too: what only inference needs."""
    train = [e[:3] for group in kernels_for_model(model) for e in group]
    groups = [[e for e in group if e[:3] not in train] for group in kernels_for_model(model, training=False)]
    return [group for group in groups if group]


def take_and_compile(groups, claims, stop_if_cached=False, announce=None):
    """Work through ``groups`` in order, compiling each one that no other process has claimed.

    A group is claimed by creating the file ``claims/<index>`` (exclusive creation, so exactly one
    process wins it): the processes share the work out as they go, each taking the longest group
    left when it is free, however fast each one runs. With ``stop_if_cached``, stops after the first
    group if numba found it in its cache (returns False: the cache is warm); else calls ``announce()``
    (if given) and goes on, and returns True.
    """
    for i, group in enumerate(groups):
        try:
            os.close(os.open(os.path.join(claims, str(i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        compiled = compile_entries(group)
        if stop_if_cached:
            if not compiled:
                return False
            if announce is not None:
                announce()
            stop_if_cached = False
    return True


def precompile(model, training=True, announce=None, optimizer=None):
    """Compile the kernels ``model`` predicts with (or with ``training``, a training step's), as
    recorded, in this process and in helper processes, side by side.

    Does nothing more than load one kernel (and returns 0) when the cache holds the kernels already,
    for a model not float32, or with one thread (a model on the GPU never gets here:
    :func:`nncore.kernels.precompile` returns first); else calls ``announce()`` (if
    given) once it knows the cache is empty, and returns the number of helpers that worked. With
    ``optimizer``, its step's kernels too. With ``training``, on an empty cache, the kernels only
    inference calls are then left to :func:`compile_in_background`. The model's first call
    compiles whatever is left, as it always does.
    """
    groups = kernels_for_model(model, training, optimizer if training else None)
    workers = min(threads.get_num_threads(), 1 + MAX_HELPERS, len(groups))
    if workers < 2:
        return 0
    with tempfile.TemporaryDirectory(prefix="nncore-compile-") as claims:
        helpers = []
        for _ in range(workers - 1):        # started first: they import numba while this process checks the cache
            proc = _helper([claims], groups)
            if proc is None:
                break
            helpers.append(proc)
        cold = take_and_compile(groups, claims, stop_if_cached=True, announce=announce)
        deadline = time.monotonic() + HELPER_TIMEOUT_SECONDS
        for proc in helpers:
            try:
                if not cold:
                    raise subprocess.TimeoutExpired(proc.args, 0)       # warm: nothing for them to do
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if cold and training:
        compile_in_background(inference_only_kernels(model))
    return len(helpers) if cold else 0


def _helper(args, groups):
    """A helper process (``python -m`` this module with ``args``) given ``groups`` on its standard input,
    or None if none could start."""
    # it imports this nncore, wherever it was found (an install, PYTHONPATH or a script's sys.path)
    root = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    try:
        proc = subprocess.Popen([sys.executable, "-m", __spec__.name, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    except OSError:
        return None                         # no helper (no fork, no interpreter): the caller compiles alone
    try:
        proc.stdin.write(json.dumps(groups).encode())
        proc.stdin.close()
    except OSError:
        pass                                # the helper died at once: it claimed nothing
    return proc


def compile_in_background(groups):
    """Start one helper process that compiles ``groups``, and return it without waiting (None if
    there is nothing to compile or it could not start).

    It runs beside this process's first training steps, on what the threads leave free; a kernel it
    has not finished when first called compiles in the caller as usual (numba writes each cache file
    whole, under a temporary name, so the two never mix). :func:`wait_for_background` waits for it;
    it is stopped when this process ends.
    """
    if not groups:
        return None
    proc = _helper(["--background"], groups)
    if proc is not None:
        _background.append(proc)
    return proc


def wait_for_background(timeout=HELPER_TIMEOUT_SECONDS):
    """Wait for the helpers of :func:`compile_in_background` to finish (True if all did in ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    try:
        for proc in _background:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    _background.clear()
    return True


@atexit.register
def _stop_background():
    for proc in _background:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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


def _record_layer(name, k, mode):
    """[layer class, entries] of layer k of model ``name`` in ``mode``, in a process of its own with an
    empty cache: the kernels its inference forward (``"infer"``), or its training forward and backward
    (``"train"``), compile on numba's kernels (the layers before it run on the reference kernels, so
    that nothing else compiles here). k = -1: the optimizer's step instead (["Adam", ...], "train"
    only). Entries are the kernels called from Python (a kernel's callees compile with it), with the
    seconds each took."""
    import numpy as np
    from numba.core import event

    from .. import set_cpu_kernels

    found, clock = [], []

    class Listener(event.Listener):
        def on_start(self, ev):
            clock.append(time.perf_counter())

        def on_end(self, ev):
            seconds = time.perf_counter() - clock.pop()
            if not clock:                                   # not a callee of another kernel
                d = ev.data["dispatcher"]
                found.append([d.py_func.__module__.rsplit(".", 1)[-1], d.py_func.__name__,
                              [type_to_json(t) for t in ev.data["args"]], round(seconds, 2)])

    model = _models()[name]().train()
    if k < 0:
        from ...optim import Adam
        optimizer = Adam(model)
        for ref in model.named_arrays(("params",)):
            ref.layer.grads[ref.name] = np.ones_like(ref.value)
        if mode == "train":
            with event.install_listener("numba:compile", Listener()):
                optimizer.step()
        return [type(optimizer).__name__, sorted(found)]
    x = np.random.default_rng(0).standard_normal((16,) + model.input_shape).astype(np.float32)
    set_cpu_kernels("reference")
    for layer in model.layers[:k]:
        x = layer.forward(x, training=True)
    set_cpu_kernels("numba")
    layer = model.layers[k]
    with event.install_listener("numba:compile", Listener()):
        if mode == "infer":
            layer.forward(x, training=False)
        else:
            layer.backward(np.ones_like(layer.forward(x, training=True)))
    return [type(layer).__name__, sorted(found)]


def record():
    """{layer class: {"infer": entries, "train": entries}} over every layer of :func:`_models`, each
    layer and mode in a process of its own with an empty numba cache (so that every compile is timed),
    and {"Adam": {"infer": [], "train": ...}} for the optimizer train.py uses."""
    recorded = {}
    for name, build in _models().items():
        for k in range(-1 if name == "default" else 0, len(build().layers)):
            for mode in ("train",) if k < 0 else ("infer", "train"):
                with tempfile.TemporaryDirectory(prefix="nncore-record-") as cache:
                    run = subprocess.run([sys.executable, "-m", __spec__.name, "--record-layer", name, str(k), mode],
                                         env=dict(os.environ, NUMBA_CACHE_DIR=cache), capture_output=True, text=True,
                                         check=True)
                cls, entries = json.loads(run.stdout.strip().splitlines()[-1])
                _add_new(recorded.setdefault(cls, {"infer": [], "train": []})[mode], entries)
    return {cls: modes for cls, modes in recorded.items() if modes["infer"] or modes["train"]}


USAGE = ("usage: python -m nncore.kernels.cpu.precompile --record   (rewrite signatures.json after a kernel "
         "changes; about 4 minutes)")


def main(argv):
    if argv == ["--record"]:
        from ...atomic import atomic_write
        text = json.dumps(record(), indent=1) + "\n"
        with atomic_write(SIGNATURES, "w") as f:
            f.write(text)
        print(f"wrote {SIGNATURES}")
        return 0
    if len(argv) == 4 and argv[0] == "--record-layer" and argv[3] in ("infer", "train"):
        print(json.dumps(_record_layer(argv[1], int(argv[2]), argv[3])))
        return 0
    if len(argv) == 1 and not sys.stdin.isatty() and (argv[0] == "--background" or os.path.isdir(argv[0])):
        groups = json.loads(sys.stdin.read())
        if argv[0] == "--background":
            compile_entries([e for group in groups for e in group])     # of compile_in_background()
        else:
            take_and_compile(groups, argv[0])                           # a helper of precompile()
        # out at once: the cache files are written, and the interpreter's shutdown (numba's and LLVM's
        # clean-up) took another half second on a 2-core machine, with precompile() waiting for it
        os._exit(0)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
