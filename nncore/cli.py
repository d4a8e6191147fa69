"""Shared plumbing for the scripts in ``experiments/``.

:func:`run_cli` turns every :class:`~nncore.errors.NncoreError` into one line
on stderr and the error's exit code (see :mod:`nncore.errors`), so that users
see ``error: cannot read digit.png: not an image file`` instead of a
traceback. Pass ``--debug`` to any script to get the full traceback.

The argparse types below (:func:`positive_int`, :func:`int_list`...) refuse a
bad flag before any work starts. Library errors name settings, not flags
(``batch_size must be ...``); :meth:`ArgumentParser.flag_errors` re-words them
with the script's flags (``--batch-size must be ...``).
"""

import argparse
import contextlib
import errno
import os
import re
import sys

from .errors import NncoreError, OutputError, SettingError, UsageError

# a setting named in a library message's hint: "batchnorm=False", "lr=0.0001"
_SETTING_HINT = re.compile(r"\b([a-z][a-z0-9_]*)=([^\s;,()]+)")


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

    def flags(self):
        """Every option string of this parser and of its sub-commands, e.g. {"--lr", "--no-augment", ...}."""
        found = set(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= sub.flags() if isinstance(sub, ArgumentParser) else set(sub._option_string_actions)
        return found

    def flag_wording(self, message):
        """``message`` with each ``setting=value`` hint written as this parser's flag.

        ``batchnorm=False`` -> ``--no-batchnorm``, ``augment=True`` -> ``--augment``,
        ``lr=0.001`` -> ``--lr 0.001``; settings without a flag stay as they are.
        """
        flags = self.flags()

        def reword(match):
            flag, value = "--" + match.group(1).replace("_", "-"), match.group(2)
            if value == "False" and "--no-" + flag[2:] in flags:
                return "--no-" + flag[2:]
            if value == "True" and flag in flags:
                return flag
            if value not in ("True", "False") and flag in flags:
                return f"{flag} {value}"
            return match.group(0)
        return _SETTING_HINT.sub(reword, message)

    def given(self, argv):
        """The destinations of the options ``argv`` sets itself, whatever their values (``--lr 6e-3``
        gives ``"lr"`` even where 6e-3 is the default; abbreviations and ``--flag=value`` count too)."""
        saved = [(action, action.default) for action in self._actions]
        try:
            for action, _ in saved:
                action.default = argparse.SUPPRESS
            return set(vars(self.parse_args(argv)))
        finally:
            for action, default in saved:
                action.default = default

    @contextlib.contextmanager
    def flag_errors(self):
        """Within the block, errors that name settings are re-raised naming this parser's flags.

        A :class:`~nncore.errors.SettingError` about ``batch_size`` becomes a UsageError
        ``--batch-size <problem>`` when the parser has ``--batch-size``; ``setting=value``
        hints in any nncore error become flags (:meth:`flag_wording`).
        """
        try:
            yield
        except NncoreError as exc:
            flag = "--" + exc.setting.replace("_", "-") if isinstance(exc, SettingError) else None
            if flag in self.flags():
                raise UsageError(self.flag_wording(f"{flag} {exc.problem}")) from None
            worded = self.flag_wording(str(exc))
            if worded == str(exc) or isinstance(exc, SettingError):
                raise
            raise type(exc)(worded) from None


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


def _int_list(text, allow_empty):
    t = str(text).strip().lower()
    if allow_empty and t in ("", "none", "0"):
        return ()
    try:
        values = tuple(int(p) for p in t.split(",") if p.strip() != "")
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 32,64, got {text!r}")
    return values


def int_list(text):
    """argparse type: comma-separated positive integers, ``"32,64"`` -> ``(32, 64)``; at least one."""
    return _int_list(text, allow_empty=False)


def int_list_or_none(text):
    """argparse type: like :func:`int_list`, or ``none`` (also ``""`` and ``0``) for ``()``."""
    return _int_list(text, allow_empty=True)


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


def default_weights(name):
    """The default of a script's weights option: ``weights/<name>`` in the working directory when it
    is there (a file the user trained, as train.py writes it there), else the shipped file of the
    checkout nncore runs from (:data:`nncore.weights.SHIPPED_DIR`), so that
    ``python path/to/experiments/classify.py photo.jpg`` works from any folder. With neither,
    ``weights/<name>``, which the missing-file error then names."""
    from .weights import SHIPPED_DIR
    here = os.path.join("weights", name)
    shipped = os.path.join(SHIPPED_DIR, name)
    return shipped if not os.path.exists(here) and os.path.isfile(shipped) else here


def check_environment():
    """Refuse bad NNCORE_* settings up front (UsageError), not when the kernels first load."""
    from . import kernels, threads
    threads.default_num_threads()
    kernels.cpu_kernels_name()


def compile_kernels(*models, training=False):
    """Before a script's first prediction: compile the models' kernels side by side on a fresh install
    (:func:`nncore.kernels.precompile`; with ``training``, the backward kernels too), saying so on stderr."""
    from . import kernels

    def announce():
        print("compiling nncore's kernels, once (numba caches them for later runs) ...", file=sys.stderr, flush=True)

    for model in models:
        kernels.precompile(model, training, announce)


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
