"""experiments/draw.py as a person runs it, and the latency report of tests/draw_latency.py."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import draw_latency  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "draw.py")


def run(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _ctrl_c_as_at_a_terminal():
    """In the child before it starts: SIGINT back to its default action. A shell starts a background
    job (``.ci/run ... &``) with SIGINT ignored, its children inherit that, and Python then leaves
    Ctrl-C ignored too (as it should for ``nohup draw.py &``): the server would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_draw_serves_on_loopback_prints_its_url_and_stops_on_ctrl_c():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, SCRIPT, "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"nncore draw page: (http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
                break
        assert url, proc.stderr.read()
        with urllib.request.urlopen(url + "api/info", timeout=30) as res:
            info = json.load(res)
        assert info["modes"]["digit"]["weights"] == "mnist_cnn.npz"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_one_line_and_exit_code_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run("--port", str(port))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: port {port} is in use; choose another with --port (0: any free port)"


@pytest.mark.parametrize("args, code, words", [
    (["--port", "70000"], 2, "--port must be at most 65535"),
    (["--port", "-1"], 2, "expected an integer >= 0"),
    (["--mode", "digit"], 2, "unrecognized arguments: --mode"),
    (["--digit-weights", "nowhere.npz"], 3, "nowhere.npz"),
])
def test_bad_flags_are_one_line_errors(args, code, words):
    res = run(*args)
    assert res.returncode == code
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_the_latency_report_times_every_endpoint(mnist_dir, capsys):
    draw_latency.main(["--report", "--count", "4"])
    out = capsys.readouterr().out
    for name in ("classify digit", "explain digit", "classify symbol", "explain symbol", "solve"):
        assert re.search(rf"^{name}\s", out, re.M), out
    rows = [line.split() for line in out.splitlines() if line.startswith(("classify", "explain"))]
    assert all(row[-1] == "0" for row in rows), out  # every answer was a 200
