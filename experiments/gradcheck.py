"""Print a gradient-check table for every nncore layer and a small CNN (lecture slide material).

    python experiments/gradcheck.py [--kernels numba|reference] [--h 1e-6]

Each row compares a layer's analytic gradient (its ``backward``) with central
differences in float64; see nncore/gradcheck.py for the method.
"""

import time

import numpy as np

from nncore import gradcheck
from nncore.cli import ArgumentParser, positive_float, run_cli
from nncore.gradcheck import away_from_zero, distinct_values
from nncore.kernels import set_cpu_kernels
from nncore.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    ConvReLUPool,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ReLU,
)

F64 = np.float64


def layer_cases(rng):
    """(label, layer, input, training) for every layer type (inputs from ``rng``, in this order);
    ``training=False`` checks the evaluation-mode backward (``eval_forward``, what saliency maps use).

    ReLU inputs stay away from the kink and max-pool inputs have no ties (see nncore.gradcheck).
    """
    drop = Dropout(0.5, rng=0)
    drop.fixed_mask = (rng.random((4, 6)) >= 0.5) * 2.0
    bn2 = BatchNorm(5, dtype=F64)
    bn4 = BatchNorm(3, dtype=F64)
    bn_eval = BatchNorm(3, dtype=F64)            # evaluation mode: the running statistics, as a trained model has
    bn_eval.buffers["running_mean"] = np.array([0.5, -1.0, 0.2])
    bn_eval.buffers["running_var"] = np.array([2.0, 0.5, 1.5])
    return [
        ("Conv2D 3x3 s1 p1", Conv2D(3, 4, 3, padding=1, dtype=F64, rng=0), rng.standard_normal((2, 3, 6, 6)), True),
        ("Conv2D 3x3 s2 p1", Conv2D(2, 3, 3, stride=2, padding=1, dtype=F64, rng=1),
         rng.standard_normal((2, 2, 7, 7)), True),
        ("Conv2D 5x5 s1 'same'", Conv2D(2, 2, 5, padding="same", dtype=F64, rng=2),
         rng.standard_normal((1, 2, 6, 5)), True),
        ("ConvReLUPool 3x3 p1, pool 2", ConvReLUPool(2, 3, 3, padding=1, dtype=F64, rng=0),
         np.random.default_rng(16).standard_normal((2, 2, 6, 6)), True),
        ("MaxPool2D 2 s2", MaxPool2D(2), distinct_values((2, 3, 6, 6), rng), True),
        ("MaxPool2D 3 s2", MaxPool2D(3, 2), distinct_values((2, 2, 7, 7), rng), True),
        ("AvgPool2D 2 s2", AvgPool2D(2), rng.standard_normal((2, 3, 6, 6)), True),
        ("Dense 7->5", Dense(7, 5, dtype=F64, rng=3), rng.standard_normal((4, 7)), True),
        ("ReLU", ReLU(), away_from_zero((3, 8), rng), True),
        ("LeakyReLU 0.1", LeakyReLU(0.1), away_from_zero((3, 8), rng), True),
        ("Flatten", Flatten(), rng.standard_normal((2, 3, 2, 2)), True),
        ("Dropout 0.5 (fixed mask)", drop, rng.standard_normal((4, 6)), True),
        ("BatchNorm dense (train)", bn2, rng.standard_normal((6, 5)), True),
        ("BatchNorm conv (train)", bn4, rng.standard_normal((3, 3, 4, 4)), True),
        ("BatchNorm conv (evaluation)", bn_eval, rng.standard_normal((3, 3, 4, 4)), False),
    ]


def main(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", choices=["numba", "reference"], default="numba", help="CPU kernels to check")
    parser.add_argument("--h", type=positive_float, default=1e-6, help="finite-difference step")
    args = parser.parse_args(argv)
    set_cpu_kernels(args.kernels)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    results = []
    for label, layer, x, training in layer_cases(rng):
        for r in gradcheck.check_layer(layer, x, training=training, h=args.h):
            r.layer = label
            results.append(r)
    print(f"Single layers, float64, central differences h={args.h:g}, "
          f"tolerance {gradcheck.LAYER_TOLERANCE:g} ({args.kernels} kernels)\n")
    print(gradcheck.format_table(results))
    net = gradcheck.check_model(gradcheck.small_cnn(), rng.standard_normal((3, 1, 8, 8)), np.array([0, 2, 1]), h=args.h)
    print(f"\nWhole network (small CNN, softmax cross-entropy), tolerance {gradcheck.NETWORK_TOLERANCE:g}\n")
    print(gradcheck.format_table(net))
    failed = sum(not r.passed for r in results + net)
    print(f"\n{len(results) + len(net) - failed} passed, {failed} failed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
