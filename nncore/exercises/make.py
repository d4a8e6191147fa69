"""Make a student copy of nncore with the chosen exercise regions blanked."""

import os
import shutil

from ..errors import OutputError, UsageError
from .catalogue import EXERCISES
from .regions import find_regions, replace_bodies, stub

#: the installed package: the source of the solutions
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: left out of the student copy: the grader (hints are near-solutions) and the fast twins of the kernels
#: (the numba and CuPy code computes the same arrays as the solutions)
LEFT_OUT = ("exercises", os.path.join("kernels", "cpu"), os.path.join("kernels", "gpu.py"))

_DEFAULT_KERNELS = 'os.environ.get("NNCORE_KERNELS", "numba")'


def marked_files(package_dir=PACKAGE_DIR):
    """Relative path -> source text of every ``.py`` file of the package that holds a region.

    ``nncore/exercises`` itself is skipped: its docstrings show the markers.
    """
    found = {}
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if os.path.join(root, d) != os.path.join(package_dir, "exercises"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if find_regions(text, path):
                    found[os.path.relpath(path, package_dir)] = text
    return found


def make_student_copy(dest, names, package_dir=PACKAGE_DIR):
    """Write the student copy into ``dest`` (new or empty): ``dest/nncore`` and ``dest/README.md``.

    Every region of the exercises ``names`` becomes a stub raising NotImplementedError; the copy uses
    the reference kernels by default (it has no numba or CuPy twins). Returns the paths written.
    """
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise OutputError(f"{dest} exists and is not empty; give a new or empty folder")
    target = os.path.join(dest, "nncore")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    try:
        os.makedirs(dest, exist_ok=True)
        shutil.copytree(package_dir, target, ignore=ignore)
        for rel in LEFT_OUT:
            path = os.path.join(target, rel)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        _use_reference_kernels(os.path.join(target, "kernels", "__init__.py"))
        blanked = set()
        for rel, text in marked_files(package_dir).items():
            blanked |= {r.name for r in find_regions(text) if r.name in names}
            new = replace_bodies(text, set(names), lambda r: stub(r, EXERCISES[r.name]), rel)
            with open(os.path.join(target, rel), "w", encoding="utf-8") as f:
                f.write(new)
        with open(os.path.join(dest, "README.md"), "w", encoding="utf-8") as f:
            f.write(student_readme(names))
    except OSError as exc:
        raise OutputError(f"cannot write the student copy to {dest}: {exc.strerror or exc}") from exc
    missing = set(names) - blanked
    if missing:
        raise UsageError(f"no marked region found for {', '.join(sorted(missing))}")
    return [target, os.path.join(dest, "README.md")]


def _use_reference_kernels(path):
    """The student copy runs the reference kernels, the student's code, unless NNCORE_KERNELS says otherwise."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if _DEFAULT_KERNELS not in text:
        raise UsageError(f"{path}: the default-kernels line moved; update nncore/exercises/make.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(_DEFAULT_KERNELS, 'os.environ.get("NNCORE_KERNELS", "reference")'))


def student_readme(names):
    """The README handed out with the copy: what to write, where, and how to check it."""
    rows = "\n".join(f"| `{n}` | {EXERCISES[n]} |" for n in names)
    return f"""# nncore exercises

This folder holds `nncore`, a small CNN library in plain NumPy, with parts of it left for you to
write. Each part is a function body between two comments:

    # exercise: <name>
    raise NotImplementedError("exercise <name>: <what to write>")
    # end exercise

Replace the `raise` line with your code; keep the two comments (the grader finds your code by
them) and the function's signature. The docstring above each one states the shapes and the math.

| exercise | what to write |
| --- | --- |
{rows}

Find them with `grep -rn "# exercise:" nncore`. Some build on others: the convolution calls
`im2col` and `col2im`, and the training run uses every layer.

## Check your work

Work in plain NumPy. This copy runs the readable reference kernels (`nncore/kernels/reference/`),
so your code is what runs. Check a layer's backward pass against central differences, in float64:

    python -c "
    import numpy as np
    from nncore.gradcheck import check_layer, format_table, away_from_zero
    from nncore.layers import Conv2D
    layer = Conv2D(2, 3, 3, stride=2, padding=1, dtype=np.float64, rng=0)
    print(format_table(check_layer(layer, away_from_zero((2, 2, 7, 6), seed=0))))"

A correct layer shows relative errors around 1e-9; a wrong one near 1. Your lecturer grades the
folder with the same checks, a comparison with the solution on random inputs, and a short training
run of a small CNN built from your code.
"""
