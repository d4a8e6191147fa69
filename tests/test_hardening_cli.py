"""Every script flag and input file, bad on purpose, run as users run it (a subprocess, no --debug).

Each case must end with exactly one stderr line ``error: ...``, the documented exit code
(see nncore/errors.py and HARDENING.md) and no traceback, and must leave no temporary file.
"""

import gzip
import importlib.util
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import nncore
from nncore.data import save_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--limit-train", "200", "--limit-eval", "50", "--epochs", "1", "--conv", "4", "--dense", "8", "--quiet",
        "--batch-size", "50", "--weights-dir", "w", "--out-dir", "r"]
NO_CUPY = importlib.util.find_spec("cupy") is None


def run(name, *args, cwd, env=None, stdout=subprocess.PIPE, timeout=120):
    e = dict(os.environ)
    e.pop("NNCORE_DATA_DIR", None)
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"), *map(str, args)],
                          cwd=cwd, env=e, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout)


def check_error(proc, code, words, cwd=None):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert words.lower() in lines[0].lower(), lines[0]
    if cwd is not None:
        assert not [f for _, _, fs in os.walk(cwd) for f in fs if f.endswith(".tmp")]
    return lines[0]


def png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Bad input files of every kind, made once."""
    d = tmp_path_factory.mktemp("fx")
    nncore.save_model(nncore.ref_cnn(seed=0), d / "good.npz", metadata={"dataset": "mnist"})
    good = (d / "good.npz").read_bytes()
    (d / "empty.npz").write_bytes(b"")
    (d / "text.npz").write_text("these are not weights\n")
    (d / "trunc.npz").write_bytes(good[: len(good) // 2])
    (d / "folder.npz").mkdir()
    np.savez(d / "other.npz", a=np.arange(3))
    np.savez(d / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    three = nncore.cnn(conv_channels=(4,), dense=(), num_classes=3, class_names=["a", "b", "c"], seed=0)
    nncore.save_model(three, d / "three.npz")
    mixed = {k: v for k, v in np.load(d / "three.npz").items() if k.startswith("layers.")}
    mixed["__nncore__"] = np.load(d / "good.npz")["__nncore__"]
    np.savez(d / "mixed.npz", **mixed)  # ref_cnn's header over another architecture's arrays
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20) % 3
    save_dataset(d / "abc.npz", x, y, x[:6], y[:6], x[:6], y[:6], ["a", "b", "c"])
    bad = dict(np.load(d / "abc.npz"))
    bad["y_test"] = bad["y_test"] + 7
    np.savez(d / "badlabels.npz", **bad)
    bad = dict(np.load(d / "abc.npz"))
    bad["y_train"] = bad["y_train"].astype(np.float64)
    np.savez(d / "floatlabels.npz", **bad)
    bad = dict(np.load(d / "abc.npz"))
    bad["meta"] = np.array("[1, 2]")
    np.savez(d / "metalist.npz", **bad)
    (d / "afile").write_text("x")
    (d / "noimages").mkdir()
    (d / "noimages" / "notes.txt").write_text("x")
    (d / "zero.png").write_bytes(b"")
    (d / "huge.png").write_bytes(png_header(100_000, 100_000))
    (d / "text.png").write_text("not an image")
    from PIL import Image, ImageDraw
    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(30, 25), (90, 25), (55, 100)], fill=0, width=10)
    img.save(d / "seven.png")
    ck = d / "ckpt_is_weights"
    ck.mkdir()
    (ck / "checkpoint.npz").write_bytes(good)
    return d


@pytest.fixture(scope="module")
def bad_mnist(tmp_path_factory, mnist_dir):
    """Copies of the data root, each with one damaged MNIST file (the other three are symlinks)."""
    src = os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz")
    raw = gzip.decompress(open(src, "rb").read())
    variants = {
        "truncated": open(src, "rb").read()[:3000],
        "wrong_magic": gzip.compress(b"\0\0\x09\x99" + raw[4:]),
        "one_label_changed": gzip.compress(raw[:8] + bytes([(raw[8] + 1) % 10]) + raw[9:]),
    }
    roots = {}
    for kind, data in variants.items():
        root = tmp_path_factory.mktemp(kind)
        (root / "mnist").mkdir()
        for name in os.listdir(mnist_dir):
            if name.endswith(".gz") and name != "t10k-labels-idx1-ubyte.gz":
                os.symlink(os.path.join(mnist_dir, name), root / "mnist" / name)
        (root / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(data)
        roots[kind] = str(root)
    return roots


# -- hyperparameters and flags (no data needed: refused before loading) ------------------------------

# The library names settings (lr, batch_size); train.py words them as its flags (--lr, --batch-size).
@pytest.mark.parametrize("flags, words", [
    (["--lr", "-1"], "--lr must be a positive"), (["--lr", "nan"], "--lr must be a positive"),
    (["--lr", "abc"], "invalid float"), (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--batch-size", "1"], "BatchNorm"), (["--optimizer", "rmsprop"], "--optimizer must be sgd or adam"),
    (["--conv", "0"], "--conv"), (["--conv", "abc"], "--conv"), (["--conv", "8,8,8,8,8"], "at most 4"),
    (["--dense", "-1"], "--dense"), (["--dropout", "1.5"], "dropout"), (["--epochs", "0"], "epochs"),
    (["--kernel-size", "2"], "--kernel-size must be an odd number"),
    (["--kernel-size", "99"], "--kernel-size must be an odd number"), (["--momentum", "1.5"], "momentum"),
    (["--weight-decay", "-1"], "--weight-decay must be"), (["--warmup", "100"], "warmup"), (["--seed", "-1"], "seed"),
    (["--limit-train", "0"], "positive integer"), (["--device", "tpu"], "invalid choice"),
])
def test_train_bad_hyperparameters_exit_2(tmp_path, flags, words):
    check_error(run("train", *TINY, *flags, cwd=tmp_path), 2, words, tmp_path)


def test_train_error_messages_name_flags_not_settings(tmp_path):
    line = check_error(run("train", *TINY, "--batch-size", "1", cwd=tmp_path), 2, "--batch-size")
    assert "--no-batchnorm" in line and "batch_size" not in line and "batchnorm=" not in line
    line = check_error(run("train", *TINY, "--val-size", "70000", cwd=tmp_path), 2, "--val-size must be in [0, 60000)")
    assert "val_size" not in line


@pytest.mark.parametrize("name, flags, words", [
    ("evaluate", ["--batch-size", "0"], "positive integer"), ("evaluate", ["--limit", "0"], "positive integer"),
    ("evaluate", ["--device", "tpu"], "invalid choice"), ("classify", ["--top", "0"], "positive integer"),
    ("classify", ["--batch-size", "0"], "positive integer"), ("classify", ["--workers", "0"], "positive integer"),
    ("classify", ["--device", "tpu"], "invalid choice"), ("extract_data", ["folders", "x", "--val", "1.5"], "--val"),
    ("extract_data", [], "required"),
    # refused before any work (these once passed argparse and failed in NumPy after the work was done)
    ("evaluate", ["--seed", "-1"], "--seed"), ("extract_data", ["folders", "x", "--seed", "-1"], "--seed"),
    ("extract_data", ["mnist", "--seed", "-1"], "--seed"),
    ("extract_data", ["mnist", "--val-size", "60000", "--out", "o/m.npz"], "--val-size must be in [0, 60000)"),
])
def test_other_scripts_bad_flags_exit_2(tmp_path, name, flags, words):
    # no data root: a flag must be refused before any data is looked for
    check_error(run(name, *flags, cwd=tmp_path, env={"NNCORE_DATA_DIR": str(tmp_path / "none")}), 2, words, tmp_path)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()


@pytest.mark.skipif(not NO_CUPY, reason="CuPy is installed; the GPU path is tested in test_gpu.py")
@pytest.mark.parametrize("name", ["evaluate", "classify"])
def test_device_gpu_without_cupy_exits_7(tmp_path, fx, name):
    args = ["--weights", fx / "good.npz", "--device", "gpu"] + ([fx / "zero.png"] if name == "classify" else [])
    check_error(run(name, *args, cwd=tmp_path), 7, "CuPy", tmp_path)


@pytest.mark.parametrize("env, words", [({"NNCORE_NUM_THREADS": "abc"}, "NNCORE_NUM_THREADS"),
                                        ({"NNCORE_NUM_THREADS": "0"}, "NNCORE_NUM_THREADS"),
                                        ({"NNCORE_KERNELS": "bogus"}, "NNCORE_KERNELS")])
def test_bad_environment_exits_2(tmp_path, fx, env, words):
    for image in ("zero.png", "seven.png"):  # refused up front, whether or not the kernels ever load
        check_error(run("classify", fx / image, "--weights", fx / "good.npz", cwd=tmp_path, env=env), 2, words)


# -- weights files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["evaluate", "classify"])
@pytest.mark.parametrize("weights, code, words", [
    ("missing.npz", 3, "does not exist"), ("folder.npz", 2, "is a folder"), ("empty.npz", 4, "not an nncore weights"),
    ("text.npz", 4, "not an nncore weights"), ("trunc.npz", 4, "not an nncore weights"),
    ("other.npz", 4, "not an nncore weights"), ("objects.npz", 4, "not an nncore weights"),
    ("mixed.npz", 4, "does not fit its architecture"),
])
def test_bad_weights_files(tmp_path, fx, name, weights, code, words):
    args = ["--weights", fx / weights] + ([fx / "text.png"] if name == "classify" else ["--dataset", fx / "abc.npz"])
    check_error(run(name, *args, cwd=tmp_path), code, words, tmp_path)


# -- datasets -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["train", "evaluate"])
@pytest.mark.parametrize("dataset, code, words", [
    ("missing.npz", 3, "not found"), ("folder.npz", 2, "is a folder"), ("empty.npz", 4, "not an nncore dataset"),
    ("text.npz", 4, "not an nncore dataset"), ("other.npz", 4, "not an nncore dataset"),
    ("good.npz", 4, "not an nncore dataset"), ("badlabels.npz", 4, "labels lie in"),
    ("floatlabels.npz", 4, "expected integers"), ("metalist.npz", 4, "not a JSON object"),
])
def test_bad_dataset_files(tmp_path, fx, name, dataset, code, words):
    args = TINY if name == "train" else ["--weights", fx / "three.npz", "--out-dir", "e"]
    check_error(run(name, *args, "--dataset", fx / dataset, cwd=tmp_path), code, words, tmp_path)


def test_evaluate_dataset_with_other_classes_exits_2(tmp_path, fx):
    check_error(run("evaluate", "--weights", fx / "good.npz", "--dataset", fx / "abc.npz", "--out-dir", "e",
                    cwd=tmp_path), 2, "trained on classes")


@pytest.mark.parametrize("name", ["train", "evaluate", "extract_data"])
def test_data_root_that_is_a_file_exits_3(tmp_path, fx, name):
    args = {"train": TINY, "evaluate": ["--weights", fx / "good.npz", "--out-dir", "e"],
            "extract_data": ["mnist", "--out", "o/m.npz"]}[name]
    check_error(run(name, *args, cwd=tmp_path, env={"NNCORE_DATA_DIR": str(fx / "afile")}), 3, "is a file")


def test_missing_data_root_without_download_exits_3(tmp_path):
    proc = run("extract_data", "mnist", "--no-download", "--out", "o/m.npz", cwd=tmp_path,
               env={"NNCORE_DATA_DIR": str(tmp_path / "nowhere")})
    check_error(proc, 3, "MNIST files missing")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["truncated", "wrong_magic", "one_label_changed"])
@pytest.mark.parametrize("name", ["train", "extract_data"])
def test_corrupt_mnist_copy_exits_4(tmp_path, bad_mnist, kind, name):
    args = TINY if name == "train" else ["mnist", "--out", "o/m.npz"]
    check_error(run(name, *args, cwd=tmp_path, env={"NNCORE_DATA_DIR": bad_mnist[kind]}), 4, "md5", tmp_path)
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()


# -- outputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args", [
    ("train", ["--weights-dir", "/etc/passwd/x"]), ("train", ["--out-dir", "/etc/passwd/x"]),
    ("evaluate", ["--out-dir", "/etc/passwd/x"]), ("extract_data", ["mnist", "--out", "/etc/passwd/x/m.npz"]),
])
def test_unwritable_outputs_exit_5_before_any_work(tmp_path, fx, name, args):
    if name == "train":
        args = TINY + args
    elif name == "evaluate":
        args = ["--weights", fx / "good.npz"] + args
    # no data root at all: the output check must come first
    check_error(run(name, *args, cwd=tmp_path, env={"NNCORE_DATA_DIR": str(tmp_path / "none")}), 5, "cannot write")


def test_stdout_on_a_full_disk_exits_5(tmp_path, fx):
    with open("/dev/full", "w") as full:
        proc = run("classify", fx / "seven.png", "--weights", fx / "good.npz", "--json", cwd=tmp_path, stdout=full)
    check_error(proc, 5, "cannot write to standard output: the disk is full")


def test_stdout_into_a_closed_pipe_exits_5(tmp_path, fx):
    e = dict(os.environ)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments", "classify.py"), str(fx / "seven.png"),
                             "--weights", str(fx / "good.npz")], cwd=tmp_path, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `classify.py ... | head -0`
    err = proc.stderr.read()
    proc.wait(timeout=60)
    check_error(subprocess.CompletedProcess([], proc.returncode, "", err), 5, "pipe was closed")


# -- classify inputs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("image, words", [("zero.png", "not an image"), ("huge.png", "megapixel"),
                                          ("text.png", "not an image"), ("missing.png", "not found")])
def test_classify_bad_images_exit_8_with_one_line_each(tmp_path, fx, image, words):
    proc = run("classify", fx / image, "--weights", fx / "good.npz", cwd=tmp_path, timeout=60)
    assert proc.returncode == 8 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and words in lines[0] and "1 of 1 file(s)" in lines[1], proc.stderr


def test_classify_folder_without_images_exits_3(tmp_path, fx):
    check_error(run("classify", fx / "noimages", "--weights", fx / "good.npz", cwd=tmp_path), 3, "no image files")


# -- checkpoints ----------------------------------------------------------------------------------------

def test_resume_from_a_weights_file_exits_4(tmp_path, fx):
    check_error(run("train", "--resume", "--out-dir", fx / "ckpt_is_weights", "--weights-dir", "w", cwd=tmp_path),
                4, "not a training checkpoint")
