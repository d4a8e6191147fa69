"""The numba decorators every CPU kernel uses, and the thread set-up they rely on.

``jit`` compiles a serial loop nest that releases the GIL (``nogil``), so
:func:`nncore.threads.run_slices` can run it on slices of the batch in
parallel; ``jit_inline`` marks a small helper such a loop calls; ``pjit``
compiles a loop nest whose ``prange`` loop numba splits over its own threads.
``cache=True`` stores the machine code on disk, so only the first run of a
fresh install pays for compilation.

:func:`nncore.threads.configure` runs on import, before any kernel can be
compiled or called: numba's and the BLAS library's thread pools must be sized
before their first use.
"""

import numba

from ... import threads

threads.configure()

jit = numba.njit(cache=True, nogil=True)
#: ``jit`` with NumPy's division (x / 0 gives inf or nan) instead of Python's: numba's check for a zero
#: divisor, to raise ZeroDivisionError, keeps LLVM from vectorising a loop that divides (Adam's: 7x)
jit_ieee = numba.njit(cache=True, nogil=True, error_model="numpy")
pjit = numba.njit(cache=True, nogil=True, parallel=True)
#: a helper called only from other kernels (a transform, a 2x2 maximum): numba inlines its body into each
#: caller's own code, instead of compiling it as a function of its own and linking that in. One whole
#: compile (numba's passes, LLVM's optimisation and machine code) less per helper and process: the
#: default model's kernels compiled in 10-25% less time on a fresh install (2-core machine,
#: 2026-12-01), and ran as fast. Not cached: it has no machine code of its own.
jit_inline = numba.njit(nogil=True, inline="always")
