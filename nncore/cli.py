"""Shared plumbing for the scripts in ``experiments/``.

:func:`run_cli` turns every :class:`~nncore.errors.NncoreError` into one line
on stderr and the error's exit code (see :mod:`nncore.errors`), so that users
see ``error: cannot read digit.png: not an image file`` instead of a
traceback. Pass ``--debug`` to any script to get the full traceback.
"""

import argparse
import sys

from .errors import NncoreError, UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with nncore's conventions: one-line errors, exit code 2, a --debug flag."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
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


def run_cli(main, argv=None):
    """Call ``main(argv)`` and exit with nncore's error conventions.

    ``main`` returns an exit code (or None for 0). NncoreError -> one line on
    stderr and its ``exit_code``; KeyboardInterrupt -> exit 130. With
    ``--debug`` in argv, exceptions propagate with their traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        code = main(argv)
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
    sys.exit(code or 0)
