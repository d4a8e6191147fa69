"""The numba decorators every CPU kernel uses, and the thread set-up they rely on.

``jit`` compiles a serial loop nest that releases the GIL (``nogil``), so
:func:`nncore.threads.run_slices` can run it on slices of the batch in
parallel; ``jit_inline`` marks a small helper such a loop calls; ``pjit``
compiles a loop nest whose ``prange`` loop numba splits over its own threads.
Each stores its machine code on disk (numba's ``cache=True``, loaded by
:class:`KernelCache`), so only the first run of a fresh install pays for
compilation.

:func:`nncore.threads.configure` runs on import, before any kernel can be
compiled or called: numba's and the BLAS library's thread pools must be sized
before their first use.
"""

import numba
from numba.core.caching import FunctionCache
from numba.core.runtime import rtsys

from ... import threads

threads.configure()


class KernelCache(FunctionCache):
    """numba's on-disk cache of one kernel, loaded without setting numba's compiler up.

    Before it loads a cached kernel, numba's own cache calls ``target_context.refresh()``, which
    imports every lowering registry numba has (its NumPy, linear algebra with SciPy's BLAS, typed
    containers, random numbers...). A compile needs them; loading machine code needs only what that
    code links against: numba's runtime (``rtsys.initialize``) and the helpers every target context
    installs when it is made. On a warm start that was 0.4-0.9 s of the 0.6-1.1 s numba took before
    the first step (2-core machine, 2026-12-01). A kernel missing from the cache compiles as before,
    and numba's compiler then imports all the registries itself.
    """

    def __init__(self, py_func, options=""):
        super().__init__(py_func)
        self._options = options

    def _index_key(self, sig, codegen):
        """numba's key (signature, machine, bytecode) plus the compile options: machine code compiled
        with other options (before ``fastmath`` was set, say) is compiled again, not loaded."""
        return super()._index_key(sig, codegen) + (self._options,)

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


#: KernelCache relies on two methods of numba's cache (present from numba 0.58 to 0.68 at least); a
#: numba without them gets its own cache, which loads as fast as numba itself allows
_LEAN_LOADS = all(hasattr(FunctionCache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors"))


def cached_njit(**options):
    """``numba.njit(cache=True, **options)``, with the cache loading as :class:`KernelCache` does."""
    decorate = numba.njit(**options)

    def wrap(function):
        dispatcher = decorate(function)
        if _LEAN_LOADS:
            dispatcher._cache = KernelCache(dispatcher.py_func, repr(sorted(options.items())))  # as enable_caching()
        else:
            dispatcher.enable_caching()
        return dispatcher
    return wrap


#: every kernel may fuse a multiplication and the addition that takes its result into one FMA
#: instruction (LLVM's ``contract``, one rounding instead of two): nothing else of ``fastmath`` (no
#: reordered sums, no assumption that values are finite). The default model's training step took
#: 3.5-7.6% less time with it (three processes on the 2-core machine, 2026-12-02, each alternating
#: 30 blocks of five steps with and without: 34.1 / 41.8 / 27.8 ms against 36.7 / 43.3 / 28.7 ms).
FMA = {"contract"}

jit = cached_njit(nogil=True, fastmath=FMA)
#: ``jit`` with NumPy's division (x / 0 gives inf or nan) instead of Python's: numba's check for a zero
#: divisor, to raise ZeroDivisionError, keeps LLVM from vectorising a loop that divides (Adam's: 7x).
#: Without FMA: Adam's update is bound by memory, not arithmetic, and it keeps the reference's
#: roundings, operation for operation
jit_ieee = cached_njit(nogil=True, error_model="numpy")
pjit = cached_njit(nogil=True, parallel=True, fastmath=FMA)
#: a helper called only from other kernels (a transform, a 2x2 maximum): numba inlines its body into each
#: caller's own code, instead of compiling it as a function of its own and linking that in. One whole
#: compile (numba's passes, LLVM's optimisation and machine code) less per helper and process: the
#: default model's kernels compiled in 10-25% less time on a fresh install (2-core machine,
#: 2026-12-01), and ran as fast. Not cached: it has no machine code of its own.
jit_inline = numba.njit(nogil=True, inline="always", fastmath=FMA)
