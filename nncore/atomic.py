"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The recipe: write to a temporary file in the same folder, flush it to disk
with ``fsync``, then ``os.replace`` it over the target. ``os.replace`` is an
atomic rename on POSIX and Windows, so a crash, a SIGKILL or a full disk at
any moment leaves the previous file intact. Every file nncore writes (weights,
checkpoints, datasets, downloads) goes through :func:`atomic_write`.
"""

import contextlib
import errno
import os
import tempfile

from .errors import OutputError


def _output_error(path, exc):
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free some space or choose another folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the folder is not writable; choose another output path"
    elif exc.errno == errno.EISDIR:
        hint = "that path is a folder; give a file name"
    else:
        hint = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {hint}")


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file that replaces ``path`` only if the block succeeds.

    Usage::

        with atomic_write("weights/mnist.npz") as f:
            np.savez(f, **arrays)

    The parent folder is created if needed. On any exception (including
    KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    OS errors (permissions, full disk, read-only file system) are re-raised as
    :class:`~nncore.errors.OutputError` with a one-line explanation.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: that path is a folder; give a file name")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _output_error(path, exc) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _output_error(path, exc) from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def check_writable(path, hint=""):
    """Fail early, before minutes of work, when the file ``path`` could not be written.

    Raises OutputError when ``path`` is a folder or its nearest existing parent
    is not a writable folder; ``hint`` is appended to the message (e.g. which flag to change).
    """
    path = os.path.abspath(os.fspath(path))
    suffix = f"; {hint}" if hint else ""
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: that path is a folder; give a file name{suffix}")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not a writable folder{suffix}")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
