"""Interrupted work: SIGKILL during a save, Ctrl-C (SIGINT) during training, interrupted downloads.

The training tests run ``experiments/train.py`` as a subprocess on a small MNIST subset. To kill a
process *while it is saving*, the child's ``os.fsync`` of a regular file is slowed down (the temporary
file is then complete on disk but not yet renamed over the target); the test polls for that temporary
file and sends SIGKILL the moment it appears. Afterwards every file must load, ``--resume`` must work
from what is left, and the final weights must equal those of an uninterrupted run with the same seed.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nncore
from nncore.data import mnist as mn
from nncore.errors import CorruptInputError, MissingInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
SMALL = ["--limit-train", "2000", "--limit-eval", "500", "--conv", "8", "--dense", "32", "--quiet", "--seed", "3"]

# Runs train.py with every fsync of a regular file delayed by $SLOW_SAVE seconds.
SLOW_WRAPPER = textwrap.dedent("""
    import os, runpy, stat, sys, time
    _fsync = os.fsync
    def slow_fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            time.sleep(float(os.environ["SLOW_SAVE"]))
        _fsync(fd)
    os.fsync = slow_fsync
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def start(args, cwd, data_dir, slow=None):
    env = dict(os.environ, NNCORE_DATA_DIR=data_dir)
    cmd = [sys.executable, TRAIN, *args]
    if slow is not None:
        env["SLOW_SAVE"] = str(slow)
        cmd = [sys.executable, "-c", SLOW_WRAPPER, TRAIN, *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc, timeout=120):
    """Poll every millisecond until predicate() is true; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) first: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.001)


def layers(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith("layers.")}


def same_weights(a, b):
    la, lb = layers(a), layers(b)
    return la.keys() == lb.keys() and all(np.array_equal(la[k], lb[k]) for k in la)


def checkpoint_epoch(path):
    _, header, _ = nncore.load_model(path, return_extra=True)
    return header["metadata"]["checkpoint"]["epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    """weights/ref.npz of an uninterrupted 3-epoch run."""
    cwd = tmp_path_factory.mktemp("straight")
    proc = start(SMALL + ["--epochs", "3", "--name", "ref"], str(cwd), data_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return cwd / "weights" / "ref.npz"


def test_sigkill_while_saving_keeps_the_last_good_files_and_resume_ends_like_a_straight_run(tmp_path, data_dir,
                                                                                             straight):
    cwd, ckpt, weights = str(tmp_path), tmp_path / "runs" / "k" / "checkpoint.npz", tmp_path / "weights" / "k.npz"
    # weights from an earlier run (any good file) must survive a kill during the save that replaces them
    weights.parent.mkdir()
    nncore.save_model(nncore.cnn(conv_channels=(8,), dense=(32,), seed=1), weights, metadata={"old": True})
    old_bytes = weights.read_bytes()

    # 1. kill during the second checkpoint save (end of epoch 2): the epoch-1 checkpoint must be intact
    proc = start(SMALL + ["--epochs", "3", "--name", "k"], cwd, data_dir, slow=0.5)
    wait_for(ckpt.is_file, proc)
    wait_for(lambda: glob.glob(str(ckpt.parent / ".checkpoint.npz.*.tmp")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint_epoch(ckpt) == 1
    assert weights.read_bytes() == old_bytes

    # 2. resume, and kill during the save of the final weights: old weights intact, checkpoint complete
    proc = start(["--resume", "--name", "k", "--quiet"], cwd, data_dir, slow=0.5)
    wait_for(lambda: glob.glob(str(weights.parent / ".k.npz.*.tmp")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert weights.read_bytes() == old_bytes
    assert nncore.load_model(weights).num_params() > 0
    assert checkpoint_epoch(ckpt) == 3

    # 3. resume once more: nothing left to train, the weights are written and equal a straight run's
    proc = start(["--resume", "--name", "k", "--quiet"], cwd, data_dir)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert same_weights(weights, straight)
    leftovers = [p for p in glob.glob(str(tmp_path / "**" / ".*"), recursive=True)]
    assert all(p.endswith(".tmp") for p in leftovers)  # only the killed writers' own temp files


def test_sigint_exits_130_with_a_loadable_checkpoint_and_resume_matches(tmp_path, data_dir, straight):
    cwd, ckpt = str(tmp_path), tmp_path / "runs" / "s" / "checkpoint.npz"
    proc = start(SMALL + ["--epochs", "3", "--name", "s"], cwd, data_dir)
    wait_for(ckpt.is_file, proc)  # end of epoch 1: the SIGINT lands in epoch 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "checkpoint saved" in err and "--resume" in err
    model, header, _ = nncore.load_model(ckpt, return_extra=True)
    assert header["metadata"]["checkpoint"]["epoch"] in (1, 2)
    proc = start(["--resume", "--name", "s", "--quiet"], cwd, data_dir)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert same_weights(tmp_path / "weights" / "s.npz", straight)


# -- downloads ------------------------------------------------------------------------------------------

NAME = "t10k-labels-idx1-ubyte.gz"


class DroppingResponse:
    """A response that sends some bytes and then fails like a dropped connection."""

    headers = {"Content-Length": "100000"}

    def __init__(self):
        self.sent = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n=-1):
        if self.sent >= 3000:
            raise ConnectionResetError(104, "Connection reset by peer")
        self.sent += 1000
        return b"\x1f\x8b" + b"x" * 998


def test_download_dropped_mid_stream_leaves_nothing_that_load_mnist_accepts(tmp_path):
    mnist = tmp_path / "mnist"
    with pytest.raises(MissingInputError, match="could not download"):
        mn.download_mnist(mnist, names=[NAME], mirrors=("https://a.example/",),
                          opener=lambda url, timeout=None: DroppingResponse(), progress=False)
    assert not (mnist / NAME).exists() and not glob.glob(str(mnist / "*"))
    with pytest.raises(MissingInputError):
        mn.load_mnist(tmp_path, download=False)


def test_a_partial_file_left_by_another_tool_is_refused(tmp_path, mnist_dir):
    """A truncated copy (e.g. an interrupted wget) is caught by the md5 check, never trained on."""
    (tmp_path / "mnist").mkdir()
    for name in mn.MNIST_FILES:
        src = os.path.join(mnist_dir, name)
        if name == NAME:
            (tmp_path / "mnist" / name).write_bytes(open(src, "rb").read()[:1000])
        else:
            os.symlink(src, tmp_path / "mnist" / name)
    with pytest.raises(CorruptInputError, match="md5"):
        mn.load_mnist(tmp_path, download=False)


def test_sigkill_during_a_download_leaves_no_file(tmp_path):
    """Kill a process in the middle of a (slow, fake) download: the target never exists."""
    script = textwrap.dedent(f"""
        import time
        from nncore.data import mnist as mn
        class Slow:
            headers = {{}}
            def __enter__(self): return self
            def __exit__(self, *a): return False
            def read(self, n=-1):
                print("reading", flush=True)
                time.sleep(0.05)
                return b"x" * 100
        mn.download_mnist({str(tmp_path)!r}, names=[{NAME!r}], mirrors=("https://a.example/",),
                          opener=lambda url, timeout=None: Slow(), progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        assert proc.stdout.readline().strip() == "reading"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.listdir(tmp_path) == []
    with pytest.raises(MissingInputError):
        mn.load_mnist(tmp_path, download=False)
