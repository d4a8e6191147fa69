"""The draw page's HTTP server: the standard library's ThreadingHTTPServer, no new dependency.

Routes (all JSON answers are UTF-8; errors are ``{"error": "<one line>", "status": <code>}``):

======  ======================  ===============================================================
GET     ``/``                   the page (``static/index.html``)
GET     ``/static/<file>``      its script and style sheet (served from this package: no CDN)
GET     ``/api/info``           each mode's weights, classes and layers (:meth:`DrawApp.info`)
POST    ``/api/classify``       ``?mode=digit|symbol``, body a PNG: the prediction
POST    ``/api/explain``        the same, plus saliency and feature maps
POST    ``/api/solve``          body a PNG of an expression: what ``nncore.read_expression`` reads
======  ======================  ===============================================================

A request is checked before its body is read: an unknown path is 404, a wrong method 405
(with ``Allow``), a body without Content-Length 411, one over ``max_body`` bytes 413, a
Content-Type other than image/png or image/jpeg 415. The server reads nothing from disk
but its own static files and writes nothing at all; an unexpected failure is a 500 for that
request only (logged on stderr), and the server keeps running.
"""

import json
import os
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import ApiError

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: the files the page is made of: URL path -> (file in STATIC_DIR, Content-Type)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/draw.js": ("draw.js", "text/javascript; charset=utf-8"),
    "/static/draw.css": ("draw.css", "text/css; charset=utf-8"),
}
API_GET = ("/api/info",)
API_POST = ("/api/classify", "/api/explain", "/api/solve")
#: the largest request body read, in bytes (a 2000x700 canvas PNG is well under 1 MB)
MAX_BODY = 8 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg")
#: the page may load only what this server sends (no CDN, no other site); images may be data: URLs
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")


class DrawRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request: routing, the checks before reading a body, and JSON answers."""

    server_version = "nncore-draw"
    timeout = 30  # seconds a client may stall mid-request before its connection is dropped

    # -- answers ---------------------------------------------------------------------
    def _send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, extra=()):
        body = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", extra)

    def _error(self, exc):
        extra = [("Allow", ", ".join(exc.allow))] if exc.allow else []
        if exc.status in (411, 413):  # the body was not read: this connection cannot carry another request
            self.close_connection = True
            extra.append(("Connection", "close"))
        self._json(exc.status, {"error": exc.message, "status": exc.status}, extra)

    def _answer(self, fn):
        try:
            fn()
        except ApiError as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # one bad request must not stop the server
            self.log_error("internal error on %s %s: %s: %s", self.command, self.path, type(exc).__name__, exc)
            self._error(ApiError(500, f"internal error ({type(exc).__name__}); the server keeps running"))

    # -- routing ---------------------------------------------------------------------
    def _route(self):
        """(path, query dict) of the request; ApiError 404 / 405 when nothing here answers it."""
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path in STATIC or path in API_GET:
            allow = ("GET", "HEAD")
        elif path in API_POST:
            allow = ("POST",)
        else:
            raise ApiError(404, f"no such page or API path: {path}; the API is {', '.join(API_GET + API_POST)}")
        if self.command not in allow:
            raise ApiError(405, f"{self.command} is not allowed on {path}; use {' or '.join(allow)}", allow=allow)
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
        except ValueError:
            raise ApiError(400, f"malformed query string {url.query!r}; use e.g. ?mode=digit") from None
        return path, query

    def _get(self):
        path, query = self._route()
        if path in STATIC:
            name, content_type = STATIC[path]
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                body = f.read()
            self._send(200, body, content_type, [("Content-Security-Policy", CSP)])
        else:
            self._json(200, self.server.app.info())

    def _read_body(self):
        """The request's body, after the checks that need only its headers."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "the request has no Content-Length; send the PNG as the body with its length")
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n < 0:
            raise ApiError(400, f"Content-Length must be a byte count, got {length!r}")
        if n > self.server.max_body:
            raise ApiError(413, f"the body is {n:,} bytes, over the limit of {self.server.max_body:,}; "
                                f"send a smaller canvas")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            self.close_connection = True  # the body stays unread
            raise ApiError(415, f"Content-Type must be image/png (or image/jpeg), got {kind or 'none'}; "
                                f"send the canvas as a PNG")
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            raise ApiError(400, f"the body ended after {len(body):,} of {n:,} bytes; send the whole PNG")
        return body

    def _post(self):
        path, query = self._route()
        allowed = {"/api/solve": ()}.get(path, ("mode",))
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            raise ApiError(400, f"unknown parameter {unknown[0]!r} for {path}"
                           + (f"; it takes {', '.join(allowed)}" if allowed else "; it takes none"))
        mode = query.get("mode", ["digit"])[-1]
        body = self._read_body()
        app = self.server.app
        if path == "/api/classify":
            answer = app.classify(mode, body)
        elif path == "/api/explain":
            answer = app.explain(mode, body)
        else:
            answer = app.solve(body)
        self._json(200, answer)

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self._answer(self._get)

    def do_HEAD(self):  # noqa: N802
        self._answer(self._get)

    def do_POST(self):  # noqa: N802
        self._answer(self._post)

    def _refuse(self):
        self._answer(self._route)  # no path here takes these methods: 405 (or 404)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def log_message(self, format, *args):  # noqa: A002 (the standard library's signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def log_error(self, format, *args):  # noqa: A002
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def log_request(self, code="-", size="-"):
        code = code.value if isinstance(code, HTTPStatus) else code
        if self.server.verbose or (str(code).isdigit() and int(code) >= 400 and not self.server.quiet):
            sys.stderr.write(f"{self.command} {self.path} -> {code}\n")


class DrawServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the :class:`~nncore.web.app.DrawApp` its handlers answer with."""

    daemon_threads = True

    def __init__(self, app, host="127.0.0.1", port=0, max_body=MAX_BODY, verbose=False, quiet=False):
        self.app, self.max_body, self.verbose, self.quiet = app, int(max_body), verbose, quiet
        super().__init__((host, port), DrawRequestHandler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def start_in_thread(server):
    """Serve ``server`` from a daemon thread (tests, measurements); returns the thread.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    thread = threading.Thread(target=server.serve_forever, name="nncore-draw", daemon=True)
    thread.start()
    return thread
