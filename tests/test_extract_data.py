"""experiments/extract_data.py run as a user would: a subprocess, one-line errors."""

import os
import subprocess
import sys

import numpy as np
from test_data_folders import make_tree

from nncore.data import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "extract_data.py")


def run(args, cwd, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NNCORE_DATA_DIR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_folders_tiny_tree(tmp_path):
    root = make_tree(tmp_path / "tree", per_class=5)
    proc = run(["folders", root, "--out", "out/tiny.npz", "--val", "0.2", "--test", "0.2", "--seed", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "broken.png" in out and "skipped 1" in out
    for name in ("ell", "plus", "ring"):
        assert name in out
    assert "total" in out and " s" in out.splitlines()[-1]
    d = load_dataset(tmp_path / "out" / "tiny.npz")
    assert (tmp_path / "out" / "tiny_classes.png").read_bytes()[:4] == b"\x89PNG"
    assert len(d["y_train"]) == 9 and len(d["y_val"]) == 3 and len(d["y_test"]) == 3
    assert d["meta"]["seed"] == 1 and d["meta"]["skipped"][0].endswith("broken.png")
    again = run(["folders", root, "--out", "out/again.npz", "--val", "0.2", "--test", "0.2", "--seed", "1"], tmp_path)
    assert again.returncode == 0, again.stderr
    d2 = load_dataset(tmp_path / "out" / "again.npz")
    np.testing.assert_array_equal(d["x_test"], d2["x_test"])  # deterministic


def test_symbols_shorthand_uses_data_root(tmp_path):
    make_tree(tmp_path / "root" / "symbols", per_class=3, extra_bad=False)
    proc = run(["folders", "symbols"], tmp_path, {"NNCORE_DATA_DIR": str(tmp_path / "root")})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "symbols.npz").is_file() and (tmp_path / "data" / "symbols_classes.png").is_file()
    assert not (tmp_path / "root" / "symbols.npz").exists()


def test_bad_inputs_give_one_line_errors(tmp_path):
    assert_one_line_error(run(["folders", str(tmp_path / "missing")], tmp_path), 3)
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run(["folders", str(tmp_path / "empty")], tmp_path), 3)
    root = make_tree(tmp_path / "tree", per_class=2, extra_bad=False)
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run(["folders", root, "--out", str(tmp_path / "afile" / "x.npz")], tmp_path), 5)
    assert_one_line_error(run(["folders", root, "--out", str(tmp_path)], tmp_path), 5)
    assert_one_line_error(run(["folders", root, "--val", "1.5"], tmp_path), 2)
    assert_one_line_error(run(["folders", root, "--val", "0.6", "--test", "0.5"], tmp_path), 2)
    assert_one_line_error(run(["nonsense"], tmp_path), 2)
    assert_one_line_error(run(["mnist", "--data-dir", str(tmp_path / "empty"), "--no-download"], tmp_path), 3)
    assert not (tmp_path / "data").exists()


def test_debug_shows_traceback(tmp_path):
    proc = run(["folders", str(tmp_path / "missing"), "--debug"], tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_mnist_extraction(tmp_path, data_dir, mnist_dir):
    proc = run(["mnist", "--data-dir", data_dir, "--out", "m.npz", "--no-download"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    d = load_dataset(tmp_path / "m.npz")
    assert d["x_train"].shape == (55000, 28, 28) and len(d["y_val"]) == 5000 and len(d["y_test"]) == 10000
    assert d["class_names"] == [str(i) for i in range(10)]
    assert (tmp_path / "m_classes.png").is_file()


def test_class_chart_is_drawn_by_nncore_plots(tmp_path):
    """extract_data.py had its own matplotlib code; the chart now comes from nncore.plots.plot_class_counts."""
    from nncore.plots import plot_class_counts
    assert "matplotlib" not in open(SCRIPT, encoding="utf-8").read()
    path = plot_class_counts(["a", "b"], {"train": [5, 3], "val": [1, 1], "test": [1, 0]}, str(tmp_path / "c.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_extracted_symbols_serve_as_the_training_cache(tmp_path):
    """extract_data.py folders symbols and --dataset symbols share one extraction (and its cache file)."""
    from nncore.data import load_data
    root = tmp_path / "root"
    make_tree(root / "symbols", per_class=3, extra_bad=False)
    proc = run(["folders", "symbols"], tmp_path, {"NNCORE_DATA_DIR": str(root)})
    assert proc.returncode == 0, proc.stderr
    made = load_dataset(tmp_path / "data" / "symbols.npz")
    assert made["meta"]["fingerprint"] and made["meta"]["source"] == str(root / "symbols")
    lines = []
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        d = load_data("symbols", str(root), log=lines.append)
    finally:
        os.chdir(cwd)
    assert lines[-1].startswith("using data/symbols.npz")
    np.testing.assert_array_equal(d["x_test"], made["x_test"])
