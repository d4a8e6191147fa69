"""Compare a student's arrays with the solution's: shape, then values, naming the worst index."""

from dataclasses import dataclass, field

import numpy as np

#: (exercise, array) -> (rtol, atol); everything else is compared at (1e-7, 1e-9), float64 throughout
TOLERANCES = {("dropout", "kept_fraction"): (0.0, 0.03)}
DEFAULT_TOLERANCE = (1e-7, 1e-9)


@dataclass
class Evidence:
    """The arrays of both runs of one exercise, and which comparisons passed."""

    exercise: str
    ref: dict                        # "in|case|name" and "out|case|name" -> array (the solution's run)
    stu: dict                        # the same keys from the student's run (missing when a case raised)
    passed: dict = field(default_factory=dict)   # (case, array) -> bool

    def inp(self, case, name):
        return self.ref[f"in|{case}|{name}"]

    def expected(self, case, name):
        return self.ref[f"out|{case}|{name}"]

    def got(self, case, name):
        return self.stu.get(f"out|{case}|{name}")

    def ok(self, case, name=None):
        """Whether the case's array ``name`` (every array of the case for None) matched the solution."""
        if name is not None:
            return self.passed.get((case, name), False)
        return all(v for (c, _n), v in self.passed.items() if c == case)

    def matches(self, case, name, value):
        """Whether the student's ``name`` of ``case`` equals ``value`` (a known-wrong variant, say)."""
        got = self.got(case, name)
        value = np.asarray(value)
        return got is not None and got.shape == value.shape and bool(np.allclose(got, value, rtol=1e-7, atol=1e-9))


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()


def compare(exercise, case, name, expected, got):
    """Two checks for one array: its shape, then its values. Returns [(check, passed, message or None)]."""
    label = f"case {case}: {name}"
    if got is None:
        return [(f"{label} shape", False, f"{label} was not computed (None)"), (f"{label} values", False, None)]
    if got.shape != expected.shape:
        msg = f"{label} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        return [(f"{label} shape", False, msg), (f"{label} values", False, None)]
    rtol, atol = TOLERANCES.get((exercise, name), DEFAULT_TOLERANCE)
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - expected)
        err = np.where(np.isnan(err) | np.isinf(err), np.inf, err)
        bad = err > atol + rtol * np.abs(expected)
    if not bad.any():
        return [(f"{label} shape", True, None), (f"{label} values", True, None)]
    worst = _index(np.argmax(np.where(bad, err, -1.0)), got.shape)
    msg = (f"{label} differs at index {worst}: expected {float(expected[worst]):.6g}, got {float(got[worst]):.6g} "
           f"({int(bad.sum())} of {bad.size} values wrong)")
    return [(f"{label} shape", True, None), (f"{label} values", False, msg)]


def compare_run(exercise, ref_arrays, stu_arrays, stu_result):
    """Every array of every case. Returns (Evidence, [(check, passed, message)])."""
    evidence = Evidence(exercise, ref_arrays, stu_arrays)
    rows = []
    cases = sorted({k.split("|")[1] for k in ref_arrays if k.startswith("out|")},
                   key=lambda c: list(stu_result["cases"]).index(c) if c in stu_result["cases"] else 0)
    for case in cases:
        names = [k.split("|")[2] for k in ref_arrays if k.startswith(f"out|{case}|")]
        error = stu_result["cases"].get(case, {}).get("error")
        not_arrays = stu_result["cases"].get(case, {}).get("not_arrays", {})
        reported = False
        for name in names:
            got = stu_arrays.get(f"out|{case}|{name}")
            if name in not_arrays and not_arrays[name] != "NoneType":
                evidence.passed[(case, name)] = False
                rows += [(f"case {case}: {name} shape", False,
                          f"case {case}: {name} is a {not_arrays[name]}, not a NumPy array"),
                         (f"case {case}: {name} values", False, None)]
                continue
            if got is None and error:                  # the case raised before computing this array
                evidence.passed[(case, name)] = False
                message = None if reported else f"case {case} raised {error}"
                rows += [(f"case {case}: {name} shape", False, message), (f"case {case}: {name} values", False, None)]
                reported = True
                continue
            found = compare(exercise, case, name, ref_arrays[f"out|{case}|{name}"], got)
            evidence.passed[(case, name)] = all(ok for _c, ok, _m in found)
            rows.extend(found)
    return evidence, rows
