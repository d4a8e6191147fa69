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
