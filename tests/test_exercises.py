"""Exercise mode: the student copy (stubs, no solution left) and the grader (checks, hints, limits).

Seeded mistakes are realistic mutations of the solutions: a test makes a
student copy, fills its stubs back with the solution text, applies the
mutation by text replacement and grades that one exercise (``--only``). Every
mistake must fail and get its hint from the catalogue, and no other. Made copies are reused
across the tests of this module; the training run is left out except where a
test is about it (the full-marks test and the timing).
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from nncore.errors import UsageError
from nncore.exercises import grade as grading
from nncore.exercises.catalogue import EXERCISES, parse_only
from nncore.exercises.hints import HINTS
from nncore.exercises.make import PACKAGE_DIR, make_student_copy, marked_files
from nncore.exercises.regions import find_regions, replace_bodies

ROOT = os.path.dirname(PACKAGE_DIR)
SCRIPT = os.path.join(ROOT, "experiments", "exercises.py")

# (exercise, [(solution text, mutated text)], the hint it must get)
MISTAKES = {
    "im2col-padding-ignored": ("im2col", [("xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x",
                                           "xpad = x")], "im2col-padding"),
    "im2col-stride-ignored": ("im2col", [("patch = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]",
                                          "patch = xpad[:, :, i:i + oh, j:j + ow]")], "im2col-stride"),
    "im2col-channel-order": ("im2col", [("cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)",
                                         "cols = np.empty((kh, kw, c, n, oh, ow), dtype=x.dtype)"),
                                        ("cols[:, i, j] = patch", "cols[i, j] = patch")], "im2col-order"),
    "col2im-assigns": ("col2im", [("] += cols6[:, i, j]", "] = cols6[:, i, j]")], "col2im-assign"),
    "col2im-stride-ignored": ("col2im", [("xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols6",
                                          "xpad[:, :, i:i + oh, j:j + ow] += cols6")], "col2im-stride"),
    "col2im-padding-kept": ("col2im", [("return xpad[:, :, pad:pad + h, pad:pad + w] if pad else xpad",
                                        "return xpad")], "col2im-crop"),
    "conv-forward-no-bias": ("conv", [("cols), b, n, oh, ow)", "cols), None, n, oh, ow)")], "conv-bias-forward"),
    "conv-dw-not-reshaped": ("conv", [("dw = matmul(d2, cols.T).reshape(w.shape)", "dw = matmul(d2, cols.T)")],
                             "conv-dw-shape"),
    "conv-bias-grad-one-sample": ("conv", [("d2, db = nchw_to_rows(dout)",
                                            "d2, db = nchw_to_rows(dout)[0], dout[0].sum(axis=(1, 2))")], "bias-sum"),
    "maxpool-grad-to-ties": ("maxpool", [(("arg = win.argmax(axis=0).astype(np.int32)\n"
                                           "    out = np.take_along_axis(win, arg[None], axis=0)[0]\n"),
                                          "out = win.max(axis=0)\n    arg = win == out\n"),
                                         ("np.where(arg == i * k + j, dout, 0)", "np.where(arg[i * k + j], dout, 0)")],
                             "pool-ties"),
    "maxpool-backward-assigns": ("maxpool", [("] += np.where(arg", "] = np.where(arg")], "pool-overlap"),
    "maxpool-stride-is-k": ("maxpool", [("dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]",
                                         "dx[:, :, i:i + k * oh:k, j:j + k * ow:k]")], "pool-stride"),
    "relu-dout-in-place": ("relu", [("return np.where(out > 0, dout, dout.dtype.type(0))",
                                     "dout[out <= 0] = 0\n    return dout")], "relu-dout-inplace"),
    "relu-x-in-place": ("relu", [("return np.maximum(x, x.dtype.type(0))",
                                  "return np.maximum(x, x.dtype.type(0), out=x)")], "relu-x-inplace"),
    "relu-mask-from-dout": ("relu", [("np.where(out > 0, dout,", "np.where(dout > 0, dout,")], "relu-mask-dout"),
    "relu-mask-ge": ("relu", [("np.where(out > 0, dout,", "np.where(out >= 0, dout,")], "relu-mask-ge"),
    "dense-transposed-weight": ("dense", [('threads.matmul(dout, self.params["W"].T)',
                                           'threads.matmul(dout, self.params["W"])')], "dense-transposed-w"),
    "dense-dw-transposed": ("dense", [("threads.matmul(x.T, dout)", "threads.matmul(dout.T, x)")],
                            "dense-dw-transposed"),
    "dense-bias-mean": ("dense", [("dout.sum(axis=0)", "dout.mean(axis=0)")], "bias-sum"),
    "dense-forward-no-bias": ("dense", [('out += self.params["b"]', "pass")], "dense-bias-forward"),
    "softmax-no-max": ("softmax", [("shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits")],
                       "softmax-max"),
    "softmax-grad-no-1/N": ("softmax", [("        d /= logp.dtype.type(n)\n", "")], "softmax-n"),
    "softmax-grad-no-onehot": ("softmax", [("        d[xp.arange(n), labels] -= 1\n", "")], "softmax-onehot"),
    "batchnorm-no-mean-terms": ("batchnorm", [(
        "k * (dout3 - (dbeta / m)[None, :, None] - xhat * (dgamma / m)[None, :, None])", "k * dout3")],
        "bn-mean-terms"),
    "batchnorm-count-n": ("batchnorm", [("m = dout3.dtype.type(dout3.shape[0] * dout3.shape[2])",
                                         "m = dout3.dtype.type(dout3.shape[0])")], "bn-count"),
    "batchnorm-sum-axis-0": ("batchnorm", [("dgamma = (dout3 * xhat).sum(axis=(0, 2))",
                                            "dgamma = (dout3 * xhat).sum(axis=0)")], "bn-axes"),
    "dropout-not-rescaled": ("dropout", [("keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)",
                                          "keep.astype(x.dtype)")], "dropout-rescale"),
    "dropout-keeps-p": ("dropout", [(">= self.p", "< self.p")], "dropout-keep"),
    "dropout-backward-unmasked": ("dropout", [("return dout * self.mask", "return dout")], "dropout-backward"),
    "sgd-momentum-sign": ("sgd", [("p -= lr * (g + mu * v)", "p += lr * (g + mu * v)")], "sgd-sign"),
    "sgd-velocity-not-kept": ("sgd", [("st = self.state.setdefault(key, {})", "st = {}")], "sgd-state"),
    "sgd-nesterov-ignored": ("sgd", [("p -= lr * (g + mu * v) if self.nesterov else lr * v", "p -= lr * v")],
                             "sgd-nesterov"),
    "sgd-dampened": ("sgd", [("v += g", "v += (1 - mu) * g")], "sgd-dampening"),
}


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """made(names) -> a student copy with ``names`` blanked, made once per module."""
    made = {}

    def make(names):
        key = tuple(names)
        if key not in made:
            made[key] = str(tmp_path_factory.mktemp("student") / "copy")
            make_student_copy(made[key], list(names))
        return made[key]
    return make


def filled(copy, dest, mutations=()):
    """A copy of the student copy ``copy`` at ``dest`` with every stub replaced by the solution, mutated."""
    shutil.copytree(copy, dest)
    applied = [0] * len(mutations)
    for rel, original in marked_files().items():
        bodies = []
        for region in find_regions(original):
            body = "".join(region.body)
            for i, (old, new) in enumerate(mutations):
                applied[i] += body.count(old)
                body = body.replace(old, new)
            bodies.append(body.splitlines(keepends=True))
        path = os.path.join(dest, "nncore", rel)
        with open(path) as f:
            text = f.read()
        by_start = dict(zip((r.start for r in find_regions(text)), bodies, strict=True))
        with open(path, "w") as f:
            f.write(replace_bodies(text, set(EXERCISES), lambda r, by_start=by_start: by_start[r.start]))
    assert applied == [1] * len(mutations), f"each mutation must apply exactly once: {applied}"
    return str(dest)


# -- the student copy ---------------------------------------------------------------------------------------

def test_every_exercise_has_a_marked_region_and_the_markers_balance():
    names = {r.name for text in marked_files().values() for r in find_regions(text)}
    assert names == set(EXERCISES)


def test_regions_refuse_unbalanced_markers_and_keep_the_markers_when_replaced():
    text = "def f():\n    # exercise: relu\n    return 1\n    # end exercise\n"
    assert replace_bodies(text, {"relu"}, lambda r: [r.indent + "pass\n"]) == text.replace("return 1", "pass")
    for broken in (text.replace("    # end exercise\n", ""), "    # end exercise\n",
                   text.replace("    return 1\n", "    # exercise: dense\n")):
        with pytest.raises(UsageError):
            find_regions(broken)


def test_student_copy_holds_no_solution_line(copies):
    """Every line of a blanked region is gone, unless the same line stands outside every region (not a secret)."""
    copy = copies(list(EXERCISES))
    public, secret = set(), set()
    for root, _dirs, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py") and "exercises" not in os.path.relpath(root, PACKAGE_DIR).split(os.sep):
                with open(os.path.join(root, name)) as f:
                    text = f.read()
                inside = {i for r in find_regions(text) for i in range(r.start, r.end + 1)}
                public |= {ln.strip() for i, ln in enumerate(text.splitlines()) if i not in inside}
                secret |= {ln for r in find_regions(text) for ln in r.solution_lines}
    secret -= public
    assert len(secret) > 40
    leaks = []
    for root, _dirs, files in os.walk(copy):
        for name in files:
            with open(os.path.join(root, name)) as f:
                lines = {ln.strip() for ln in f.read().splitlines()}
            leaks += [f"{name}: {ln}" for ln in secret & lines]
    assert not leaks
    assert not os.path.exists(os.path.join(copy, "nncore", "exercises"))
    assert not os.path.exists(os.path.join(copy, "nncore", "kernels", "cpu"))


def test_student_copy_imports_and_runs_the_reference_kernels_without_numba(copies):
    copy = copies(list(EXERCISES))
    code = ("import sys, numpy as np, nncore; from nncore.kernels import cpu_kernels_name, kernels_for; "
            "from nncore.layers import Flatten; Flatten().forward(np.zeros((2, 3, 4)));"
            "print(nncore.__file__, cpu_kernels_name(), kernels_for(np.zeros(1)).__name__, 'numba' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": copy}
    env.pop("NNCORE_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True)
    path, name, package, numba = out.stdout.split()
    assert path.startswith(copy) and name == "reference" and package == "nncore.kernels.reference"
    assert numba == "False"


def test_stub_keeps_signature_and_docstring_and_states_the_task(copies):
    with open(os.path.join(copies(["im2col"]), "nncore", "kernels", "reference", "conv.py")) as f:
        text = f.read()
    assert "def im2col(x, kh, kw, stride, pad):" in text and "Unfold image patches into columns." in text
    assert f'    raise NotImplementedError("exercise im2col: {EXERCISES["im2col"]}")\n' in text
    assert "cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)" not in text
    assert "def col2im(" in text and "+= cols6[:, i, j]" in text                   # not blanked: left as it was


def test_make_refuses_a_non_empty_folder_and_unknown_names(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    env = {**os.environ, "PYTHONPATH": ROOT}
    run = subprocess.run([sys.executable, SCRIPT, "make", str(tmp_path / "taken")], env=env, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 5 and run.stderr.count("\n") == 1 and "not empty" in run.stderr
    run = subprocess.run([sys.executable, SCRIPT, "make", str(tmp_path / "new"), "--only", "conv,pooling"], env=env,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "pooling" in run.stderr and all(name in run.stderr for name in EXERCISES)
    assert not (tmp_path / "new").exists()
    with pytest.raises(UsageError):
        parse_only("")


# -- grading ------------------------------------------------------------------------------------------------

def test_the_solution_scores_full_marks_within_a_minute():
    start = time.perf_counter()
    grades = grading.grade(ROOT, list(EXERCISES), train=True, time_limit=60)
    seconds = time.perf_counter() - start
    assert all(g.ok for g in grades), grading.format_report(grades)
    assert all(g.training for g in grades)
    assert seconds < 60, f"grading every exercise took {seconds:.1f} s"


def test_a_filled_copy_scores_full_marks(copies, tmp_path):
    copy = filled(copies(list(EXERCISES)), tmp_path / "s")
    grades = grading.grade(copy, ["conv", "sgd"], train=True)
    assert all(g.ok for g in grades), grading.format_report(grades)


def test_every_blank_stub_fails_with_its_not_implemented_message(copies):
    for g in grading.grade(copies(list(EXERCISES)), list(EXERCISES), train=False):
        assert g.passed == 0 and g.total > 0
        assert f"NotImplementedError: exercise {g.name}: {EXERCISES[g.name]}" in g.messages[0]
        assert not g.hints


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_seeded_mistake_is_caught_with_its_hint(mistake, copies, tmp_path):
    exercise, mutations, hint = MISTAKES[mistake]
    copy = filled(copies([exercise]), tmp_path / "s", mutations)
    g = grading.grade_exercise(copy, exercise, train=False, time_limit=30)
    assert not g.ok
    assert g.hints == [hint], f"{mistake}: got hints {g.hints}; messages {g.messages[:3]}"
    assert HINTS[hint] in grading.format_report([g])


def test_a_failure_names_the_array_the_worst_index_and_both_values(copies, tmp_path):
    copy = filled(copies(["col2im"]), tmp_path / "s", MISTAKES["col2im-assigns"][1])
    g = grading.grade_exercise(copy, "col2im", train=False)
    msg = next(m for m in g.messages if m.startswith("case overlap: dx"))
    assert "differs at index (" in msg and "expected " in msg and ", got " in msg


def test_a_hang_a_crash_and_a_wrong_shape_are_failures_with_a_message(copies, tmp_path):
    base = copies(["relu"])
    hang = filled(base, tmp_path / "hang", [("return np.maximum(x, x.dtype.type(0))", "while True:\n        pass")])
    g = grading.grade_exercise(hang, "relu", train=False, time_limit=3)
    assert g.passed == 0 and "did not finish within 3 s" in g.messages[0]
    broken = filled(base, tmp_path / "broken", [("return np.maximum(x, x.dtype.type(0))", "return np.maximum(x,")])
    g = grading.grade_exercise(broken, "relu", train=False)
    assert g.passed == 0 and "could not run" in g.messages[0] and "SyntaxError" in g.messages[0]
    shape = filled(base, tmp_path / "shape", [("return np.maximum(x, x.dtype.type(0))",
                                               "return np.maximum(x, x.dtype.type(0)).ravel()")])
    g = grading.grade_exercise(shape, "relu", train=False)
    assert not g.ok and any("out has shape (28,), expected (4, 7)" in m for m in g.messages)
    listed = filled(base, tmp_path / "list", [("return np.maximum(x, x.dtype.type(0))",
                                               "return np.maximum(x, x.dtype.type(0)).tolist()")])
    g = grading.grade_exercise(listed, "relu", train=False)
    assert not g.ok and any("case random: out is a list, not a NumPy array" in m for m in g.messages)


def test_grade_command_prints_the_table_and_exits_nonzero_on_failure(copies, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    copy = copies(["relu"])
    run = subprocess.run([sys.executable, SCRIPT, "grade", copy, "--only", "relu,dense", "--no-train"], env=env,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "relu           0/17      0%" in run.stdout and "dense         33/33    100%" in run.stdout
    run = subprocess.run([sys.executable, SCRIPT, "grade", str(tmp_path)], env=env, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 3 and "holds no nncore package" in run.stderr
