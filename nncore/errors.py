"""Errors that nncore reports to people, each with a documented exit code.

Every problem a user can cause (a missing file, a corrupt download, a bad flag,
an unreadable image) is raised as one of these classes. The scripts in
``experiments/`` catch them and print a single line, ``error: <message>``,
then exit with the class's code; ``--debug`` shows the traceback instead.

Exit codes
----------
====  =====================  ===============================================
code  class                  meaning
====  =====================  ===============================================
1     (any other exception)  a bug in nncore: please report it
2     UsageError             a bad flag, option or hyperparameter
3     MissingInputError      a file or folder that should exist does not
4     CorruptInputError      a file exists but its content is wrong
5     OutputError            an output cannot be written (permissions, disk)
6     TrainingDivergedError  the loss became NaN or infinite
7     DeviceError            the GPU was asked for but cannot be used
8     PartialFailure         some inputs of a batch job failed (classify)
9     NoInkError             an expression picture holds no writing (solve)
10    LayoutError            more than one line of writing (solve)
11    BracketError           an unbalanced bracket (solve)
12    SyntaxExpressionError  two operators in a row, or another malformed expression (solve)
13    ZeroDivisionExpression division by zero (solve)
14    UnreadableSymbolError  a symbol the model cannot read confidently enough (solve)
15    NotSolvableError       a well-formed expression that has no single value (solve)
130   (KeyboardInterrupt)    interrupted by Ctrl-C; a checkpoint was saved
====  =====================  ===============================================
"""


class NncoreError(Exception):
    """Base class: a problem with the user's input, reported in one line."""

    exit_code = 1


class UsageError(NncoreError, ValueError):
    """An invalid argument, flag, option, shape or hyperparameter."""

    exit_code = 2


class SettingError(UsageError):
    """An invalid value of a named setting, e.g. a field of ``TrainConfig``.

    ``str(exc)`` is ``"<setting> <problem>"``, e.g. ``"batch_size must be >= 2 with
    BatchNorm, got 1; use a larger batch or batchnorm=False"``. Library messages name
    settings, never command-line flags; a script re-words them with its own flags
    (:meth:`nncore.cli.ArgumentParser.flag_errors`).
    """

    def __init__(self, setting, problem):
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")


class MissingInputError(NncoreError, FileNotFoundError):
    """A file or folder the user named (or nncore expects) is not there."""

    exit_code = 3


class CorruptInputError(NncoreError, ValueError):
    """A file is there but is not what it claims to be (truncated, bad checksum, ...)."""

    exit_code = 4


class OutputError(NncoreError, OSError):
    """An output file or folder cannot be written."""

    exit_code = 5


class TrainingDivergedError(NncoreError, FloatingPointError):
    """The training loss stopped being a finite number."""

    exit_code = 6


class DeviceError(NncoreError, RuntimeError):
    """A GPU was requested but CuPy or a CUDA device is not usable."""

    exit_code = 7


class PartialFailure(NncoreError):
    """A batch job finished, but some of its inputs failed."""

    exit_code = 8


class ExpressionError(NncoreError, ValueError):
    """An expression picture that cannot be read or solved (the subclasses say why)."""

    exit_code = 9


class NoInkError(ExpressionError):
    """The picture holds no writing."""

    exit_code = 9


class LayoutError(ExpressionError):
    """The writing is not one line."""

    exit_code = 10


class BracketError(ExpressionError):
    """Brackets that do not balance."""

    exit_code = 11


class SyntaxExpressionError(ExpressionError):
    """Two operators in a row, an operator at the end, or another malformed sequence."""

    exit_code = 12


class ZeroDivisionExpression(ExpressionError):
    """The expression divides by zero."""

    exit_code = 13


class UnreadableSymbolError(ExpressionError):
    """A symbol the model cannot read confidently enough."""

    exit_code = 14


class NotSolvableError(ExpressionError):
    """Well formed, but without one value: a variable without an equation, a non-linear equation..."""

    exit_code = 15
