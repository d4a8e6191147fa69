"""experiments/train.py, evaluate.py and classify.py run as users run them (subprocesses, real MNIST)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nncore
from nncore.architectures import MNIST_SCALING

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"
# A small, fast model: 6000 training images, 2 epochs. Measured ~96% test accuracy; chance is 10%.
SMALL = ["--limit-train", "6000", "--limit-eval", "2000", "--epochs", "2", "--conv", "16,32", "--dense", "64",
         "--lr", "3e-3", "--batch-size", "64", "--no-augment", "--quiet", "--name", "small"]
MIN_TEST_ACCURACY = 0.90


def script(name, *args, cwd, data_dir=None, timeout=300):
    env = dict(os.environ)
    env.pop("NNCORE_DATA_DIR", None)
    if data_dir:
        env["NNCORE_DATA_DIR"] = data_dir
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, data_dir):
    """Working folder of one short real training run (weights/small.npz, runs/small/)."""
    cwd = tmp_path_factory.mktemp("train")
    proc = script("train", *SMALL, cwd=str(cwd), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    (cwd / "train_stdout.txt").write_text(proc.stdout)
    return cwd


@pytest.fixture(scope="session")
def weights(run_dir):
    return str(run_dir / "weights" / "small.npz")


# -- train.py ----------------------------------------------------------------------

def test_short_mnist_run_is_accurate_and_complete(run_dir, weights):
    header = nncore.read_header(weights)
    meta = header["metadata"]
    assert meta["test_accuracy"] >= MIN_TEST_ACCURACY, meta["test_accuracy"]
    assert meta["test_images"] == 2000 and meta["train_images"] == 6000 and meta["epochs"] == 2
    for key in ("dataset", "val_accuracy", "command", "wall_time_s", "date", "nncore_version", "hyperparameters"):
        assert key in meta
    assert "--limit-train 6000" in meta["command"]
    assert header["class_names"] == [str(i) for i in range(10)] and header["symbols"] == header["class_names"]
    assert header["input_scaling"] == MNIST_SCALING
    out = run_dir / "runs" / "small"
    for name in ("history.json", "history.csv", "curves.png", "filters.png", "checkpoint.npz"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == PNG
    with Image.open(out / "filters.png") as filters:                 # the first layer's 16 filters, 8 per row
        assert filters.format == "PNG" and filters.size == (1000, 300)
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    stdout = (run_dir / "train_stdout.txt").read_text()
    assert "test accuracy" in stdout and "weights/small.npz" in stdout
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.parametrize("flags", [["--lr", "-0.1"], ["--batch-size", "0"], ["--optimizer", "rmsprop"],
                                   ["--conv", "32,x"], ["--dense", "0,-4"], ["--epochs", "abc"], ["--schedule", "poly"],
                                   ["--no-such-flag"], ["--threads", "0"], ["--dataset", "nope"],
                                   ["--momentum", "0.5"], ["--warmup", "0.5", "--schedule", "step"],
                                   ["--val-size", "100", "--dataset", "symbols"]])
def test_bad_flags_exit_2_with_one_line(tmp_path, flags):
    """Bad values, and flags that would have no effect (--momentum with Adam, --warmup without the cosine
    schedule, --val-size for a dataset with its own split), are refused before any work."""
    one_line_error(script("train", *flags, cwd=str(tmp_path)), 2)


def test_huge_learning_rate_exits_6(tmp_path, data_dir):
    proc = script("train", "--limit-train", "512", "--limit-eval", "100", "--epochs", "1", "--optimizer", "sgd",
                  "--lr", "1e8", "--quiet", cwd=str(tmp_path), data_dir=data_dir)
    line = one_line_error(proc, 6)
    assert "diverged" in line and "lower learning rate" in line
    assert not (tmp_path / "weights").exists()


def test_gpu_request_without_a_gpu_exits_7(tmp_path):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed; the GPU path is tested elsewhere")
    line = one_line_error(script("train", "--device", "gpu", cwd=str(tmp_path)), 7)
    assert "CuPy" in line


def test_cli_resume_matches_a_straight_run(tmp_path, data_dir):
    tiny = ["--limit-train", "300", "--limit-eval", "100", "--conv", "4,8", "--dense", "16", "--batch-size", "50",
            "--schedule", "constant", "--quiet", "--seed", "5"]
    a = script("train", *tiny, "--epochs", "2", "--name", "a", cwd=str(tmp_path), data_dir=data_dir)
    assert a.returncode == 0, a.stderr
    b1 = script("train", *tiny, "--epochs", "1", "--name", "b", cwd=str(tmp_path), data_dir=data_dir)
    assert b1.returncode == 0, b1.stderr
    # a setting that differs from the checkpoint's is refused, not ignored; the original flags may repeat
    changed = script("train", *tiny, "--resume", "--epochs", "2", "--name", "b", "--conv", "4,4", cwd=str(tmp_path),
                     data_dir=data_dir)
    line = one_line_error(changed, 2)
    assert "--conv 4,4" in line and "checkpoint's --conv 4,8" in line
    b2 = script("train", *tiny, "--resume", "--epochs", "2", "--name", "b", cwd=str(tmp_path), data_dir=data_dir)
    assert b2.returncode == 0, b2.stderr
    wa = np.load(tmp_path / "weights" / "a.npz")
    wb = np.load(tmp_path / "weights" / "b.npz")
    layers = [k for k in wa.files if k.startswith("layers.")]
    assert layers and all(np.array_equal(wa[k], wb[k]) for k in layers)
    assert nncore.read_header(str(tmp_path / "weights" / "b.npz"))["metadata"]["epochs"] == 2


def test_resume_without_checkpoint_exits_3(tmp_path):
    line = one_line_error(script("train", "--resume", "--name", "none", cwd=str(tmp_path)), 3)
    assert "checkpoint" in line


# -- evaluate.py --------------------------------------------------------------------

def test_evaluate_writes_pngs_and_json(tmp_path, weights, data_dir):
    out = tmp_path / "eval"
    proc = script("evaluate", "--weights", weights, "--limit", "1000", "--out-dir", str(out), "--json",
                  "--merge", "4,9", cwd=str(tmp_path), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 1000 and summary["accuracy"] >= MIN_TEST_ACCURACY
    assert len(summary["per_class"]) == 10
    row = summary["per_class"][0]
    assert {"class", "symbol", "support", "precision", "recall", "accuracy"} <= set(row)
    assert sum(r["support"] for r in summary["per_class"]) == 1000
    assert np.asarray(summary["confusion_matrix"]).sum() == 1000
    for name in ("confusion.png", "misclassified.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert json.loads((out / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    cm = np.asarray(summary["confusion_matrix"])
    merged = (np.trace(cm) + cm[4, 9] + cm[9, 4]) / cm.sum()
    assert summary["merged"] == [{"classes": ["4", "9"], "accuracy": pytest.approx(merged, abs=1e-6)}]
    top = summary["top_confusions"][0]
    off = cm - np.diag(np.diag(cm))
    assert top["count"] == off.max() and cm[summary["class_names"].index(top["true"]),
                                              summary["class_names"].index(top["predicted"])] == off.max()
    table = script("evaluate", "--weights", weights, "--limit", "300", "--out-dir", str(out),
                   cwd=str(tmp_path), data_dir=data_dir)
    assert table.returncode == 0 and "precision" in table.stdout and "recall" in table.stdout


def test_evaluate_unknown_merge_class_exits_2(tmp_path, weights, data_dir):
    line = one_line_error(script("evaluate", "--weights", weights, "--limit", "10", "--merge", "4,nine",
                                 "--out-dir", str(tmp_path / "e"), cwd=str(tmp_path), data_dir=data_dir), 2)
    assert "nine" in line and "--merge" in line


def test_evaluate_missing_weights_exits_3(tmp_path):
    one_line_error(script("evaluate", "--weights", str(tmp_path / "nope.npz"), cwd=str(tmp_path)), 3)


# -- classify.py --------------------------------------------------------------------

@pytest.fixture(scope="session")
def digit_pngs(tmp_path_factory, mnist_dir):
    """60 MNIST test digits saved as PNGs at other sizes (56x56; 100x80 padded) in both polarities.

    Returns (folder, {file name: label}).
    """
    from nncore.data.mnist import read_idx
    x = read_idx(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"))[5000:5060]
    y = read_idx(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz"))[5000:5060]
    folder = tmp_path_factory.mktemp("digits")
    labels = {}
    for i, (img, label) in enumerate(zip(x, y)):
        pic = Image.fromarray(img)
        if i % 2:
            pic = pic.resize((56, 56), Image.Resampling.BILINEAR)
        else:
            canvas = Image.new("L", (100, 80), 0)
            canvas.paste(pic.resize((60, 60), Image.Resampling.BICUBIC), (25, 12))
            pic = canvas
        if (i // 2) % 2:
            pic = Image.fromarray(255 - np.asarray(pic))  # black ink on white paper
        name = f"digit_{i:02d}.png"
        pic.save(folder / name)
        labels[name] = str(int(label))
    return folder, labels


def test_classify_resized_digits_in_both_polarities(tmp_path, weights, digit_pngs):
    folder, labels = digit_pngs
    proc = script("classify", str(folder), "--weights", weights, "--json", "--top", "3", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == len(labels)
    for r in rows:
        assert {"file", "label", "symbol", "confidence", "top"} <= set(r) and len(r["top"]) == 3
        assert r["top"][0]["label"] == r["label"] and 0 <= r["confidence"] <= 1
    right = sum(r["label"] == labels[os.path.basename(r["file"])] for r in rows)
    assert right >= 0.9 * len(rows), f"{right}/{len(rows)}"


def test_classify_reports_unreadable_files_and_exits_8(tmp_path, weights, digit_pngs):
    folder, labels = digit_pngs
    good = [str(folder / n) for n in sorted(labels)[:3]]
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not a PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((folder / sorted(labels)[0]).read_bytes()[:60])
    missing = str(tmp_path / "missing.png")
    proc = script("classify", good[0], str(bad), good[1], str(truncated), missing, good[2], "--weights", weights,
                  cwd=str(tmp_path))
    assert proc.returncode == 8, proc.stderr
    out = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in out] == good
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    for path in (str(bad), str(truncated), missing):
        assert sum(path in line for line in err) == 1, proc.stderr
    assert len(err) == 4 and "3 of 6" in err[-1]


def test_classify_bad_flags_and_empty_folder(tmp_path, weights):
    one_line_error(script("classify", "x.png", "--top", "0", cwd=str(tmp_path)), 2)
    (tmp_path / "empty").mkdir()
    one_line_error(script("classify", str(tmp_path / "empty"), "--weights", weights, cwd=str(tmp_path)), 3)


def test_default_weights_are_the_users_then_the_shipped_then_the_usual_name(tmp_path, monkeypatch):
    from nncore.cli import default_weights
    monkeypatch.chdir(tmp_path)
    assert default_weights("mnist_cnn.npz") == os.path.join(ROOT, "weights", "mnist_cnn.npz")
    assert default_weights("nothing_shipped.npz") == os.path.join("weights", "nothing_shipped.npz")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mnist_cnn.npz").write_bytes(b"")
    assert default_weights("mnist_cnn.npz") == os.path.join("weights", "mnist_cnn.npz")


def test_classify_from_another_folder_finds_the_shipped_weights_and_prefers_the_users(tmp_path, digit_pngs):
    """Run from a folder without weights/, classify.py uses the checkout's shipped MNIST file (it says so
    in its output: the classes are the digits and the answers right); a weights/mnist_cnn.npz in the
    working folder (what train.py writes there) is used instead when there is one."""
    folder, labels = digit_pngs
    names = sorted(labels)[:6]
    proc = script("classify", *[str(folder / n) for n in names], "--json", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum(r["label"] == labels[os.path.basename(r["file"])] for r in rows) >= 5
    own = tmp_path / "weights"
    own.mkdir()
    (own / "mnist_cnn.npz").write_bytes(b"not the shipped file")     # the user's file comes first, even a bad one
    line = one_line_error(script("classify", str(folder / names[0]), cwd=str(tmp_path)), 4)
    assert os.path.join("weights", "mnist_cnn.npz") in line and ROOT not in line
