"""The grader's child process: run one exercise's probes on the ``nncore`` found on PYTHONPATH.

Usage (the grader runs it; it is not part of the student copy)::

    PYTHONPATH=<folder holding nncore> NNCORE_KERNELS=reference \\
        python child.py <exercise> <seed> <train 0|1> <out folder>

Writes ``<out folder>/result.json`` (errors, gradient checks, training run,
which nncore ran) and ``<out folder>/arrays.npz`` (``in|case|name`` inputs and
``out|case|name`` outputs). Student code that raises is recorded as a one-line
error with the file and line where it happened; it never stops the run.
"""

import json
import os
import sys
import traceback

import numpy as np


def describe(exc, package):
    """One line: the exception, and the last frame inside ``package`` (the nncore folder) where it happened."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if path.startswith(package + os.sep):
            where = f" (at {os.path.relpath(path, os.path.dirname(package))}:{frame.lineno})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}{where}"


def main(exercise, seed, train, out_dir):
    import probes

    import nncore

    package = os.path.dirname(os.path.abspath(nncore.__file__))
    result = {"nncore": package, "cases": {}, "gradient": [],
              "gradient_error": None, "train": None, "train_error": None}
    arrays = {}
    for case, inputs in getattr(probes, f"{exercise}_cases")(np.random.default_rng(seed)):
        for name, value in inputs.items():
            arrays[f"in|{case}|{name}"] = value
        outputs, error = {}, None
        try:
            getattr(probes, f"{exercise}_run")({k: v.copy() for k, v in inputs.items()}, outputs)
        except Exception as exc:                       # noqa: BLE001 - the student's code may raise anything
            error = describe(exc, package)
        bad = {k: type(v).__name__ for k, v in outputs.items() if not isinstance(v, np.ndarray)}
        result["cases"][case] = {"error": error, "not_arrays": bad}
        for name, value in outputs.items():
            if isinstance(value, np.ndarray):
                arrays[f"out|{case}|{name}"] = value
    try:
        result["gradient"] = [{"what": f"{r.layer}.{r.array}", "rel_error": float(r.rel_error),
                               "tolerance": float(r.tolerance)} for r in probes.GRADIENT_CHECKS[exercise]()]
    except Exception as exc:                           # noqa: BLE001
        result["gradient_error"] = describe(exc, package)
    if train:
        try:
            with np.errstate(all="ignore"):
                result["train"] = probes.training_run()
        except Exception as exc:                       # noqa: BLE001
            result["train_error"] = describe(exc, package)
    np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4])
