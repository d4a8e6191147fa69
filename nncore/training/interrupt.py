"""Ctrl-C during training: the first one is deferred to a safe point, a second one stops at once."""

import signal
import sys
import threading


class DeferredInterrupt:
    """Context manager deferring the first SIGINT (Ctrl-C) to a point the caller chooses.

    Inside the block the first SIGINT only sets :attr:`requested` and prints a
    note; the caller checks it where stopping is safe (the end of a training
    step) and raises KeyboardInterrupt there. A second SIGINT raises
    KeyboardInterrupt at once and sets :attr:`forced`: whatever was half done
    must then be thrown away. The previous handler is restored on exit. Outside
    the main thread (where Python cannot install signal handlers) SIGINT keeps
    its usual behaviour.
    """

    def __init__(self, note="\nstopping after this step (Ctrl-C again to stop at once)..."):
        self.note = note
        self.requested = False
        self.forced = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        print(self.note, file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False
