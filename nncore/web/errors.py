"""Errors of the draw page's JSON API: an HTTP status and one line for the person drawing."""

from ..errors import CorruptInputError, NncoreError, UsageError


class ApiError(Exception):
    """A request the API refuses: ``status`` (400, 404, 405, 411, 413, 415, 422...) and a one-line message.

    The server answers ``{"error": message, "status": status}`` with that HTTP status and keeps running.
    ``allow`` lists the methods a path accepts (sent as the ``Allow`` header of a 405).
    """

    def __init__(self, status, message, allow=None):
        super().__init__(message)
        self.status, self.message, self.allow = int(status), message, allow


def from_nncore(exc):
    """An :class:`~nncore.errors.NncoreError` raised while answering -> the ApiError to send.

    A picture nncore cannot read is 415 (Unsupported Media Type), a bad argument 400, and any
    other nncore error (no ink, an expression that cannot be read or solved) 422: the request
    was well formed, but what is drawn cannot be answered.
    """
    if isinstance(exc, CorruptInputError):
        return ApiError(415, str(exc))
    if isinstance(exc, UsageError):
        return ApiError(400, str(exc))
    if isinstance(exc, NncoreError):
        return ApiError(422, str(exc))
    raise TypeError(f"not an nncore error: {exc!r}")
