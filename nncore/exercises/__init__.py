"""Exercise mode for lecturers: blank the solutions in a student copy, then grade it and name the bug.

=================  ==============================================================
``catalogue``      the exercises, their one-line tasks, ``--only`` parsing
``regions``        find the ``# exercise: <name>`` ... ``# end exercise`` regions, replace their bodies
``make``           write the student copy (stubs, README, reference kernels by default)
``probes``         each exercise's seeded cases, gradient checks and the training run; runs in
                   the child process on whichever ``nncore`` is importable
``child``          the child process's script (``PYTHONPATH=<student folder>``)
``checks``         compare the student's arrays with the solution's (shape, worst index)
``hints``          the catalogue of common mistakes and the probes that diagnose them
``grade``          run both children per exercise, score, and format the report
=================  ==============================================================

The command line is ``experiments/exercises.py`` (``make`` and ``grade``). This package is left
out of the student copy: its hints compute known-wrong variants of the solutions.
"""
