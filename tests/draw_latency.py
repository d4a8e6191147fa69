"""Response times of the draw page's API, as the page meets them: one canvas PNG after another.

Usage::

    python tests/draw_latency.py --report [--count 200] [--clients 1] [--seed 0]

Starts the server of ``experiments/draw.py`` (nncore.web, shipped weights) on a free port in
this process, warms it up, then sends canvas-sized PNGs (encoded beforehand) and times each
request from sending to the last byte of the answer:

* ``classify digit`` / ``explain digit``: MNIST test digits drawn as a 320x320 canvas would
  hold them (black on white, the 28x28 digit enlarged 10x);
* ``classify symbol`` / ``explain symbol``: single symbols drawn by strokes (tests/strokes.py) at
  random sizes and places on a 320x320 canvas;
* ``solve``: expressions of 3-9 symbols drawn by strokes on a 960x320 canvas (only when this
  nncore has ``nncore.read_expression``).

With ``--clients N`` N threads send at once (each waits for its answer before the next request,
as the page does). Prints median, 95th percentile and maximum per endpoint. It uses whatever
``nncore`` is on PYTHONPATH, so the same command measures another checkout.
"""

import argparse
import http.client
import os
import sys
import threading
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strokes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYMBOLS = "0123456789+-=()/x*:"
EXPRESSIONS = ["1+2", "12+7=", "(9-8)/(7+5)", "2x+3=11", "8:4=", "3*(5-2)", "45-17=", "6/8", "(1+2)*3="]


def mnist_canvases(n, seed):
    """n MNIST test digits as 320x320 canvas PNGs (bytes)."""
    from nncore.data import read_idx
    x = read_idx(os.path.join(os.environ["NNCORE_DATA_DIR"], "mnist", "t10k-images-idx3-ubyte.gz"))
    out = []
    for i in np.random.default_rng(seed).choice(len(x), n, replace=False):
        canvas = Image.new("L", (320, 320), 255)
        canvas.paste(Image.fromarray(255 - x[i]).resize((280, 280), Image.Resampling.BILINEAR), (20, 20))
        out.append(strokes.png_bytes(canvas))
    return out


def symbol_canvases(n, seed):
    """n single symbols drawn by strokes, random size (90-230 px) and place, as 320x320 PNGs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ch = SYMBOLS[rng.integers(len(SYMBOLS))]
        size = int(rng.integers(90, 230))
        glyph = strokes.render(ch, (size + 40, size + 40), height=size)
        canvas = Image.new("L", (320, 320), 255)
        canvas.paste(glyph, (int(rng.integers(0, 320 - glyph.width + 1)), int(rng.integers(0, 320 - glyph.height + 1))))
        out.append(strokes.png_bytes(canvas))
    return out


def expression_canvases(n):
    """n expressions (cycling through EXPRESSIONS) drawn by strokes on 960x320 PNGs."""
    return [strokes.png_bytes(strokes.render(EXPRESSIONS[i % len(EXPRESSIONS)], (960, 320))) for i in range(n)]


def timed_requests(port, path, bodies, clients):
    """Seconds per request (list), and how many answers were not 200."""
    times, failed, lock = [], [0], threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def client(chunk):
        for body in chunk:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            start = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "image/png"})
            res = conn.getresponse()
            res.read()
            took = time.perf_counter() - start
            conn.close()
            with lock:
                times.append(took)
                failed[0] += res.status != 200

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, failed[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="print the table")
    ap.add_argument("--count", type=int, default=200, help="requests per endpoint")
    ap.add_argument("--clients", type=int, default=1, help="threads sending at once")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.report:
        ap.print_help()
        return

    import nncore
    from nncore.web import DrawApp, DrawServer, start_in_thread
    app = DrawApp(nncore.load_model(os.path.join(ROOT, "weights", "mnist_cnn.npz")),
                  nncore.load_model(os.path.join(ROOT, "weights", "symbols_cnn.npz")))
    app.warm_up()
    server = DrawServer(app, "127.0.0.1", 0, quiet=True)
    start_in_thread(server)
    port = server.server_address[1]
    digits, symbols = mnist_canvases(args.count, args.seed), symbol_canvases(args.count, args.seed)
    cases = [("classify digit", "/api/classify?mode=digit", digits),
             ("explain digit", "/api/explain?mode=digit", digits),
             ("classify symbol", "/api/classify?mode=symbol", symbols),
             ("explain symbol", "/api/explain?mode=symbol", symbols)]
    if app.expression_reader() is not None:
        cases.append(("solve", "/api/solve", expression_canvases(args.count)))
    print(f"draw page API, {args.count} requests per endpoint, {args.clients} client(s) at once, "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'endpoint':<18} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'not 200':>8}")
    try:
        for name, path, bodies in cases:
            timed_requests(port, path, bodies[:5], 1)  # the first answers of a path set up its caches
            times, failed = timed_requests(port, path, bodies, args.clients)
            ms = 1e3 * np.array(times)
            print(f"{name:<18} {np.median(ms):>10.1f} {np.percentile(ms, 95):>8.1f} {ms.max():>8.1f} {failed:>8}")
        if app.expression_reader() is None:
            print(f"{'solve':<18} {'(this nncore has no nncore.read_expression)':>36}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
