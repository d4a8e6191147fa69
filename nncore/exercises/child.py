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


def describe(exc):
    """One line: the exception, and the last frame of the nncore code where it happened."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if "nncore" in frame.filename.replace(os.sep, "/").split("/"):
            where = f" (at {frame.filename.split('nncore', 1)[-1].lstrip(os.sep)}:{frame.lineno})"
            where = f" (at nncore/{where[5:]}" if where.startswith(" (at ") else where
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}{where}"


def main(exercise, seed, train, out_dir):
    import nncore
    import probes

    result = {"nncore": os.path.dirname(os.path.abspath(nncore.__file__)), "cases": {}, "gradient": [],
              "gradient_error": None, "train": None, "train_error": None}
    arrays = {}
    for case, inputs in getattr(probes, f"{exercise}_cases")(np.random.default_rng(seed)):
        for name, value in inputs.items():
            arrays[f"in|{case}|{name}"] = value
        try:
            outputs = getattr(probes, f"{exercise}_run")({k: v.copy() for k, v in inputs.items()})
            bad = {k: type(v).__name__ for k, v in outputs.items() if not isinstance(v, np.ndarray)}
            result["cases"][case] = {"error": None, "not_arrays": bad}
            for name, value in outputs.items():
                if isinstance(value, np.ndarray):
                    arrays[f"out|{case}|{name}"] = value
        except Exception as exc:                       # noqa: BLE001 - the student's code may raise anything
            result["cases"][case] = {"error": describe(exc), "not_arrays": {}}
    try:
        result["gradient"] = [{"what": f"{r.layer}.{r.array}", "rel_error": float(r.rel_error),
                               "tolerance": float(r.tolerance)} for r in probes.GRADIENT_CHECKS[exercise]()]
    except Exception as exc:                           # noqa: BLE001
        result["gradient_error"] = describe(exc)
    if train:
        try:
            with np.errstate(all="ignore"):
                result["train"] = probes.training_run()
        except Exception as exc:                       # noqa: BLE001
            result["train_error"] = describe(exc)
    np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4])
