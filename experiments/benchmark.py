"""Benchmark: train and run the reference CNN and the default model with nncore and with PyTorch, side by side.

Five modes, each with only the flags it uses (``benchmark.py MODE --help``)::

    python experiments/benchmark.py                       # compare (the default mode), table
    python experiments/benchmark.py --steps 30 --json     # + one JSON line at the end
    python experiments/benchmark.py --no-torch            # nncore only
    python experiments/benchmark.py first-layer           # the first layer: direct vs im2col + GEMM
    python experiments/benchmark.py winograd              # the second layer: Winograd vs im2col + GEMM
    python experiments/benchmark.py gpu                   # nncore (CuPy) beside PyTorch CUDA
    python experiments/benchmark.py startup               # train.py's start-up, cold and warm

``compare`` times, interleaved round by round (so that load from other
processes hits every framework alike):

* a training step (forward, softmax cross-entropy, backward, optimizer
  update) at ``--batch`` (128) in float32, and
* inference (forward only) at ``--infer-batch`` (1000),

of two models:

* ref-cnn (no BatchNorm, SGD with momentum): nncore with its numba kernels,
  fused and layer by layer, nncore with the plain-NumPy reference kernels
  (``--skip-reference`` leaves them out), and PyTorch CPU in its default NCHW
  layout and channels-last;
* the default model of ``experiments/train.py`` (TrainConfig's defaults: conv
  blocks Conv2D -> BatchNorm -> ReLU -> MaxPool2D, a dense block Dense ->
  BatchNorm -> ReLU -> Dropout, Adam): nncore fused (ConvBNReLUPool,
  DenseBNReLUDropout) and layer by layer, and the same model in PyTorch
  (Conv2d(bias=False) + BatchNorm2d + ReLU + MaxPool2d, Linear(bias=False) +
  BatchNorm1d + ReLU + Dropout, Adam), NCHW and channels-last,

all with the same ``--threads``. Beside each time it reports the minor page
faults of an iteration (median): with glibc's malloc, PyTorch hands large
buffers back to the system and takes them again, zeroed, at the next call
(inference at batch 1000 above all); nncore's fused layers take none. Run with
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296`` in the
environment, glibc keeps freed memory in the process, and PyTorch's faults
drop to about none (glibc 2.36).

It then reports, for nncore (numba): a per-layer breakdown of a training step
of each fused model (one kernel call per fused layer and pass), the share of
ref-cnn's step spent inside matrix products (the GEMMs are timed separately
with the same shapes and memory layouts), the peak resident memory of
training at ``--batch`` (one fresh subprocess per framework and model), the
start-up time with numba's on-disk cache cold (a fresh ``NUMBA_CACHE_DIR``)
and warm for each fused model, and the estimated time of one MNIST epoch
(60000 images).

``first-layer`` and ``winograd`` time one fused layer of ref-cnn, and the whole
inference, with the numba kernels' path allowed and kept off (by
:func:`nncore.kernels.cpu.conv_algorithms`, so the layer falls back to im2col
and one GEMM), interleaved. ``gpu`` times nncore through CuPy and PyTorch CUDA
at several batch sizes. ``startup`` runs ``train.py`` itself (the default
model on MNIST, from ``NNCORE_DATA_DIR``) in fresh processes up to the end of
its compile step, first on an empty numba cache, then on the cache that run
filled, ``--rounds`` times: the time from launch to the compile step (imports,
reading MNIST, building the model), the compile step's own wait, and their sum.
A flag of another mode is refused (exit 2).

Timings are wall-clock medians with the interquartile range. Run on an idle
machine (check ``uptime``); other processes distort every figure.
"""

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from nncore import backend, kernels, threads
from nncore.architectures import cnn, ref_cnn
from nncore.cli import ArgumentParser, int_list, nonnegative_int, positive_int, run_cli
from nncore.errors import NncoreError, UsageError
from nncore.layers import Conv2D, ConvReLUPool, Dense
from nncore.losses import SoftmaxCrossEntropy
from nncore.optim import SGD
from nncore.training.config import TrainConfig

MNIST_TRAIN_IMAGES = 60000
LR, MOMENTUM = 0.01, 0.9


# ----------------------------------------------------------------------------- helpers

def stats(seconds, images, faults=None):
    """Median and IQR of images/s (and the median time) from per-iteration times; with ``faults``
    (minor page faults per iteration), their median too."""
    rates = sorted(images / t for t in seconds)
    q = statistics.quantiles(rates, n=4) if len(rates) >= 2 else [rates[0]] * 3
    out = {"img_s": statistics.median(rates), "q1": q[0], "q3": q[2],
           "min": rates[0], "max": rates[-1], "ms": 1e3 * statistics.median(seconds)}
    if faults is not None:
        out["faults"] = statistics.median(faults)
    return out


def with_faults(call):
    """(the seconds ``call()`` returns, this process's minor page faults meanwhile): a fault is a page
    of memory the allocator gave back to the system and takes again, which the kernel zeroes first."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = call()
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def batch_data(batch, rng):
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return x, y


def import_torch(args):
    """(torch, None) or (None, reason)."""
    if args.no_torch:
        return None, "--no-torch given"
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install
        return None, f"torch cannot be imported ({type(exc).__name__}: {exc})"
    return torch, None


def default_cnn(fused, seed=0):
    """The model ``experiments/train.py`` trains by default (TrainConfig's architecture), and its optimizer."""
    cfg = TrainConfig()
    model = cnn(conv_channels=cfg.conv, dense=cfg.dense, kernel_size=cfg.kernel_size, batchnorm=cfg.batchnorm,
                dropout=cfg.dropout, seed=seed, fused=fused).train()
    return model, cfg.build_optimizer(model)


def torch_default_cnn(torch):
    """The default model in PyTorch, block for block, and its optimizer (momentum 0.1 is nncore's 0.9)."""
    cfg, nn = TrainConfig(), torch.nn
    layers, c, size = [], 1, 28
    for ch in cfg.conv:
        layers += [nn.Conv2d(c, ch, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=not cfg.batchnorm)]
        layers += [nn.BatchNorm2d(ch)] if cfg.batchnorm else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        c, size = ch, size // 2
    layers.append(nn.Flatten())
    features = c * size * size
    for d in cfg.dense:
        layers += [nn.Linear(features, d, bias=not cfg.batchnorm)] + ([nn.BatchNorm1d(d)] if cfg.batchnorm else [])
        layers += [nn.ReLU()] + ([nn.Dropout(cfg.dropout)] if cfg.dropout else [])
        features = d
    model = nn.Sequential(*layers, nn.Linear(features, 10))
    opt = (torch.optim.Adam(model.parameters(), lr=cfg.lr) if cfg.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True))
    return model, opt


#: the two models of the compare mode
MODELS = ("ref-cnn", "default")


def torch_ref_cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


# ----------------------------------------------------------------------------- the contenders

class NncoreRunner:
    """nncore's ref-cnn (SGD) or default model (its optimizer) with a given CPU kernel set ("numba" or
    "reference"), fused or layer by layer."""

    def __init__(self, kernels, args, rng, fused=True, model="ref-cnn"):
        self.kernels = kernels
        if model == "default":
            self.model, self.opt = default_cnn(fused)
        else:
            self.model = ref_cnn(seed=0, fused=fused).train()
            self.opt = SGD(self.model, lr=LR, momentum=MOMENTUM)
        self.loss = SoftmaxCrossEntropy()
        self.x, self.y = batch_data(args.batch, rng)
        self.xi = rng.standard_normal((args.infer_batch, 1, 28, 28)).astype(np.float32)

    def train_step(self):
        kernels.set_cpu_kernels(self.kernels)
        t = time.perf_counter()
        self.model.train_step(self.x, self.y, self.loss, self.opt)
        return time.perf_counter() - t

    def infer(self):
        kernels.set_cpu_kernels(self.kernels)
        t = time.perf_counter()
        self.model.forward(self.xi, training=False)
        return time.perf_counter() - t


class TorchRunner:
    """PyTorch's ref-cnn (SGD) or default model (Adam), NCHW (default) or channels-last."""

    def __init__(self, torch, channels_last, args, rng, model="ref-cnn"):
        self.torch = torch
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if model == "default":
            self.model, self.opt = torch_default_cnn(torch)
            self.model = self.model.to(memory_format=fmt)
        else:
            self.model = torch_ref_cnn(torch).to(memory_format=fmt)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = torch.nn.CrossEntropyLoss()
        x, y = batch_data(args.batch, rng)
        self.x = torch.from_numpy(x).contiguous(memory_format=fmt)
        self.y = torch.from_numpy(y)
        xi = rng.standard_normal((args.infer_batch, 1, 28, 28)).astype(np.float32)
        self.xi = torch.from_numpy(xi).contiguous(memory_format=fmt)

    def train_step(self):
        t = time.perf_counter()
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t

    def infer(self):
        t = time.perf_counter()
        self.model.eval()
        with self.torch.inference_mode():
            self.model(self.xi)
        return time.perf_counter() - t


# ----------------------------------------------------------------------------- GPU

def _gpu_rates(step, sync, images, warmup, steps):
    """Median images/s of ``step()`` on the GPU, timed between device synchronisations."""
    for _ in range(warmup):
        step()
    sync()
    seconds = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        seconds.append(time.perf_counter() - t)
    return stats(seconds, images)


def gpu_main(args):
    """ref-cnn on the GPU: nncore (CuPy) and, when present, PyTorch CUDA, at several batch sizes."""
    cp = backend.import_cupy()  # DeviceError with the real reason when there is no usable GPU
    train_batches, infer_batches = args.gpu_train_batches, args.gpu_infer_batches
    sync = cp.cuda.Device().synchronize
    torch, torch_note = import_torch(args)
    if torch is not None and not torch.cuda.is_available():
        torch, torch_note = None, "torch has no CUDA device"
    rng = np.random.default_rng(0)
    rows = []
    for kind, batches in (("train", train_batches), ("infer", infer_batches)):
        for b in batches:
            x, y = batch_data(b, rng)
            model = ref_cnn(seed=0, fused=True).to("gpu").train()
            opt, loss = SGD(model, lr=LR, momentum=MOMENTUM), SoftmaxCrossEntropy()
            xg, yg = cp.asarray(x), cp.asarray(y)
            if kind == "train":
                step = functools.partial(model.train_step, xg, yg, loss, opt)
            else:
                step = functools.partial(model.forward, xg, training=False)
            r = _gpu_rates(step, sync, b, args.warmup, args.steps)
            row = {"kind": kind, "batch": b, "nncore": r}
            if torch is not None:
                dev = torch.device("cuda")
                tm = torch_ref_cnn(torch).to(dev)
                topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM)
                tl = torch.nn.CrossEntropyLoss()
                tx, ty = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

                def torch_train(tm=tm, topt=topt, tl=tl, tx=tx, ty=ty):  # bind this iteration's objects
                    topt.zero_grad(set_to_none=True)
                    tl(tm(tx), ty).backward()
                    topt.step()

                def torch_infer(tm=tm, tx=tx):
                    with torch.inference_mode():
                        tm(tx)

                row["torch"] = _gpu_rates(torch_train if kind == "train" else torch_infer,
                                          torch.cuda.synchronize, b, args.warmup, args.steps)
            rows.append(row)
    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"ref-cnn on {name}, float32, CuPy {cp.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else f", PyTorch left out: {torch_note}"))
    print(f"{'':6} {'batch':>6} {'nncore img/s':>14} {'torch img/s':>14} {'ratio':>7}")
    for row in rows:
        t = row.get("torch")
        print(f"{row['kind']:6} {row['batch']:>6} {row['nncore']['img_s']:>14,.0f} "
              f"{(t['img_s'] if t else float('nan')):>14,.0f} "
              f"{(row['nncore']['img_s'] / t['img_s'] if t else float('nan')):>7.2f}")
    for row in rows:
        if row["kind"] == "train" and row["batch"] == 256:
            print(f"estimated MNIST epoch at batch 256: {MNIST_TRAIN_IMAGES / row['nncore']['img_s']:.2f} s")
    if args.json:
        print(json.dumps({"device": name, "rows": rows, "torch_available": torch is not None,
                          "torch_note": torch_note}))
    return 0


# ----------------------------------------------------------------------------- nncore details

def layer_breakdown(args, rng, model="ref-cnn", fused=True):
    """Median forward and backward milliseconds of each layer in a model's training step (numba)."""
    kernels.set_cpu_kernels("numba")
    if model == "default":
        model, opt = default_cnn(fused)
    else:
        model = ref_cnn(seed=0, fused=True).train()
        opt = SGD(model, lr=LR, momentum=MOMENTUM)
    loss_fn = SoftmaxCrossEntropy()
    x, y = batch_data(args.batch, rng)
    fwd = [[] for _ in model.layers]
    bwd = [[] for _ in model.layers]
    rest, total = [], []
    for it in range(args.warmup + args.steps):
        t_start = time.perf_counter()
        h = x
        tf = []
        for layer in model.layers:
            t = time.perf_counter()
            h = layer.forward(h, training=True)
            tf.append(time.perf_counter() - t)
        t = time.perf_counter()
        loss_fn.forward(h, y)
        d = loss_fn.backward()
        t_loss = time.perf_counter() - t
        tb = [0.0] * len(model.layers)
        for i in reversed(range(len(model.layers))):
            t = time.perf_counter()
            d = model.layers[i].backward(d)
            tb[i] = time.perf_counter() - t
        t = time.perf_counter()
        opt.step()
        t_opt = time.perf_counter() - t
        if it >= args.warmup:
            for i in range(len(model.layers)):
                fwd[i].append(tf[i])
                bwd[i].append(tb[i])
            rest.append(t_loss + t_opt)
            total.append(time.perf_counter() - t_start)
    rows = [{"layer": repr(layer), "fwd_ms": 1e3 * statistics.median(f), "bwd_ms": 1e3 * statistics.median(b)}
            for layer, f, b in zip(model.layers, fwd, bwd)]
    rows.append({"layer": f"loss + {type(opt).__name__} update", "fwd_ms": 1e3 * statistics.median(rest),
                 "bwd_ms": 0.0})
    return rows, 1e3 * statistics.median(total)


def gemm_shapes(model, batch):
    """The matrix products of one training step: (name, A shape, B shape, transpose flags, function).

    The function is the one the kernels call: nncore.threads.matmul. Each
    convolution takes the path the CPU kernels in use choose for it (the
    reference kernels: always im2col). A fused first layer that convolves
    directly (no im2col) has no product to list; a layer on the Winograd path
    lists its three stacks of 36 products, timed chunk by chunk on each thread
    as the pipelines in nncore.kernels.cpu.winograd run them.
    """
    shapes = [model.input_shape]
    for layer in model.layers:
        shapes.append(layer.output_shape(shapes[-1]))
    out = []
    for layer, s_in, _s_out in zip(model.layers, shapes, shapes[1:]):
        path = conv_path(layer, (batch,) + tuple(s_in)) if isinstance(layer, Conv2D) else None
        if path == "direct":
            continue
        if path == "winograd":
            from nncore.kernels import cpu as cpu_kernels  # not at the top: the start-up child times this import
            f, c = layer.params["W"].shape[:2]
            th, tw = cpu_kernels.winograd_tile_counts(s_in[1], s_in[2], 1)
            per = th * tw                                    # 6x6 input tiles per image
            t, chunk = batch * per, cpu_kernels.WINOGRAD_CHUNK * per
            out.append((f"{layer!r} fwd  V @ U.T (36x)", (36, t, c), (36, f, c), False, True, _chunked(chunk, False)))
            out.append((f"{layer!r} dW   Z.T @ V (36x)", (36, t, f), (36, t, c), True, False, _chunked(chunk, True)))
            if layer.needs_input_grad:
                out.append((f"{layer!r} dV   Z @ U (36x)", (36, t, f), (36, f, c), False, False,
                            _chunked(chunk, False)))
            continue
        if isinstance(layer, Conv2D):
            f, c, kh, kw = layer.params["W"].shape
            _, oh, ow = Conv2D.output_shape(layer, s_in)   # before a fused layer's pooling
            k, m = c * kh * kw, batch * oh * ow
            out.append((f"{layer!r} fwd  W2 @ cols", (f, k), (k, m), False, False, threads.matmul))
            out.append((f"{layer!r} dW   d2 @ cols.T", (f, m), (k, m), False, True, threads.matmul))
            if layer.needs_input_grad:
                out.append((f"{layer!r} dcols W2.T @ d2", (f, k), (f, m), True, False, threads.matmul))
        elif isinstance(layer, Dense):
            d, m = layer.params["W"].shape
            out.append((f"{layer!r} fwd  x @ W", (batch, d), (d, m), False, False, threads.matmul))
            out.append((f"{layer!r} dW   x.T @ dout", (batch, d), (batch, m), True, False, threads.matmul))
            if layer.needs_input_grad:
                out.append((f"{layer!r} dx   dout @ W.T", (batch, m), (d, m), False, True, threads.matmul))
    return out


def conv_path(layer, x_shape):
    """The algorithm the CPU kernels in use take for a Conv2D or ConvReLUPool layer and an input of x_shape."""
    if kernels.cpu_kernels_name() != "numba":
        return "im2col"
    from nncore.kernels import cpu as cpu_kernels  # not at the top: the start-up child times this import
    w_shape = layer.params["W"].shape
    if isinstance(layer, ConvReLUPool):
        return cpu_kernels.conv_relu_pool_algorithm(x_shape, w_shape, layer.stride, layer.pad, layer.pool,
                                                    layer.pool_stride, layer.needs_input_grad)
    return cpu_kernels.conv2d_algorithm(x_shape, w_shape, layer.stride, layer.pad)


def _chunked(rows, inner):
    """Stacks of products as the Winograd pipelines run them: each thread takes a slice of the tiles and
    multiplies them ``rows`` tiles at a time into a reused buffer, laid out as the pipelines' own.

    ``inner``: the tiles are the inner dimension, a (36, F, T) @ (36, T, C) product; as in
    ``winograd_backward``, each thread adds its chunks' products into its own (36, F, C) slab, the
    slabs are summed, and that sum (the product) is returned. Otherwise each chunk's (36, rows, C)
    product is left in the buffer, which the pipelines' next kernel reads at once: nothing is returned.
    """
    from nncore.kernels.cpu import winograd as cpu_winograd

    def matmul(a, b):
        t = a.shape[2] if inner else a.shape[1]
        slabs = np.zeros((threads.num_slices(t), a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype) if inner else None

        def job(i, lo, hi):
            out = (np.empty(slabs.shape[1:], dtype=a.dtype) if inner
                   else cpu_winograd._stack(rows, b.shape[2], a.dtype))
            for s in range(lo, hi, rows):
                e = min(hi, s + rows)
                if inner:
                    np.matmul(a[:, :, s:e], b[:, s:e], out=out)
                    slabs[i] += out
                else:
                    np.matmul(a[:, s:e], b, out=out[:, :e - s])

        threads.run_slices(t, job)
        return slabs.sum(axis=0) if inner else None
    return matmul


def gemm_times(args, rng):
    """Median milliseconds of each GEMM of a training step, same shapes and layouts as the layers use."""
    kernels.set_cpu_kernels("numba")
    model = ref_cnn(seed=0, fused=True).train()   # the contender whose step the GEMM share refers to
    rows = []
    for name, sa, sb, ta, tb, fn in gemm_shapes(model, args.batch):
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        a_, b_ = (np.swapaxes(a, -1, -2) if ta else a), (np.swapaxes(b, -1, -2) if tb else b)
        times = []
        for it in range(args.warmup + args.steps):
            t = time.perf_counter()
            fn(a_, b_)
            if it >= args.warmup:
                times.append(time.perf_counter() - t)
        rows.append({"gemm": name, "ms": 1e3 * statistics.median(times)})
    return rows


# ----------------------------------------------------------------------------- subprocesses

def child_main(args):
    """Hidden modes run in a fresh interpreter: peak RSS and start-up times. Prints one JSON line."""
    rng = np.random.default_rng(0)
    model = "default" if "default" in args.child else "ref-cnn"
    if args.child.startswith("start"):
        t0 = time.perf_counter()
        import nncore.kernels.cpu  # noqa: F401  (numba, compiled kernels' cache index)
        kernels.set_cpu_kernels("numba")
        threads.set_num_threads(args.threads)
        t_import = time.perf_counter() - t0
        runner = NncoreRunner("numba", args, rng, model=model)
        t0 = time.perf_counter()
        helpers = kernels.precompile(runner.model, optimizer=runner.opt)  # as train.py does before its first step
        t_precompile = time.perf_counter() - t0
        first = runner.train_step()
        steady = statistics.median(runner.train_step() for _ in range(3))
        t = runner.infer()  # compiles anything inference alone needs
        steady_inf = min(runner.infer() for _ in range(2))
        print(json.dumps({"import_s": t_import, "precompile_s": t_precompile, "helpers": helpers,
                          "first_step_s": first, "steady_step_s": steady,
                          "first_infer_extra_s": max(0.0, t - steady_inf)}))
        return 0
    if not args.child.startswith("rss-torch"):     # rss-nncore, rss-default, rss-default-layers
        threads.set_num_threads(args.threads)
        runner = NncoreRunner("numba", args, rng, fused=not args.child.endswith("-layers"), model=model)
        for _ in range(args.steps):
            runner.train_step()
    else:                                   # "rss-torch", "rss-torch-default" (argparse checks the choices)
        torch, why = import_torch(args)
        if torch is None:
            raise UsageError(why)
        torch.set_num_threads(args.threads)
        runner = TorchRunner(torch, False, args, rng, model=model)
        for _ in range(args.steps):
            runner.train_step()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
    return 0


def peak_rss_mb():
    """This process's peak resident memory in MB: VmHWM (ru_maxrss survives exec, so it can show the parent's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(mode, args, env=None, steps=None):
    cmd = [sys.executable, os.path.abspath(__file__), "compare", "--child", mode, "--threads", str(args.threads),
           "--batch", str(args.batch), "--infer-batch", str(args.infer_batch),
           "--steps", str(steps if steps is not None else max(3, min(args.steps, 10)))]
    if args.no_torch:
        cmd.append("--no-torch")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"subprocess {mode} failed: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_times(args, model="ref-cnn"):
    """Cold (empty numba cache) and warm start-up of a fused model's training, each in a fresh subprocess."""
    child = "start-default" if model == "default" else "start"
    with tempfile.TemporaryDirectory(prefix="nncore-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run_child(child, args, env=env)
        warm = run_child(child, args, env=env)
    out = {}
    for name, r in (("cold", cold), ("warm", warm)):
        if "error" in r:
            out[name] = r
            continue
        added = r["import_s"] + r["precompile_s"] + r["first_step_s"] - r["steady_step_s"]
        out[name] = dict(r, added_s=added)
    return out


# ----------------------------------------------------------------------------- main

MODES = {
    "compare": "the default: ref-cnn and train.py's default model in nncore (numba fused, numba layer by layer, "
               "reference kernels for ref-cnn) beside PyTorch CPU, with per-layer breakdowns, the GEMM share, "
               "peak memory and start-up times",
    "first-layer": "ref-cnn's fused first layer on its two CPU paths, direct vs im2col + GEMM, interleaved",
    "winograd": "ref-cnn's fused second layer on its two CPU paths, Winograd vs im2col + GEMM, interleaved",
    "gpu": "nncore through CuPy beside PyTorch CUDA, at several batch sizes",
    "startup": "train.py up to the end of its compile step, in fresh processes, on an empty numba cache and a warm one",
}

#: flags of the single-mode benchmark that became modes
_OLD_FLAGS = {"--device": "run `benchmark.py gpu` for the GPU (the CPU is the other modes)",
              "--first-layer": "run `benchmark.py first-layer`", "--winograd": "run `benchmark.py winograd`"}


def build_parser():
    """The top-level parser and its modes: (parser, {mode name: its sub-parser})."""
    p = ArgumentParser(description="Benchmark nncore on the reference CNN (ref-cnn) and train.py's default model, "
                                   "in one of five modes.",
                       epilog="Without a mode, runs compare: `benchmark.py --steps 40 --json` is "
                              "`benchmark.py compare --steps 40 --json`. `benchmark.py MODE --help` lists its flags.")
    sub = p.add_subparsers(dest="mode", metavar="MODE", title="modes")
    modes = {name: sub.add_parser(name, help=text, description=text) for name, text in MODES.items()}
    q = modes["startup"]
    q.add_argument("--rounds", type=positive_int, default=2, help="cold-then-warm rounds")
    q.add_argument("--threads", type=positive_int, default=2, help="train.py's --threads")
    for name, q in modes.items():
        q.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        if name == "startup":
            continue
        q.add_argument("--steps", type=positive_int, default=30, help="timed iterations per contender")
        q.add_argument("--warmup", type=nonnegative_int, default=5, help="untimed iterations first")
        if name != "gpu":
            q.add_argument("--threads", type=positive_int, default=2, help="threads for every framework")
            q.add_argument("--batch", type=positive_int, default=128, help="training batch size")
            q.add_argument("--infer-batch", type=positive_int, default=1000, help="inference batch size")
    q = modes["compare"]
    q.add_argument("--block", type=positive_int, default=3,
                   help="consecutive iterations per contender in each interleaved round (the first is not timed)")
    q.add_argument("--skip-reference", action="store_true", help="leave out nncore's plain-NumPy kernels")
    q.add_argument("--skip-subprocess", action="store_true",
                   help="skip the peak-memory and start-up measurements (they start fresh interpreters)")
    q.add_argument("--child", choices=["start", "start-default", "rss-nncore", "rss-torch", "rss-default",
                                       "rss-default-layers", "rss-torch-default"],
                   default=None, help=argparse.SUPPRESS)
    for name in ("compare", "gpu"):
        modes[name].add_argument("--no-torch", action="store_true",
                                 help="leave out PyTorch (also automatic when absent)")
    q = modes["gpu"]
    q.add_argument("--gpu-train-batches", type=int_list, default=(128, 256, 1024), metavar="N,N,...",
                   help="training batch sizes")
    q.add_argument("--gpu-infer-batches", type=int_list, default=(128, 1024, 4096), metavar="N,N,...",
                   help="inference batch sizes")
    return p, modes


def parse_args(argv):
    """Parse ``[MODE] flags`` (compare when no mode is given); a flag the mode does not use is a UsageError."""
    argv = [a for a in argv if a != "--debug"]        # run_cli reads --debug; it may stand before the mode
    if argv and not argv[0].startswith("-") and argv[0] not in MODES:
        raise UsageError(f"unknown mode {argv[0]!r}; choose one of {', '.join(MODES)} (see --help)")
    if not argv or argv[0] not in MODES and argv[0] not in ("-h", "--help"):
        argv = ["compare"] + argv
    parser, modes = build_parser()
    args, extra = parser.parse_known_args(argv)
    flags = [a for a in extra if a.startswith("-")]
    if not flags:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    flag = flags[0].split("=")[0]
    owners = [name for name, q in modes.items() if flag in q._option_string_actions]
    if owners:
        raise UsageError(f"the {args.mode} mode has no {flag} flag (it belongs to: {', '.join(owners)}); "
                         f"see `benchmark.py {args.mode} --help`")
    if flag in _OLD_FLAGS:
        raise UsageError(f"{flag} is gone: {_OLD_FLAGS[flag]}")
    parser.error(f"unrecognized arguments: {' '.join(extra)}")


def fmt_rate(s):
    return f"{s['img_s']:>9,.0f}  [{s['q1']:>9,.0f} {s['q3']:>9,.0f}]  {s['ms']:8.2f} ms"


def path_ab_main(args, path, layer_index):
    """One fused layer of ref-cnn (and the whole inference) with a numba-kernel path allowed and kept off, interleaved.

    ``path`` ("direct" or "winograd") is allowed or kept off with :func:`nncore.kernels.cpu.conv_algorithms`;
    kept off, the layer takes im2col and one GEMM ("gemm" in the table and the JSON).
    """
    from nncore.kernels import cpu as cpu_kernels
    rng = np.random.default_rng(0)
    model = ref_cnn(seed=0, fused=True).train()
    layer = model.layers[layer_index]
    x = rng.standard_normal((args.batch,) + model.shapes[layer_index]).astype(np.float32)
    xi = rng.standard_normal((args.infer_batch, 1, 28, 28)).astype(np.float32)
    for on, want in ((True, path), (False, "im2col")):
        with cpu_kernels.conv_algorithms(**{path: on}):
            took = conv_path(layer, x.shape)
        if took != want:
            raise UsageError(f"ref-cnn's layer {layer_index + 1} takes {took!r} with {path} {'on' if on else 'off'}, "
                             f"not {want!r}: nothing to compare")
    labels = {True: path, False: "gemm"}
    times = {on: {"fwd": [], "bwd": [], "infer": []} for on in labels}
    for it in range(args.warmup + args.steps):
        for on in labels:
            with cpu_kernels.conv_algorithms(**{path: on}):
                t0 = time.perf_counter()
                out = layer.forward(x, training=True)
                t1 = time.perf_counter()
                layer.backward(np.ones_like(out))
                t2 = time.perf_counter()
                model.forward(xi, training=False)
                t3 = time.perf_counter()
            if it >= args.warmup:
                for key, dt in (("fwd", t1 - t0), ("bwd", t2 - t1), ("infer", t3 - t2)):
                    times[on][key].append(1e3 * dt)
    med = {labels[on]: {k: statistics.median(v) for k, v in d.items()} for on, d in times.items()}
    print(f"ref-cnn layer {layer_index + 1}, batch {args.batch}; whole-model inference, batch {args.infer_batch}; "
          f"{args.threads} threads; medians of {args.steps}, ms")
    for label in ("gemm", path):
        m = med[label]
        print(f"  {label:<14} layer fwd {m['fwd']:6.2f}  bwd {m['bwd']:6.2f}  inference {m['infer']:7.1f}")
    if args.json:
        print(json.dumps(med))
    return 0


# ----------------------------------------------------------------------------- train.py's start-up

#: run in a fresh interpreter: train.py's main, timed, and ended once its compile step returns
_TRAIN_START = """
import json, os, sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import nncore.training.trainer as trainer
compile_kernels = trainer.compile_kernels

def timed(*args, **kwargs):
    begun = time.perf_counter()
    compile_kernels(*args, **kwargs)
    done = time.perf_counter()
    print(json.dumps({"to_compile_s": begun - start, "compile_s": done - begun, "total_s": done - start}))
    sys.stdout.flush()
    precompile = sys.modules.get("nncore.kernels.cpu.precompile")
    if precompile is not None:
        precompile.wait_for_background()     # its background compile is not left to slow the next run
    os._exit(0)

trainer.compile_kernels = timed
import train
train.main(sys.argv[2:])
"""


def startup_main(args):
    """train.py's start-up, cold (a fresh NUMBA_CACHE_DIR) then warm, ``--rounds`` times."""
    from nncore.data import load_mnist
    load_mnist(download=False, verify=False)     # MissingInputError (one line, exit 3) before any timing
    rows = []
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="nncore-startup-") as tmp:
        for r in range(args.rounds):
            cache = os.path.join(tmp, f"cache{r}")
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            cmd = [sys.executable, "-c", _TRAIN_START, here, "--quiet", "--threads", str(args.threads),
                   "--out-dir", os.path.join(tmp, "run"), "--weights-dir", os.path.join(tmp, "weights")]
            for cache_state in ("empty", "warm"):
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                    raise NncoreError(f"train.py's start-up run failed ({cache_state} cache): {tail}")
                rows.append(dict(json.loads(proc.stdout.strip().splitlines()[-1]), cache=cache_state, round=r + 1))
    print(f"train.py (default model, MNIST, --threads {args.threads}) from launch to the end of its compile step:")
    print(f"{'numba cache':<12} {'round':>5} {'to compile step':>16} {'compile step':>13} {'total':>8}")
    for row in rows:
        print(f"{row['cache']:<12} {row['round']:>5} {row['to_compile_s']:>14.2f} s {row['compile_s']:>11.2f} s "
              f"{row['total_s']:>6.2f} s")
    if args.json:
        print(json.dumps({"threads": args.threads, "rows": rows}))
    return 0


def main(argv):
    args = parse_args(argv)
    if args.mode == "gpu":
        return gpu_main(args)
    if args.mode == "startup":
        return startup_main(args)
    if args.mode == "compare" and args.child:
        return child_main(args)

    threads.set_num_threads(args.threads)
    import nncore.kernels.cpu  # noqa: F401  (configures numba's and BLAS's thread pools)
    if args.mode == "first-layer":
        return path_ab_main(args, "direct", 0)
    if args.mode == "winograd":
        return path_ab_main(args, "winograd", 1)
    torch, torch_note = import_torch(args)
    if torch is not None:
        torch.set_num_threads(args.threads)
    else:
        print(f"PyTorch left out: {torch_note}", file=sys.stderr)

    rng = np.random.default_rng(0)
    runners = {"nncore": NncoreRunner("numba", args, rng, fused=True),
               "nncore-layers": NncoreRunner("numba", args, rng, fused=False)}
    if not args.skip_reference:
        runners["nncore-reference"] = NncoreRunner("reference", args, rng, fused=False)
    if torch is not None:
        runners["torch"] = TorchRunner(torch, False, args, rng)
        runners["torch-channels-last"] = TorchRunner(torch, True, args, rng)
    runners["default"] = NncoreRunner("numba", args, rng, fused=True, model="default")
    runners["default-layers"] = NncoreRunner("numba", args, rng, fused=False, model="default")
    if torch is not None:
        runners["torch-default"] = TorchRunner(torch, False, args, rng, model="default")
        runners["torch-default-channels-last"] = TorchRunner(torch, True, args, rng, model="default")

    # Interleaved in blocks: every round runs each contender for --block consecutive
    # iterations and keeps all but the first. The first iteration after another
    # framework ran absorbs its leftovers (PyTorch's OpenMP workers spin-wait for a
    # while after each op and steal the cores from whoever runs next); discarding it
    # measures every contender in its own steady state, as a real training loop runs.
    train = {k: [] for k in runners}
    infer = {k: [] for k in runners}
    rounds = -(-args.steps // max(1, args.block - 1)) if args.block > 1 else args.steps
    for it in range(args.warmup + rounds):
        for kind, record in (("train", train), ("infer", infer)):
            for name, r in runners.items():
                runs = [with_faults(r.train_step if kind == "train" else r.infer) for _ in range(args.block)]
                if it >= args.warmup:
                    record[name].extend(runs[1:] if args.block > 1 else runs)
    kernels.set_cpu_kernels("numba")
    train_s = {k: stats([t for t, _ in v], args.batch, [f for _, f in v]) for k, v in train.items()}
    infer_s = {k: stats([t for t, _ in v], args.infer_batch, [f for _, f in v]) for k, v in infer.items()}

    layers, step_ms = layer_breakdown(args, rng)
    default_layers, default_step_ms = layer_breakdown(args, rng, model="default")
    unfused_layers, unfused_step_ms = layer_breakdown(args, rng, model="default", fused=False)
    gemms = gemm_times(args, rng)
    gemm_ms = sum(g["ms"] for g in gemms)
    sub = {}
    if not args.skip_subprocess:
        for child in ("rss-nncore", "rss-torch", "rss-default", "rss-default-layers", "rss-torch-default"):
            if torch is not None or "torch" not in child:
                sub[child.replace("-", "_")] = run_child(child, args)
        sub["start"] = start_times(args)
        sub["start_default"] = start_times(args, model="default")

    # ------------------------------------------------------------------ report
    import numba
    from threadpoolctl import threadpool_info
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"ref-cnn and the default model, float32, {args.threads} threads, train batch {args.batch}, "
          f"inference batch {args.infer_batch}, "
          f"{len(train['nncore'])} timed iterations each after {args.warmup} warm-up rounds, "
          f"interleaved in blocks of {args.block}")
    print(f"numba {numba.__version__} ({numba.threading_layer()} layer, {numba.get_num_threads()} threads), "
          f"BLAS: {'; '.join(blas) or '?'} (nncore splits its conv GEMMs over {threads.get_num_threads()} threads)"
          + (f", torch {torch.__version__}" if torch is not None else ", torch: absent")
          + f", load average {load:.2f}")
    print()
    print(f"{'contender':<28} {'train img/s  [IQR]':>40} {'faults':>7}   {'infer img/s  [IQR]':>40} {'faults':>7}")
    for k in runners:
        if k == "default":
            print("default model (train.py's TrainConfig: BatchNorm, Adam):")
        print(f"{k:<28} {fmt_rate(train_s[k]):>40} {train_s[k]['faults']:>7,.0f}   "
              f"{fmt_rate(infer_s[k]):>40} {infer_s[k]['faults']:>7,.0f}")
    print("(faults: minor page faults of the median iteration: memory the allocator had given back to the system "
          "and took again, zeroed by the kernel first)")
    ratios = {}
    if torch is not None:
        for ours, theirs, prefix in (("nncore", "torch", ""), ("default", "torch-default", "default_")):
            for kind, d in (("train", train_s), ("infer", infer_s)):
                ratios[f"{prefix}{kind}_vs_torch"] = d[ours]["img_s"] / d[theirs]["img_s"]
                ratios[f"{prefix}{kind}_vs_torch_channels_last"] = (d[ours]["img_s"]
                                                                    / d[f"{theirs}-channels-last"]["img_s"])
        print()
        for label, prefix in (("ref-cnn", ""), ("default", "default_")):
            print(f"{label + ' nncore / torch:':<38} train {ratios[prefix + 'train_vs_torch']:.2f}x   "
                  f"infer {ratios[prefix + 'infer_vs_torch']:.2f}x")
            print(f"{label + ' nncore / torch channels-last:':<38} "
                  f"train {ratios[prefix + 'train_vs_torch_channels_last']:.2f}x   "
                  f"infer {ratios[prefix + 'infer_vs_torch_channels_last']:.2f}x")
    for label, rows, ms in (("ref-cnn", layers, step_ms), ("default model", default_layers, default_step_ms),
                            ("default model, layer by layer (unfused)", unfused_layers, unfused_step_ms)):
        print()
        print(f"nncore (numba) {label} training step by layer (one kernel call per fused layer and pass), ms "
              f"(median of {args.steps}; step {ms:.2f} ms in this loop):")
        for row in rows:
            print(f"  {row['layer']:<58} fwd {row['fwd_ms']:7.2f}   bwd {row['bwd_ms']:7.2f}")
    print()
    print("GEMMs of one step, timed alone with the same shapes and layouts, ms:")
    for g in gemms:
        print(f"  {g['gemm']:<70} {g['ms']:7.2f}")
    share = gemm_ms / step_ms
    print(f"  total {gemm_ms:.2f} ms = {100 * share:.0f}% of the step; outside the GEMMs "
          f"{step_ms - gemm_ms:.2f} ms = {100 * (1 - share):.0f}%")
    if sub:
        print()
        for key, label in (("rss_nncore", "ref-cnn nncore"), ("rss_torch", "ref-cnn torch"),
                           ("rss_default", "default nncore"), ("rss_default_layers", "default nncore layers"),
                           ("rss_torch_default", "default torch")):
            if key in sub:
                r = sub[key]
                print(f"peak RSS training at batch {args.batch}, {label:<22}: "
                      + (f"{r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else r["error"]))
        for key, label in (("start", "ref-cnn"), ("start_default", "default model")):
            for name in ("cold", "warm"):
                r = sub[key][name]
                if "error" in r:
                    print(f"{label} {name} start: {r['error']}")
                else:
                    print(f"{label} {name} start (numba cache {'empty' if name == 'cold' else 'populated'}): "
                          f"import {r['import_s']:.2f} s + compile in {1 + r['helpers']} process(es) "
                          f"{r['precompile_s']:.2f} s + first step {r['first_step_s']:.2f} s "
                          f"(steady step {1e3 * r['steady_step_s']:.1f} ms) -> {r['added_s']:.2f} s added at start; "
                          f"first inference {r['first_infer_extra_s']:.2f} s more")
    epoch_s = MNIST_TRAIN_IMAGES / train_s["nncore"]["img_s"]
    default_epoch_s = MNIST_TRAIN_IMAGES / train_s["default"]["img_s"]
    print()
    for label, theirs, secs in (("ref-cnn", "torch", epoch_s), ("the default model", "torch-default", default_epoch_s)):
        print(f"estimated MNIST epoch (60000 images) of {label} with nncore: {secs:.1f} s"
              + (f"  (torch {MNIST_TRAIN_IMAGES / train_s[theirs]['img_s']:.1f} s, "
                 f"channels-last {MNIST_TRAIN_IMAGES / train_s[theirs + '-channels-last']['img_s']:.1f} s)"
                 if torch is not None else ""))

    if args.json:
        def rate(d, k, field="img_s"):
            return d[k][field] if k in d else None
        result = {
            "threads": args.threads, "batch": args.batch, "infer_batch": args.infer_batch, "steps": args.steps,
            "load_average": load, "torch_available": torch is not None, "torch_note": torch_note,
            "nncore_train_img_s": rate(train_s, "nncore"), "nncore_infer_img_s": rate(infer_s, "nncore"),
            "torch_train_img_s": rate(train_s, "torch"), "torch_infer_img_s": rate(infer_s, "torch"),
            "torch_channels_last_train_img_s": rate(train_s, "torch-channels-last"),
            "torch_channels_last_infer_img_s": rate(infer_s, "torch-channels-last"),
            "nncore_layers_train_img_s": rate(train_s, "nncore-layers"),
            "nncore_layers_infer_img_s": rate(infer_s, "nncore-layers"),
            "reference_train_img_s": rate(train_s, "nncore-reference"),
            "reference_infer_img_s": rate(infer_s, "nncore-reference"),
            "default_train_img_s": rate(train_s, "default"), "default_infer_img_s": rate(infer_s, "default"),
            "default_layers_train_img_s": rate(train_s, "default-layers"),
            "default_layers_infer_img_s": rate(infer_s, "default-layers"),
            "torch_default_train_img_s": rate(train_s, "torch-default"),
            "torch_default_channels_last_train_img_s": rate(train_s, "torch-default-channels-last"),
            "torch_default_infer_img_s": rate(infer_s, "torch-default"),
            "torch_default_channels_last_infer_img_s": rate(infer_s, "torch-default-channels-last"),
            "train": train_s, "infer": infer_s, "ratios": ratios,
            "layers": layers, "step_ms": step_ms, "default_layers": default_layers,
            "default_step_ms": default_step_ms, "default_unfused_layers": unfused_layers,
            "default_unfused_step_ms": unfused_step_ms, "gemms": gemms, "gemm_ms": gemm_ms, "gemm_share": share,
            "peak_rss_mb": {k[4:]: v.get("peak_rss_mb") for k, v in sub.items() if k.startswith("rss_")},
            "start": sub.get("start"), "start_default": sub.get("start_default"), "mnist_epoch_s": epoch_s,
            "default_mnist_epoch_s": default_epoch_s, "blas": blas,
        }
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
