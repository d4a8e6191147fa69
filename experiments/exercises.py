"""Exercise mode for lecturers: make a student copy of nncore with layers blanked, and grade it.

    python experiments/exercises.py make DIR [--only conv,maxpool,...]
    python experiments/exercises.py grade DIR [--only ...] [--seed 0] [--time-limit 60] [--no-train]

``make`` writes DIR/nncore (the package, the chosen solution regions replaced by stubs that raise
NotImplementedError) and DIR/README.md for the students; DIR must be new or empty. ``grade`` runs
every chosen exercise of DIR in a child process and prints a table (exercise, checks passed, score)
with the failures and hints; it exits 1 when any check fails. Exercises: im2col, col2im, conv,
maxpool, relu, dense, softmax, batchnorm, dropout, sgd (see nncore/exercises/).
"""

import os
import time

from nncore.cli import ArgumentParser, positive_float, run_cli
from nncore.errors import MissingInputError
from nncore.exercises.catalogue import EXERCISES, parse_only


def build_parser():
    p = ArgumentParser(description="Make a student copy of nncore with exercises blanked, or grade one.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    only = f"comma-separated exercises (default: all of {','.join(EXERCISES)})"
    make = sub.add_parser("make", help="write a student copy into a new or empty folder")
    make.add_argument("dir", help="the folder to write (new or empty)")
    make.add_argument("--only", default=None, help=only)
    grade = sub.add_parser("grade", help="grade a student copy (the folder holding nncore/)")
    grade.add_argument("dir", help="the student's folder, the one holding nncore/")
    grade.add_argument("--only", default=None, help=only)
    grade.add_argument("--seed", type=int, default=0, help="seed of the random test inputs")
    grade.add_argument("--time-limit", type=positive_float, default=60.0, help="seconds allowed per exercise")
    grade.add_argument("--no-train", action="store_true", help="skip the training runs")
    return p


def main(argv):
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    names = parse_only(args.only)
    if args.command == "make":
        from nncore.exercises.make import make_student_copy
        make_student_copy(args.dir, names)
        print(f"wrote {os.path.join(args.dir, 'nncore')} with {len(names)} exercise(s) blanked: {', '.join(names)}")
        print(f"hand out the folder with {os.path.join(args.dir, 'README.md')}; grade it with: "
              f"python experiments/exercises.py grade {args.dir}")
        return 0
    if not os.path.isfile(os.path.join(args.dir, "nncore", "__init__.py")):
        raise MissingInputError(f"{args.dir} holds no nncore package; give the folder that holds nncore/")
    from nncore.exercises.grade import format_report, grade
    start = time.perf_counter()
    grades = grade(args.dir, names, seed=args.seed, train=not args.no_train, time_limit=args.time_limit)
    print(format_report(grades))
    print(f"\ngraded {len(grades)} exercise(s) in {time.perf_counter() - start:.1f} s")
    return 0 if all(g.ok for g in grades) else 1


if __name__ == "__main__":
    run_cli(main)
