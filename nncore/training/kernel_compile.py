"""Compile the kernels before the first progress bar, and say so when it takes a while.

On a fresh install numba compiles each CPU kernel at its first call and
caches the machine code on disk; later runs load it in a fraction of a
second. Without a word, that first compile looks like a stalled progress bar
with an absurd ETA. :func:`compile_kernels` compiles the kernels side by side
in helper processes (:func:`nncore.kernels.precompile`), runs one
training step (forward, backward and the optimizer's step) on a copy of the
model and on a few images of the first batch (so the real model, its
batch-norm statistics and its optimizer are untouched; this also compiles
anything the helpers did not), and prints a message if that has not finished
within half a second. The kernels only inference calls are not waited for: on
a fresh install a helper compiles them in the background, for the first
validation at the end of the first epoch. On a warm cache the kernels load
without numba's compiler set-up (:class:`nncore.kernels.cpu.jit.KernelCache`),
and what is left is mostly numba's import, which ``train.py`` starts in the
background before it reads its data (:func:`nncore.kernels.warm_up`).
"""

import copy
import threading
import time

from .. import backend, kernels
from ..losses import SoftmaxCrossEntropy

#: seconds the first compile of the default model's training step took on the 2-core development
#: machine, in two processes (empty numba cache, 2026-12-02: 5.6-9.3 s, median 8.3 s, in 12 runs);
#: the message quotes it
COLD_COMPILE_SECONDS = 9

#: a pass that takes longer than this is compiling, not computing
QUIET_SECONDS = 0.5

#: images of the batch the passes run on: enough for batch statistics, few enough to cost nothing
COMPILE_IMAGES = 8


def compile_kernels(model, images, labels, log=print, optimizer=None):
    """Run the kernels of one training step of ``model`` once, on a copy of it (and of ``optimizer``,
    whose step runs too, if given).

    images, labels: one training batch (raw images as :meth:`Sequential.prepare` takes them, int labels).
    Returns the seconds it took. Prints "compiling kernels, once, ..." if the passes are still
    running after :data:`QUIET_SECONDS`, and how long they took at the end.
    """
    twin, twin_optimizer = copy.deepcopy((model, optimizer))      # one copy: the optimizer's model is twin
    # a few images: the kernels' argument types (all that numba compiles for) do not depend on the batch
    x = backend.to_device(twin.prepare(images[:COMPILE_IMAGES]), twin.device)
    y = backend.to_device(labels[:COMPILE_IMAGES], twin.device)
    failure = []

    def passes():
        try:
            # a fresh install: the kernels compile side by side in helper processes
            kernels.precompile(twin, optimizer=twin_optimizer)
            loss = SoftmaxCrossEntropy()
            loss.forward(twin.train().forward(x, training=True), y)
            twin.backward(loss.backward())
            if twin_optimizer is not None:
                twin_optimizer.step()        # last: nothing runs on the updated copy (a huge lr overflows)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    start = time.perf_counter()
    worker = threading.Thread(target=passes, name="nncore-compile", daemon=True)
    worker.start()
    worker.join(QUIET_SECONDS)
    if worker.is_alive():
        log(f"compiling kernels, once, about {COLD_COMPILE_SECONDS} s (numba caches them for later runs) ...")
        worker.join()
        log(f"kernels compiled in {time.perf_counter() - start:.1f} s")
    if failure:
        raise failure[0]
    return time.perf_counter() - start
