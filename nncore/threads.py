"""Thread setup for the CPU path, done by nncore so users need no environment variables.

Two thread pools share the cores during a training step: numba's (for the
kernels in :mod:`nncore.kernels.cpu`) and the BLAS library's (for the
matrix products). Left alone, both size themselves to the machine and can
oversubscribe it; worse, a pool whose idle threads spin-wait steals cycles
from the other. nncore therefore:

* gives both pools the same thread count (default: the CPUs this process may
  use, or ``NNCORE_NUM_THREADS``), and
* uses numba's ``workqueue`` threading layer when the user has not chosen
  one: its idle workers sleep instead of spinning, so they never compete with
  BLAS between kernels.

Measured on a 2-core machine, the two pools fight badly: OpenBLAS's worker
threads busy-wait for a long time after each product, so the numba kernel that
follows a GEMM shares its cores with a spinning thread and a training step of
the reference CNN took 0.2-0.8 s instead of 0.05 s. nncore therefore keeps
BLAS single-threaded and splits the large products itself: :func:`matmul`
cuts one into ``n`` slabs and runs them on a small pool of Python threads
(NumPy releases the GIL inside BLAS). Those threads and numba's workqueue
workers sleep on a lock while idle, so nothing spins.

Call :func:`set_num_threads` to change the count at run time.
"""

import os
import threading

_state = {"configured": False, "n": None, "pool": None}

#: products smaller than this many multiply-adds run in one call (splitting costs ~20 us)
_SPLIT_MIN_MACS = 2_000_000


def default_num_threads():
    """NNCORE_NUM_THREADS if set, else the number of CPUs this process may run on."""
    env = os.environ.get("NNCORE_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            from .errors import UsageError
            raise UsageError(f"NNCORE_NUM_THREADS={env!r} is not a positive integer; unset it or give e.g. 2")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure():
    """Set up both thread pools once (called when the numba kernels are first imported)."""
    if _state["configured"]:
        return
    import numba
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    _state["configured"] = True
    set_num_threads(_state["n"] or default_num_threads())


def set_num_threads(n):
    """Use ``n`` threads for numba kernels and for BLAS matrix products."""
    from .errors import UsageError
    if not isinstance(n, int) or n < 1:
        raise UsageError(f"thread count must be a positive integer, got {n!r}")
    _state["n"] = n
    if not _state["configured"]:
        return
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1, user_api="blas")      # parallelism comes from matmul() instead
    except ImportError:  # threadpoolctl is a dependency, but stay usable without it
        pass
    _shutdown_pool()


def get_num_threads():
    """The thread count in force (after :func:`configure`)."""
    return _state["n"] or default_num_threads()


# ----------------------------------------------------------------------------- parallel matrix products

class _Pool:
    """n-1 sleeping worker threads; the caller runs the first slab itself."""

    def __init__(self, n):
        from concurrent.futures import ThreadPoolExecutor
        self.n = n
        self.executor = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="nncore-gemm")

    def run(self, jobs):
        futures = [self.executor.submit(job) for job in jobs[1:]]
        jobs[0]()
        for f in futures:
            f.result()


_pool_lock = threading.Lock()


def _get_pool():
    n = get_num_threads()
    with _pool_lock:
        pool = _state["pool"]
        if pool is None or pool.n != n:
            _shutdown_pool()
            pool = _state["pool"] = _Pool(n)
        return pool


def _shutdown_pool():
    pool = _state.get("pool")
    if pool is not None:
        pool.executor.shutdown(wait=False)
        _state["pool"] = None


def _bounds(size, parts):
    return [(size * i) // parts for i in range(parts + 1)]


def num_slices(n):
    """How many slices :func:`run_slices` cuts ``range(n)`` into."""
    return max(1, min(get_num_threads() if _state["configured"] else 1, n))


def run_slices(n, job):
    """Run ``job(i, lo, hi)`` for the ``i``-th of :func:`num_slices` contiguous slices of ``range(n)``.

    For compiled kernels that release the GIL (numba ``nogil=True``) and are
    serial themselves: they compile several times faster than a numba
    ``parallel=True`` loop, and nncore's sleeping pool supplies the threads.
    Each slice runs under the caller's floating-point error settings
    (``np.errstate`` holds for one thread only; a caller that silences an
    overflow must not see the pool's threads warn about it).
    """
    import numpy as np
    parts = num_slices(n)
    if parts < 2:
        job(0, 0, n)
        return
    cut, errors = _bounds(n, parts), np.geterr()

    def task(i, lo, hi):
        with np.errstate(**errors):
            job(i, lo, hi)
    _get_pool().run([lambda i=i, lo=lo, hi=hi: task(i, lo, hi) for i, (lo, hi) in enumerate(zip(cut, cut[1:]))])


def matmul(a, b):
    """``a @ b`` for 2-D arrays, split over :func:`get_num_threads` threads on the CPU.

    The longest of the three dimensions (rows of ``a``, columns of ``b``, or
    the shared inner one) is cut into ``n`` slabs, one BLAS call per thread;
    cutting the inner dimension sums the ``n`` partial products at the end.
    Small products, a single thread, or non-NumPy arrays (CuPy) take ``a @ b``.
    """
    import numpy as np
    n = get_num_threads() if _state["configured"] else 1
    if n < 2 or type(a) is not np.ndarray or type(b) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return a @ b
    m, k = a.shape
    k2, p = b.shape
    if k != k2 or m * k * p < _SPLIT_MIN_MACS:
        return a @ b
    dtype = np.result_type(a, b)
    if p >= m and p >= k:                       # split the columns of b and out
        out = np.empty((m, p), dtype=dtype)
        run_slices(p, lambda i, lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]))
        return out
    if m >= k:                                  # split the rows of a and out
        out = np.empty((m, p), dtype=dtype)
        run_slices(m, lambda i, lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]))
        return out
    partial = np.empty((num_slices(k), m, p), dtype=dtype)   # split the inner dimension, sum the partial products
    run_slices(k, lambda i, lo, hi: np.matmul(a[:, lo:hi], b[lo:hi], out=partial[i]))
    out = partial[0]
    for i in range(1, len(partial)):
        out += partial[i]
    return out
