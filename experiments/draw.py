"""Draw and see: a web page where you draw and the network answers while you draw.

Usage::

    python experiments/draw.py                  # then open the printed URL
    python experiments/draw.py --port 8080 --digit-weights weights/mnist_cnn.npz
    python experiments/draw.py --host 0.0.0.0   # reachable from other machines (off by default)

Digit mode uses --digit-weights, symbol and expression modes --symbol-weights. The page
(nncore/web/static, served by this process: no CDN, works offline) shows the 28x28 input the
network sees, the top-3 probabilities, the saliency and every layer's feature maps; in
expression mode each symbol's box and label and the exact result. The JSON API behind it
(POST /api/classify, /api/explain, /api/solve with the canvas as PNG) is in the README.
The server writes nothing to disk. Ctrl-C stops it.
"""

import errno
import os
import sys

import nncore
from nncore.cli import ArgumentParser, compile_kernels, default_weights, nonnegative_int, positive_int, run_cli
from nncore.errors import UsageError
from nncore.web import DrawApp, DrawServer
from nncore.web.server import MAX_BODY

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digit-weights", default=default_weights("mnist_cnn.npz"),
                   help="weights file of digit mode")
    p.add_argument("--symbol-weights", default=default_weights("symbols_cnn.npz"),
                   help="weights file of symbol and expression modes")
    p.add_argument("--port", type=nonnegative_int, default=8000, help="TCP port (0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback lets other machines draw on your model")
    p.add_argument("--max-body", type=positive_int, default=MAX_BODY, help="largest request body in bytes")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr (default: errors only)")
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    if args.port > 65535:
        raise UsageError(f"--port must be at most 65535, got {args.port}")
    app = DrawApp(nncore.load_model(args.digit_weights), nncore.load_model(args.symbol_weights),
                  os.path.basename(args.digit_weights), os.path.basename(args.symbol_weights))
    try:
        server = DrawServer(app, args.host, args.port, max_body=args.max_body, verbose=args.verbose)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {args.port} is in use; choose another with --port (0: any free port)") from None
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                         f"check --host and --port") from None
    try:
        print("loading the models' kernels ...", flush=True)
        compile_kernels(*app.models.values(), training=True)     # the saliency maps run the backward pass
        app.warm_up()
        if args.host not in LOOPBACK:
            print(f"warning: listening on {args.host}: other machines can reach this page", file=sys.stderr)
        if not app.info()["expression_reader"]:
            print("note: this nncore has no nncore.read_expression yet: expression mode answers 501", file=sys.stderr)
        print(f"nncore draw page: {server.url}  (Ctrl-C to stop)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    run_cli(main)
