"""Shared plumbing for the scripts in ``experiments/``.

:func:`run_cli` turns every :class:`~nncore.errors.NncoreError` into one line
on stderr and the error's exit code (see :mod:`nncore.errors`), so that users
see ``error: cannot read digit.png: not an image file`` instead of a
traceback. Pass ``--debug`` to any script to get the full traceback.
"""

import argparse
import errno
import os
import sys

from .errors import NncoreError, OutputError, UsageError


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to a flag's help unless the help already names its
    default or the default is None/False (an unset option or a plain switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with nncore's conventions: one-line errors, exit code 2, a --debug flag."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def positive_int(text):
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text):
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def fraction(text):
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


class _GuardedStream:
    """Wraps sys.stdout: a failed write (full disk, closed pipe) becomes an OutputError."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            _silence_stdout(self._stream)
            if exc.errno == errno.EPIPE:
                hint = "the reading end of the pipe was closed"
            elif exc.errno == errno.ENOSPC:
                hint = "the disk is full"
            else:
                hint = exc.strerror or str(exc)
            raise OutputError(f"cannot write to standard output: {hint}") from None

    def write(self, text):
        return self._guard(self._stream.write, text)

    def writelines(self, lines):
        return self._guard(self._stream.writelines, lines)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout(stream):
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def check_environment():
    """Refuse bad NNCORE_* settings up front (UsageError), not when the kernels first load."""
    from . import backend, threads
    threads.default_num_threads()
    backend.cpu_kernels_name()


def run_cli(main, argv=None):
    """Call ``main(argv)`` and exit with nncore's error conventions.

    ``main`` returns an exit code (or None for 0). NncoreError -> one line on
    stderr and its ``exit_code``; KeyboardInterrupt -> exit 130; a standard
    output that cannot be written (``> /dev/full``, a closed pipe) -> exit 5.
    With ``--debug`` in argv, exceptions propagate with their traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    original = sys.stdout
    guarded = original is not None and not isinstance(original, _GuardedStream)
    if guarded:
        sys.stdout = _GuardedStream(original)
    try:
        check_environment()
        code = main(argv)
        sys.stdout.flush()  # report a full disk now, not as an ignored error at exit
    except NncoreError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if guarded:
            sys.stdout = original
    sys.exit(code or 0)
