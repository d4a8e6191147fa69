"""Grade a student's copy: each exercise's checks in a child process, compared with the solution's.

For each exercise the grader runs :mod:`child` twice, with ``NNCORE_KERNELS=reference``: on the
student's folder (PYTHONPATH=<folder>) and on the installed nncore, the solution. Both runs see the
same seeded inputs (:mod:`.probes`); arrays come back as ``.npz`` files in a temporary folder, so
the student's ``nncore`` is never imported here. Then, per exercise:

* shape and values of every output array of every case (odd sizes, stride, padding, a batch of one);
* the gradient checks in float64 (:mod:`nncore.gradcheck`) on layers built from the student's code;
* a short training run of a small CNN of the student's layers (the loss must fall by a fifth and
  the accuracy must beat chance);
* the hints of :mod:`.hints` for what failed.

A child that raises, hangs past the time limit or dies is a failing exercise with its message.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from .checks import compare_run
from .hints import HINTS, diagnose

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")
SOLUTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the training run passes when the last epoch's loss is below this fraction of the first's ...
LOSS_FALL = 0.8
#: ... and the training accuracy above this (chance is 0.1)
MIN_ACCURACY = 0.3

_solution_runs = {}


@dataclass
class ExerciseGrade:
    """The grade of one exercise: checks passed of total, the failure messages and the hints."""

    name: str
    passed: int = 0
    total: int = 0
    messages: list = field(default_factory=list)
    hints: list = field(default_factory=list)
    training: str = ""
    seconds: float = 0.0

    @property
    def ok(self):
        return self.total > 0 and self.passed == self.total

    @property
    def score(self):
        return 100.0 * self.passed / self.total if self.total else 0.0

    def add(self, passed, message=None):
        self.total += 1
        self.passed += bool(passed)
        if message:
            self.messages.append(message)


def run_child(exercise, root, seed, train, time_limit):
    """Run the exercise's probes on ``root/nncore``. Returns (result, arrays, error): error is one line or None."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSTARTUP", "PYTHONHOME")}
    env.update(PYTHONPATH=os.path.abspath(root), NNCORE_KERNELS="reference", PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NNCORE_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="nncore-grade-") as out:
        try:
            proc = subprocess.run([sys.executable, CHILD, exercise, str(seed), "1" if train else "0", out],
                                  cwd=out, env=env, capture_output=True, text=True, timeout=time_limit, check=False)
        except subprocess.TimeoutExpired:
            return None, {}, f"did not finish within {time_limit:g} s (an endless loop?)"
        path = os.path.join(out, "result.json")
        if proc.returncode != 0 or not os.path.isfile(path):
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            return None, {}, f"the checks could not run: {lines[-1] if lines else f'exit code {proc.returncode}'}"
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        with np.load(os.path.join(out, "arrays.npz")) as data:
            arrays = {k: data[k] for k in data.files}
    want = os.path.realpath(os.path.join(root, "nncore"))
    if os.path.realpath(result["nncore"]) != want:
        return None, {}, f"ran the nncore in {result['nncore']}, not {want}"
    return result, arrays, None


def solution_run(exercise, seed, time_limit):
    """The installed nncore's run of the exercise (cached per process)."""
    key = (exercise, seed)
    if key not in _solution_runs:
        result, arrays, error = run_child(exercise, SOLUTION_ROOT, seed, False, time_limit)
        if error:
            raise RuntimeError(f"the solution's own checks failed for {exercise}: {error}")
        _solution_runs[key] = (result, arrays)
    return _solution_runs[key]


def grade_exercise(folder, exercise, seed=0, train=True, time_limit=60.0):
    """Grade one exercise of the student's ``folder``; returns an :class:`ExerciseGrade`."""
    start = time.perf_counter()
    grade = ExerciseGrade(exercise)
    ref_result, ref_arrays = solution_run(exercise, seed, time_limit)
    result, arrays, error = run_child(exercise, folder, seed, train, time_limit)
    n_compare = 2 * sum(1 for k in ref_arrays if k.startswith("out|"))
    n_gradient = len(ref_result["gradient"])
    if error:
        for i in range(n_compare + n_gradient + int(train)):
            grade.add(False, error if i == 0 else None)
        grade.seconds = time.perf_counter() - start
        return grade
    evidence, rows = compare_run(exercise, ref_arrays, arrays, result)
    for _check, passed, message in rows:
        grade.add(passed, message)
    _gradient_checks(grade, result, n_gradient)
    if train:
        _training_check(grade, result)
    if grade.passed < grade.total:
        grade.hints = diagnose(evidence)
    grade.seconds = time.perf_counter() - start
    return grade


def _gradient_checks(grade, result, count):
    if result["gradient_error"]:
        for i in range(count):
            grade.add(False, f"gradient check raised {result['gradient_error']}" if i == 0 else None)
        return
    rows = result["gradient"][:count] + [None] * (count - len(result["gradient"]))
    for row in rows:
        if row is None:
            grade.add(False, "gradient check: fewer results than the solution's")
            continue
        ok = np.isfinite(row["rel_error"]) and row["rel_error"] < row["tolerance"]
        grade.add(ok, None if ok else f"gradient check {row['what']}: {row['rel_error']:.3g} "
                                      f"(must be below {row['tolerance']:g})")


def _training_check(grade, result):
    if result["train_error"]:
        grade.add(False, f"training run raised {result['train_error']}")
        return
    t = result["train"]
    grade.training = t["data"]
    ok = bool(np.isfinite(t["last_loss"]) and t["last_loss"] < LOSS_FALL * t["first_loss"]
              and t["accuracy"] > MIN_ACCURACY)
    grade.add(ok, None if ok else (
        f"training run ({t['data']}): loss {t['first_loss']:.3g} -> {t['last_loss']:.3g}, accuracy "
        f"{t['accuracy']:.2f} (the loss must fall below {LOSS_FALL:g}x its start, accuracy above {MIN_ACCURACY:g})"))


def grade(folder, names, seed=0, train=True, time_limit=60.0):
    """Grade the exercises ``names`` of the student's ``folder`` (the one holding ``nncore/``)."""
    return [grade_exercise(folder, name, seed, train, time_limit) for name in names]


def format_report(grades, max_messages=4):
    """The table (exercise, checks passed, score), then each failing exercise's messages and hints."""
    lines = [f"{'exercise':<11} {'checks':>7}  {'score':>6}", "-" * 27]
    for g in grades:
        lines.append(f"{g.name:<11} {f'{g.passed}/{g.total}':>7}  {g.score:>5.0f}%")
    passed, total = sum(g.passed for g in grades), sum(g.total for g in grades)
    lines += ["-" * 27, f"{'total':<11} {f'{passed}/{total}':>7}  {100.0 * passed / max(total, 1):>5.0f}%"]
    data = next((g.training for g in grades if g.training), "")
    if data:
        lines.append(f"training runs on: {data}")
    for g in grades:
        if g.ok:
            continue
        lines += ["", f"{g.name}: {g.total - g.passed} of {g.total} checks failed"]
        lines += [f"  - {m}" for m in g.messages[:max_messages]]
        if len(g.messages) > max_messages:
            lines.append(f"  ... and {len(g.messages) - max_messages} more")
        lines += [f"  hint: {HINTS[h]}" for h in g.hints]
    return "\n".join(lines)
