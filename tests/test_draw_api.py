"""The draw page's JSON API (nncore.web) against a real server on an ephemeral port, in a thread.

Every answer is checked against nncore itself: the served probabilities against
``predict_proba`` of a separately loaded model, the saliency against ``nncore.explain``,
the errors by their HTTP status and their one-line JSON message.
"""

import base64
import configparser
import dataclasses
import fnmatch
import http.client
import io
import json
import os
import socket
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import nncore
from nncore import explain
from nncore.errors import NncoreError
from nncore.web import DrawApp, DrawServer, start_in_thread
from nncore.web.server import STATIC, STATIC_DIR

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strokes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "weights", "mnist_cnn.npz")
SYMBOLS = os.path.join(ROOT, "weights", "symbols_cnn.npz")


def serve(app, **kwargs):
    server = DrawServer(app, "127.0.0.1", 0, quiet=True, **kwargs)
    start_in_thread(server)
    return server


@pytest.fixture(scope="module")
def server():
    app = DrawApp(nncore.load_model(DIGITS), nncore.load_model(SYMBOLS), "mnist_cnn.npz", "symbols_cnn.npz")
    server = serve(app)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, content_type="image/png", headers=None):
    """(status, headers, parsed JSON or raw bytes) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        hdrs = dict(headers or {})
        if body is not None and content_type:
            hdrs["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=hdrs)
        res = conn.getresponse()
        data = res.read()
        kind = res.getheader("Content-Type", "")
        return res.status, res, json.loads(data) if kind.startswith("application/json") else data
    finally:
        conn.close()


def raw(server, head):
    """Send raw request bytes (headers only) and return the status line and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# ----------------------------------------------------------------------------- what is served


def test_served_probabilities_equal_predict_proba_for_200_mnist_test_digits(server, mnist_test_digits):
    """The model answers through HTTP exactly as in Python: same input, same probabilities (1e-6)."""
    x, y = mnist_test_digits
    model = nncore.load_model(DIGITS)  # a model of its own, not the server's
    worst, right = 0.0, 0
    for digit, label in zip(x, y):
        png = strokes.png_bytes(digit)
        status, _, got = request(server, "POST", "/api/classify?mode=digit", png)
        assert status == 200, got
        expected_input = nncore.preprocess_image(Image.open(io.BytesIO(png)))
        np.testing.assert_array_equal(np.array(got["input"], dtype=np.uint8), expected_input)
        expected = model.predict_proba(expected_input[None])[0]
        worst = max(worst, float(np.abs(np.array(got["probabilities"]) - expected).max()))
        assert got["label"] == model.class_names[int(expected.argmax())]
        right += got["label"] == str(label)
    assert worst <= 1e-6, worst
    assert right >= 195, right  # the shipped weights: 99.5% on MNIST's test set


@pytest.mark.parametrize("mode, text, label", [("digit", "1", "1"), ("digit", "7", "7"), ("digit", "4", "4"),
                                              ("symbol", "+", "plus"), ("symbol", "(", "lparen")])
def test_a_drawing_on_the_canvas_is_recognised(server, mode, text, label):
    status, _, got = request(server, "POST", f"/api/classify?mode={mode}", strokes.png_bytes(strokes.render(text)))
    assert status == 200, got
    assert got["label"] == label
    assert got["mode"] == mode
    assert len(got["probabilities"]) == (10 if mode == "digit" else 20)
    assert abs(sum(got["probabilities"]) - 1) < 1e-5
    assert [t["label"] for t in got["top"]][0] == label and len(got["top"]) == 3
    assert got["weights"] == ("mnist_cnn.npz" if mode == "digit" else "symbols_cnn.npz")


def test_explain_serves_the_saliency_and_every_layers_feature_maps(server):
    png = strokes.png_bytes(strokes.render("7"))
    status, _, got = request(server, "POST", "/api/explain?mode=digit", png)
    assert status == 200, got
    model = nncore.load_model(DIGITS)
    x = np.array(got["input"], dtype=np.uint8)
    grad, k = explain.saliency(model, x)
    sal = grad.sum(axis=0)
    assert got["label"] == "7" and got["saliency"]["class"] == k == 7
    assert got["saliency"]["scale"] == pytest.approx(float(np.abs(sal).max()), rel=1e-5)
    values = np.array(got["saliency"]["values"])
    assert values.shape == (28, 28) and np.abs(values).max() == pytest.approx(1.0)
    np.testing.assert_allclose(values, sal / np.abs(sal).max(), atol=1e-4)
    acts = {name: a for name, a in explain.activations(model, x)}
    names = [layer["name"] for layer in got["layers"]]
    # every layer but the plain copies (Flatten, Dropout) and the logits, in order
    assert names == [n for n in list(acts)[1:-1] if n.split(":")[1] not in ("Flatten", "Dropout")]
    for layer in got["layers"]:
        a = acts[layer["name"]]
        assert layer["shape"] == list(a.shape)
        assert layer["min"] == pytest.approx(float(a.min()), abs=1e-5)
        assert layer["max"] == pytest.approx(float(a.max()), abs=1e-5)
        assert layer["colours"] == ("RdBu_r" if a.min() < 0 else "magma")
        png = Image.open(io.BytesIO(base64.b64decode(layer["grid"].split(",", 1)[1])))
        h, w = layer["tile"]
        assert png.size == (layer["columns"] * (w + 1) - 1, layer["rows"] * (h + 1) - 1)
        if a.ndim == 3:
            assert layer["rows"] * layer["columns"] >= a.shape[0] > (layer["rows"] - 1) * layer["columns"]
    relu = next(layer for layer in got["layers"] if layer["name"].endswith("ReLU"))
    assert relu["colours"] == "magma" and relu["min"] >= 0


def test_info_lists_each_modes_weights_and_classes(server):
    status, _, got = request(server, "GET", "/api/info")
    assert status == 200
    assert got["modes"]["digit"]["classes"] == [str(i) for i in range(10)]
    assert got["modes"]["expression"]["weights"] == got["modes"]["symbol"]["weights"] == "symbols_cnn.npz"
    assert "×" in got["modes"]["symbol"]["symbols"]
    assert got["expression_reader"] == hasattr(nncore, "read_expression")


def test_concurrent_requests_share_the_models_safely(server):
    """Eight threads at once get the answers one thread gets (the models are used under one lock)."""
    texts = ["1", "7", "4", "2"] * 2
    alone = [request(server, "POST", "/api/explain?mode=digit", strokes.png_bytes(strokes.render(t)))[2]
             for t in texts]
    together = [None] * len(texts)

    def ask(i):
        together[i] = request(server, "POST", "/api/explain?mode=digit", strokes.png_bytes(strokes.render(texts[i])))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, (status, _, b) in zip(alone, together):
        assert status == 200
        assert a["probabilities"] == b["probabilities"] and a["saliency"] == b["saliency"]


# ----------------------------------------------------------------------------- bad requests


def _png_of_size(w, h):
    buf = io.BytesIO()
    Image.new("1", (w, h), 1).save(buf, format="PNG")  # a few kB that decode to w*h pixels
    return buf.getvalue()


BLANK = strokes.png_bytes(Image.new("L", (320, 320), 255))
SEVEN = strokes.png_bytes(strokes.render("7"))


@pytest.mark.parametrize("method, path, body, content_type, status, words", [
    ("POST", "/api/classify?mode=digit", b"this is not a picture", "image/png", 415, "not a PNG image"),
    ("POST", "/api/classify?mode=digit", SEVEN[: len(SEVEN) // 2], "image/png", 415, "cannot be decoded"),
    ("POST", "/api/classify?mode=digit", SEVEN, "text/plain", 415, "Content-Type must be image/png"),
    ("POST", "/api/classify?mode=digit", BLANK, "image/png", 422, "no ink found"),
    ("POST", "/api/explain?mode=symbol", BLANK, "image/png", 422, "no ink found"),
    ("POST", "/api/classify?mode=digit", b"", "image/png", 400, "body is empty"),
    ("POST", "/api/classify?mode=digit", _png_of_size(5000, 4000), "image/png", 413, "5000x4000"),
    ("POST", "/api/classify?mode=letters", SEVEN, "image/png", 400, "unknown mode 'letters'"),
    ("POST", "/api/explain?mode=expression", SEVEN, "image/png", 400, "POST /api/solve"),
    ("POST", "/api/classify?mode=digit&size=9", SEVEN, "image/png", 400, "unknown parameter 'size'"),
    ("POST", "/api/solve?mode=digit", SEVEN, "image/png", 400, "unknown parameter 'mode'"),
    ("GET", "/api/nothing", None, None, 404, "no such page"),
    ("GET", "/static/../app.py", None, None, 404, "no such page"),
    ("POST", "/index.html", SEVEN, "image/png", 404, "no such page"),
    ("GET", "/api/classify", None, None, 405, "use POST"),
    ("PUT", "/api/explain", SEVEN, "image/png", 405, "use POST"),
    ("POST", "/", SEVEN, "image/png", 405, "use GET"),
    ("DELETE", "/api/info", None, None, 405, "use GET"),
])
def test_bad_requests_get_a_json_error_with_the_right_status(server, method, path, body, content_type, status,
                                                             words):
    got_status, res, got = request(server, method, path, body, content_type)
    assert got_status == status
    assert got == {"error": got["error"], "status": status}
    assert words in got["error"] and "\n" not in got["error"]
    if status == 405:
        assert set(res.getheader("Allow").split(", ")) in ({"POST"}, {"GET", "HEAD"})
    # and the server keeps answering
    assert request(server, "POST", "/api/classify?mode=digit", SEVEN)[2]["label"] == "7"


def test_an_oversized_body_is_refused_by_its_content_length_before_it_is_read(server):
    """The server answers 413 from the headers alone: the 100 MB announced are never sent (a server that
    tried to read them would wait for them and this socket would time out)."""
    status, got = raw(server, b"POST /api/classify?mode=digit HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                              b"Content-Length: 100000000\r\n\r\n")
    assert status == 413 and "100,000,000 bytes" in got["error"]
    status, got = raw(server, b"POST /api/solve HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n")
    assert status == 411 and "Content-Length" in got["error"]
    status, got = raw(server, b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                              b"Content-Length: -5\r\n\r\n")
    assert status == 400
    assert request(server, "POST", "/api/classify?mode=digit", SEVEN)[2]["label"] == "7"


def test_the_body_limit_is_a_setting():
    app = DrawApp(nncore.load_model(DIGITS), nncore.load_model(SYMBOLS))
    small = serve(app, max_body=1000)
    try:
        status, _, got = request(small, "POST", "/api/classify?mode=digit", SEVEN)
        assert len(SEVEN) > 1000 and status == 413 and "1,000" in got["error"]
    finally:
        small.shutdown()
        small.server_close()


def test_answering_writes_nothing_to_disk(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("/api/classify?mode=digit", "/api/explain?mode=symbol", "/api/solve"):
        request(server, "POST", path, SEVEN)
    request(server, "POST", "/api/classify", b"junk")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- the page itself


def test_the_page_and_its_files_are_served_locally(server):
    status, res, html = request(server, "GET", "/")
    assert status == 200 and res.getheader("Content-Type").startswith("text/html")
    assert "default-src 'self'" in res.getheader("Content-Security-Policy")
    html = html.decode("utf-8")
    for path, (_, kind) in STATIC.items():
        status, res, body = request(server, "GET", path)
        assert status == 200 and res.getheader("Content-Type") == kind
        text = body.decode("utf-8")
        # nothing from another site: no absolute URLs, no protocol-relative ones, no @import
        assert "http://" not in text and "https://" not in text and "@import" not in text
        assert 'src="//' not in text and 'href="//' not in text
        if path != "/":
            assert f'"{path}"' in html  # the page loads it
    status, res, body = request(server, "HEAD", "/static/draw.js")
    assert status == 200 and body == b"" and int(res.getheader("Content-Length")) > 1000


def test_the_static_files_ship_with_the_package():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = [p.strip() for p in cfg["options.package_data"]["nncore.web"].split(",")]
    for name in os.listdir(STATIC_DIR):
        assert any(fnmatch.fnmatch(f"static/{name}", p) for p in patterns), name
    assert {name for name, _ in STATIC.values()} <= set(os.listdir(STATIC_DIR))


# ----------------------------------------------------------------------------- expressions


@dataclasses.dataclass
class _Symbol:
    label: str
    box: tuple
    confidence: float
    top: list


@dataclasses.dataclass
class _Reading:
    expression: str
    written: str
    value: str
    decimal: float
    confidence: float
    symbols: list
    warnings: list


def test_solve_serves_the_readers_dataclass_as_json():
    """The endpoint's plumbing with a stand-in reader: the reader gets the decoded picture and the
    symbols model, its dataclass comes back field by field, its errors as 422 with their message."""
    calls = []

    def reader(image, model=None):
        calls.append((image.size, model))
        if image.size == (10, 10):
            raise NncoreError("division by zero in 1÷0; check the divisor")
        return _Reading("1/3", "1÷3", "1/3", np.float64(1 / 3), np.float32(0.96),
                        [_Symbol("1", (5, 6, 20, 60), 0.99, [{"label": "1", "confidence": 0.99}])], [])

    symbols = nncore.load_model(SYMBOLS)
    server = serve(DrawApp(nncore.load_model(DIGITS), symbols, "d.npz", "s.npz", reader=reader))
    try:
        status, _, got = request(server, "POST", "/api/solve", strokes.png_bytes(strokes.render("1", (96, 64))))
        assert status == 200
        assert got["value"] == "1/3" and got["written"] == "1÷3" and got["decimal"] == pytest.approx(1 / 3)
        assert got["symbols"] == [{"label": "1", "box": [5, 6, 20, 60], "confidence": 0.99,
                                   "top": [{"label": "1", "confidence": 0.99}]}]
        assert (got["width"], got["height"], got["mode"], got["weights"]) == (96, 64, "expression", "s.npz")
        assert calls[0] == ((96, 64), symbols)
        status, _, got = request(server, "POST", "/api/solve", strokes.png_bytes(np.zeros((10, 10), np.uint8)))
        assert status == 422 and got["error"] == "division by zero in 1÷0; check the divisor"
        status, _, got = request(server, "POST", "/api/solve", b"GIF89a....")
        assert status == 415 and len(calls) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_solve_without_a_reader_says_so(monkeypatch):
    monkeypatch.delattr(nncore, "read_expression", raising=False)
    server = serve(DrawApp(nncore.load_model(DIGITS), nncore.load_model(SYMBOLS)))
    try:
        status, _, got = request(server, "POST", "/api/solve", SEVEN)
        assert status == 501 and "read_expression" in got["error"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("text, value", [("1+2", "3"), ("12+7=", "19"), ("(9-8)", "1")])
def test_solve_reads_a_drawn_expression(server, text, value):
    png = strokes.png_bytes(strokes.render(text, (960, 320)))
    status, _, got = request(server, "POST", "/api/solve", png)
    assert status == 200, got
    assert got["value"] == value
    assert got["expression"] == text
    assert len(got["symbols"]) == len(text)
    x0s = [s["box"][0] for s in got["symbols"]]
    assert x0s == sorted(x0s) and all(0 <= s["box"][0] < s["box"][2] <= 960 for s in got["symbols"])
    assert (got["width"], got["height"]) == (960, 320)


def test_solve_refuses_an_empty_canvas_with_422(server):
    status, _, got = request(server, "POST", "/api/solve", strokes.png_bytes(Image.new("L", (960, 320), 255)))
    assert status == 422 and got["error"]
