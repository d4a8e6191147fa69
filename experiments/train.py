"""Train a CNN on MNIST, the math-symbols set or any nncore .npz dataset.

Usage::

    python experiments/train.py                       # the default MNIST model -> weights/mnist_cnn.npz
    python experiments/train.py --dataset symbols --epochs 20
    python experiments/train.py --conv 32,64 --dense 128 --optimizer sgd --lr 0.05 --schedule step
    python experiments/train.py --resume              # continue runs/mnist_cnn/checkpoint.npz

The defaults (conv 32,48 + BatchNorm, dense 256 + BatchNorm, no dropout, Adam
6e-3 with a one-epoch warm-up and a cosine decay, label smoothing 0.1, 8 epochs
of batch 256, augmentation on, seed 0; fused layers while training) reached
99.54% MNIST test accuracy (the shipped weights/mnist_cnn.npz); seeds 1 and 2
gave 99.53% and 99.55%. README.md ("Quickstart") gives the measured times and
the runs behind the recipe.

Writes weights/<name>.npz (the best-validation weights, their probabilities
calibrated on the validation split by one temperature, with metadata, class
names, class counts, symbols and input scaling) and, in runs/<name>/, history.json,
history.csv, curves.png, filters.png (the first layer's filters) and
checkpoint.npz (updated after every epoch and on Ctrl-C; --resume continues
from it and ends where an uninterrupted run ends).
The data root is --data-dir, else $NNCORE_DATA_DIR, else ./data.
"""

import argparse
import datetime
import math
import os
import shlex
import time

import numpy as np

import nncore
from nncore import backend, kernels
from nncore.architectures import MNIST_SCALING, unfused
from nncore.atomic import check_writable
from nncore.cli import ArgumentParser, int_list, int_list_or_none, nonnegative_int, positive_int, run_cli
from nncore.data import dataset_name, load_data
from nncore.errors import CorruptInputError, MissingInputError, UsageError
from nncore.json_values import finite_or_none
from nncore.training import TrainConfig, Trainer, evaluate
from nncore.training.calibration import calibrate

DEFAULT_LR = {"adam": 6e-3, "sgd": 0.05}


def build_parser():
    d = TrainConfig()
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", help="mnist, symbols, or PATH.npz (from extract_data.py)")
    g.add_argument("--data-dir", default=None, help="data root (default: $NNCORE_DATA_DIR or ./data)")
    g.add_argument("--val-size", type=nonnegative_int, default=5000, help="MNIST validation images split off training")
    g.add_argument("--limit-train", type=positive_int, default=None, metavar="N", help="use only N training images")
    g.add_argument("--limit-eval", type=positive_int, default=None, metavar="N",
                   help="use only N validation and N test images")
    g = p.add_argument_group("model")
    g.add_argument("--conv", type=int_list, default=",".join(map(str, d.conv)), help="channels of each conv block")
    g.add_argument("--dense", type=int_list_or_none, default=",".join(map(str, d.dense)),
                   help="hidden dense layers ('none' for none)")
    g.add_argument("--kernel-size", type=int, default=d.kernel_size, help="conv kernel size (odd)")
    g.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=d.batchnorm,
                   help="batch normalisation")
    g.add_argument("--dropout", type=float, default=d.dropout, help="dropout after each hidden dense layer")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs (default {d.epochs}; with --resume: the checkpoint's)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 6e-3 for adam, 0.05 for sgd)")
    g.add_argument("--optimizer", default=d.optimizer, help="sgd or adam")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD (Nesterov) momentum")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="L2 (SGD) / decoupled (Adam) weight decay")
    g.add_argument("--schedule", default=d.schedule, help="constant, step or cosine")
    g.add_argument("--warmup", type=float, default=d.warmup,
                   help="linear warm-up epochs of the cosine schedule (default: an eighth of the run, at most 1)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                   help="random shifts (2 px), rotations (10 deg) and scaling (0.9-1.1) of training images")
    g.add_argument("--thick", type=float, default=d.thick,
                   help="with --augment, the share of training images whose strokes grow by a pixel "
                        "(for data drawn thinner than the pictures it will read)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help="share of the target spread evenly over the classes (0 = one-hot targets)")
    g.add_argument("--seed", type=nonnegative_int, default=d.seed,
                   help="seed of the weights, shuffling, augmentation, dropout")
    g = p.add_argument_group("running")
    g.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all available)")
    g.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="where to train")
    g.add_argument("--name", default=None, help="run name (default <dataset>_cnn): weights/<name>.npz, runs/<name>/")
    g.add_argument("--weights-dir", default="weights", help="folder for <name>.npz")
    g.add_argument("--out-dir", default=None, help="folder for history, plots, checkpoint (default runs/<name>)")
    g.add_argument("--resume", action="store_true", help="continue from <out-dir>/checkpoint.npz")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    return p


def make_config(args):
    """The validated TrainConfig of the flags (a SettingError names the field; main words it as a flag)."""
    opt = str(args.optimizer).lower()
    lr = args.lr if args.lr is not None else DEFAULT_LR.get(opt, 1e-3)
    return TrainConfig(
        conv=args.conv, dense=args.dense, kernel_size=args.kernel_size, batchnorm=args.batchnorm,
        dropout=args.dropout, batch_size=args.batch_size,
        epochs=args.epochs if args.epochs is not None else TrainConfig.epochs, lr=lr, optimizer=opt,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule, warmup=args.warmup,
        augment=args.augment, thick=args.thick, label_smoothing=args.label_smoothing, seed=args.seed).validate()


def input_scaling_for(images, is_mnist=False):
    """MNIST_SCALING, or {"mean", "std"} of the training images (uint8 (N, 28, 28)) on the [0, 1] scale."""
    if is_mnist:
        return dict(MNIST_SCALING)
    x = np.asarray(images, dtype=np.float64) / 255.0
    std = float(x.std())
    return {"mean": round(float(x.mean()), 6), "std": round(std if std > 1e-6 else 1.0, 6)}


def build_model(config, d):
    """The :func:`nncore.cnn` described by ``config`` for dataset ``d`` (classes, symbols, input scaling).

    Built fused (each conv block and each hidden dense block one layer): the same parameters and the same
    math as the separate layers, in fewer passes over memory.
    """
    return nncore.cnn(conv_channels=config.conv, dense=config.dense, num_classes=len(d["class_names"]),
                      kernel_size=config.kernel_size, batchnorm=config.batchnorm, dropout=config.dropout,
                      class_names=d["class_names"], symbols=d["symbols"],
                      input_scaling=input_scaling_for(d["x_train"], d["meta"]["is_mnist"]), seed=config.seed,
                      fused=True)


def subset(d, limit_train, limit_eval):
    if limit_train:
        d["x_train"], d["y_train"] = d["x_train"][:limit_train], d["y_train"][:limit_train]
    if limit_eval:
        for s in ("val", "test"):
            d[f"x_{s}"], d[f"y_{s}"] = d[f"x_{s}"][:limit_eval], d[f"y_{s}"][:limit_eval]
    return d


def save_first_filters(model, path, name):
    """The first convolution layer's filters as a picture (nncore.explain.pictures.filter_figure)."""
    from nncore.explain import conv_filters
    from nncore.explain.pictures import filter_figure
    from nncore.plots import save_figure
    layer, w = conv_filters(model)[0]
    save_figure(filter_figure(w, f"{name}, layer {layer}"), path)


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    with parser.flag_errors():  # library errors name settings (batch_size=...); users see flags (--batch-size)
        return train(args, argv, parser.given(argv))


#: the flags whose settings a checkpoint holds: its run's data, and its TrainConfig
RUN_FLAGS = ("dataset", "val_size", "limit_train", "limit_eval")
CONFIG_FLAGS = ("conv", "dense", "kernel_size", "batchnorm", "dropout", "batch_size", "lr", "optimizer", "momentum",
                "weight_decay", "schedule", "warmup", "augment", "thick", "label_smoothing", "seed")


def _flag(dest, value=None):
    """How a user writes the flag of ``dest`` (with ``value``): "--lr 0.002", "--no-augment", "--conv 32,48"."""
    name = "--" + dest.replace("_", "-")
    if isinstance(value, bool):
        return name if value else "--no-" + name[2:]
    if isinstance(value, (list, tuple)):
        return f"{name} {','.join(map(str, value)) or 'none'}"
    return name if value is None else f"{name} {value}"


def _same(a, b):
    """Whether a flag's value and a checkpoint's setting (as JSON keeps it) are the same setting."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)
    if isinstance(a, str) and isinstance(b, str):
        return os.path.normpath(a.lower()) == os.path.normpath(b.lower())
    return a == b


def check_flags(args, given, checkpoint=None):
    """Refuse a flag that would have no effect, instead of ignoring it (UsageError, exit 2).

    ``given``: the destinations of the flags on the command line. A new run refuses --momentum
    without SGD, --warmup without the cosine schedule and --val-size for a dataset that brings its
    own validation split. ``checkpoint`` (its metadata, for --resume): the run continues with the
    settings it started with, so a flag may repeat one of them (the original command plus --resume)
    but not change it.
    """
    if checkpoint is None:
        if "momentum" in given and str(args.optimizer).lower() != "sgd":
            raise UsageError("--momentum is SGD's (Adam keeps its own moment averages); drop it or add --optimizer sgd")
        if "warmup" in given and str(args.schedule).lower() != "cosine":
            raise UsageError("--warmup is the cosine schedule's; drop it or use --schedule cosine")
        if "val_size" in given and str(args.dataset).lower() != "mnist":
            raise UsageError(f"--val-size splits MNIST's training images; dataset {args.dataset} has its own "
                             "validation split: drop --val-size")
        return
    held = {**{k: (checkpoint.get("run") or {}).get(k) for k in RUN_FLAGS}, **checkpoint.get("config", {})}
    for dest in [d for d in RUN_FLAGS + CONFIG_FLAGS if d in given]:
        mine = getattr(args, dest)
        if not _same(mine, held.get(dest)):
            raise UsageError(f"{_flag(dest, mine)} differs from the checkpoint's {_flag(dest, held.get(dest))}: "
                             f"--resume continues the run with the settings it started with; drop "
                             f"{_flag(dest)}, or start a new run without --resume")


def train(args, argv, given=()):
    say = (lambda line: None) if args.quiet else print
    config = None if args.resume else make_config(args)
    if not args.resume:
        check_flags(args, given)
    if args.threads:
        nncore.set_num_threads(args.threads)
    if args.device == "gpu":
        backend.import_cupy()  # DeviceError (exit 7) with the reason when no usable GPU
    name = args.name or f"{dataset_name(args.dataset)}_cnn"
    out_dir = args.out_dir or os.path.join("runs", name)
    weights_path = os.path.join(args.weights_dir, f"{name}.npz")
    check_writable(weights_path)
    check_writable(os.path.join(out_dir, "checkpoint.npz"))
    ckpt_path = os.path.join(out_dir, "checkpoint.npz")
    command = "python experiments/train.py " + shlex.join(argv)
    resume_hint = f"python experiments/train.py --resume --name {shlex.quote(name)}" + (
        f" --out-dir {shlex.quote(out_dir)}" if args.out_dir else "")
    run_info = {"dataset": args.dataset, "limit_train": args.limit_train, "limit_eval": args.limit_eval,
                "val_size": args.val_size, "name": name}
    if args.resume:
        if not os.path.isfile(ckpt_path):
            raise MissingInputError(f"no checkpoint at {ckpt_path} to resume; start a run without --resume "
                                    "(or give the --name/--out-dir of the interrupted run)")
        ckpt = nncore.read_header(ckpt_path).get("metadata")
        ckpt = ckpt.get("checkpoint") if isinstance(ckpt, dict) else None
        if not isinstance(ckpt, dict):
            raise CorruptInputError(f"{ckpt_path} is a weights file, not a training checkpoint; "
                                    "start a run without --resume")
        check_flags(args, given, ckpt)
        if isinstance(ckpt.get("run"), dict) and "dataset" in ckpt["run"]:
            run_info = {**run_info, **ckpt["run"]}
    start = time.perf_counter()
    if args.device == "cpu":
        kernels.warm_up()           # numba sets itself up while the data loads
    d = load_data(run_info["dataset"], args.data_dir, run_info["val_size"], log=say)
    subset(d, run_info["limit_train"], run_info["limit_eval"])
    common = dict(out_dir=out_dir, progress=not args.quiet, log=say, run_info=run_info, resume_hint=resume_hint)
    if args.resume:
        trainer = Trainer.resume(ckpt_path, d["x_train"], d["y_train"], d["x_val"], d["y_val"],
                                 epochs=args.epochs, device=args.device, **common)
        say(f"resuming {ckpt_path} at epoch {trainer.epoch + 1}, step {trainer.step} "
            f"(settings from the checkpoint)")
    else:
        model = build_model(config, d)
        if args.device == "gpu":
            model.to("gpu")
        trainer = Trainer(model, config, d["x_train"], d["y_train"], d["x_val"], d["y_val"], **common)
        say(model.summary())
    say(f"training on {len(d['y_train'])} images, validating on {len(d['y_val'])}, "
        f"{trainer.config.epochs} epochs of {trainer.steps_per_epoch} steps")
    trainer.fit()
    model = trainer.restore_best()
    calibration = calibrate(model, d["x_val"], d["y_val"]) if len(d["y_val"]) else None
    if calibration:
        say(f"probabilities calibrated on the validation split: temperature {calibration['temperature']:.3f} "
            f"(validation NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f})")
    test = evaluate(model, d["x_test"], d["y_test"]) if len(d["y_test"]) else {"accuracy": float("nan")}
    cfg = trainer.config
    meta = {
        "dataset": run_info["dataset"], "test_accuracy": finite_or_none(test["accuracy"]),
        "val_accuracy": finite_or_none(trainer.best["val_acc"]), "best_epoch": trainer.best["epoch"],
        "epochs": cfg.epochs,
        "train_images": int(len(d["y_train"])), "test_images": int(len(d["y_test"])),
        "class_counts": np.bincount(d["y_train"], minlength=len(d["class_names"])).tolist(),
        "calibration": calibration,
        "hyperparameters": cfg.to_dict(), "command": command, "wall_time_s": round(trainer.elapsed, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nncore_version": nncore.__version__,
        "history": [{k: finite_or_none(v) for k, v in row.items()} for row in trainer.history],
    }
    nncore.save_model(unfused(model), weights_path, metadata=meta)   # layer by layer: explain shows every stage
    curves = os.path.join(out_dir, "curves.png")
    from nncore.plots import plot_history
    plot_history(trainer.history, curves, title=f"{name}: {run_info['dataset']}")
    save_first_filters(model, os.path.join(out_dir, "filters.png"), name)
    wall = time.perf_counter() - start
    best = (f"best validation {100 * trainer.best['val_acc']:.2f}% at epoch {trainer.best['epoch']}"
            if math.isfinite(trainer.best["val_acc"]) else "no validation set: last epoch kept")
    print(f"test accuracy {100 * test['accuracy']:.2f}% on {len(d['y_test'])} images ({best}); "
          f"wall time {wall:.1f} s (training {trainer.elapsed:.1f} s in all sessions)")
    print(f"weights: {weights_path}; history, curves and checkpoint: {out_dir}/")
    return 0


if __name__ == "__main__":
    run_cli(main)
