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

Call :func:`set_num_threads` to change the count at run time.
"""

import os

_state = {"configured": False, "n": None}


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
        threadpool_limits(n, user_api="blas")
    except ImportError:  # threadpoolctl is a dependency, but stay usable without it
        pass


def get_num_threads():
    """The thread count in force (after :func:`configure`)."""
    return _state["n"] or default_num_threads()
