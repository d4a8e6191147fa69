"""The draw-and-see page: draw a digit, a symbol or an expression and watch the network answer.

``python experiments/draw.py`` starts it. The parts, one concept per file:

==================  ===========================================================================
:mod:`.app`         :class:`DrawApp`: the models behind one lock, and the API's answers as dicts
:mod:`.server`      :class:`DrawServer`: routing, the checks before a body is read, JSON errors
:mod:`.images`      the canvas PNG decoded in memory; feature maps tiled into PNG grids
:mod:`.errors`      :class:`ApiError`: an HTTP status and one line
``static/``         the page: ``index.html``, ``draw.js``, ``draw.css`` (no external resources)
==================  ===========================================================================

Usage from Python (a server on an ephemeral port, as the tests run it)::

    app = DrawApp(nncore.load_model("weights/mnist_cnn.npz"), nncore.load_model("weights/symbols_cnn.npz"))
    server = DrawServer(app, "127.0.0.1", 0)
    start_in_thread(server)           # server.url -> "http://127.0.0.1:<port>/"
    ...
    server.shutdown(); server.server_close()
"""

from .app import DrawApp
from .errors import ApiError
from .server import DrawServer, start_in_thread

__all__ = ["ApiError", "DrawApp", "DrawServer", "start_in_thread"]
