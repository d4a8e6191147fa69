"""Write the chapter notebooks (``*.ipynb``, without outputs) from the cells below.

Run ``python notebooks/build.py`` after editing a chapter here; the tests check that the
committed notebooks match this file and carry no outputs. Each chapter is a list of
cells: a string starting with ``#md`` is a Markdown cell (the marker removed), any
other string a code cell. ``needs`` names the datasets a chapter reads through
``NNCORE_DATA_DIR`` (its test skips without them, or fails under ``CI=true``).
"""

import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

def setup(*modules):
    """The first code cell: the repository on the import path, NumPy and the chapter's ``modules``
    (any of "time", "plt", "nncore")."""
    lines = ["import os", "import sys"] + (["import time"] if "time" in modules else []) + [""]
    lines += ["import matplotlib.pyplot as plt"] if "plt" in modules else []
    lines += ["import numpy as np", "",
              "# the repository root: this folder's parent when the notebook runs from notebooks/",
              'ROOT = os.path.abspath("..") if os.path.isdir(os.path.join("..", "nncore")) else os.path.abspath(".")',
              "sys.path.insert(0, ROOT)"]
    lines += ["import nncore  # noqa: E402", ""] if "nncore" in modules else [""]
    lines += ["np.set_printoptions(precision=3, suppress=True, linewidth=110)"]
    return "\n".join(lines)


CHAPTERS = {}

CHAPTERS["01_convolution_and_im2col"] = ([], [
    """#md # 1. Convolution: four loops, then im2col and one matrix product

**You will learn** what a convolution layer computes, written as the definition with loops;
how *im2col* unfolds every receptive field into a column so the whole layer becomes one matrix
product (GEMM); and that both give the same numbers. Everything here calls nncore's reference
kernels in `nncore/kernels/reference/conv.py`: read that file beside this notebook.""",
    setup("time", "plt"),
    """from nncore.kernels.reference import conv as ref

rng = np.random.default_rng(0)
x = rng.integers(0, 5, size=(1, 1, 5, 5)).astype(float)      # one 5x5 image, one channel
w = np.array([[[[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]]])      # one 3x3 filter (a Sobel edge detector)
b = np.zeros(1)
print(x[0, 0])""",
    """#md ## The definition: four nested loops

`out[n, f, oh, ow] = b[f] + sum over c, i, j of w[f, c, i, j] * x[n, c, oh*S + i, ow*S + j]`.
`conv2d_naive` is exactly that (for tests and for reading).""",
    """out_loops = ref.conv2d_naive(x, w, b, stride=1, pad=0)
print(out_loops[0, 0])""",
    """#md ## im2col, pictured step by step

Each output position looks at one 3x3 window. im2col copies window number *p* into column *p*
of a matrix `cols` of shape (C*KH*KW, N*OH*OW). Below: the first four windows on the image, and
the columns they become.""",
    """cols = ref.im2col(x, 3, 3, stride=1, pad=0)
print("cols:", cols.shape)
fig, axes = plt.subplots(1, 5, figsize=(13, 3))
for p, ax in enumerate(axes[:4]):
    oh, ow = divmod(p, 3)
    ax.imshow(x[0, 0], cmap="Greys", vmin=0, vmax=6)
    ax.add_patch(plt.Rectangle((ow - 0.5, oh - 0.5), 3, 3, fill=False, color="tab:red", lw=3))
    ax.set_title(f"window {p} -> column {p}")
    ax.axis("off")
axes[4].imshow(cols, cmap="Greys", vmin=0, vmax=6)
axes[4].set_title("cols (9 x 9): one column per window")
axes[4].set_xlabel("output position")
axes[4].set_ylabel("kernel offset (i, j)")
plt.tight_layout()""",
    """#md ## The GEMM

With the filters flattened to rows, `W2 = w.reshape(F, C*KH*KW)`, every output is one row
times one column: `y = W2 @ cols` has shape (F, N*OH*OW), reordered to (N, F, OH, OW).""",
    """y = w.reshape(1, -1) @ cols
out_gemm = ref.rows_to_nchw(y, b, 1, 3, 3)
print(out_gemm[0, 0])
print("same as the loops:", np.allclose(out_gemm, out_loops))
out_kernel, _ = ref.conv2d_forward(x, w, b, 1, 0, training=False)
print("and as conv2d_forward (what Conv2D calls):", np.allclose(out_kernel, out_loops))""",
    """#md ## Why bother? Speed

The loops run N*F*OH*OW small sums in Python; im2col runs KH*KW vectorised copies and one
product that BLAS computes at full speed. Same answer, on a realistic batch:""",
    """xb = rng.standard_normal((4, 8, 16, 16))
wb = rng.standard_normal((16, 8, 3, 3))
bb = np.zeros(16)
t = time.perf_counter()
slow = ref.conv2d_naive(xb, wb, bb, 1, 1)
t_loops = time.perf_counter() - t
t = time.perf_counter()
fast, _ = ref.conv2d_forward(xb, wb, bb, 1, 1, training=False)
t_gemm = time.perf_counter() - t
print(f"loops {1000 * t_loops:.0f} ms, im2col + GEMM {1000 * t_gemm:.1f} ms, "
      f"max difference {np.abs(slow - fast).max():.1e}")""",
    """#md ## Exercises

1. Change `stride` to 2 and `pad` to 1 in both `conv2d_naive` and `im2col`: what shape does
   `cols` get? Check it against `conv_output_size`.
2. With 3 input channels, which rows of `cols` belong to channel 1? (Hint: the row index is
   `c*KH*KW + i*KW + j`.)
3. How much memory does `cols` take for a batch of 128 MNIST images in the first layer
   (1 channel, 3x3, padding 1), compared with the images themselves?""",
])

CHAPTERS["02_col2im_and_backward"] = ([], [
    """#md # 2. col2im and the backward pass

**You will learn** why the gradient of a convolution with respect to its input is `col2im`,
why overlapping windows *add* their gradients, and the three lines of `conv2d_backward`
(dW, db, dx). Read `col2im` and `conv2d_backward` in `nncore/kernels/reference/conv.py`.""",
    setup("plt"),
    """from nncore.kernels.reference import conv as ref

x_shape = (1, 1, 6, 6)
ones = np.ones((9, 16))                     # one gradient of 1 per (kernel offset, window) pair
counts = ref.col2im(ones, x_shape, 3, 3, stride=1, pad=0)
plt.imshow(counts[0, 0], cmap="viridis")
for (r, c), v in np.ndenumerate(counts[0, 0]):
    plt.text(c, r, int(v), ha="center", va="center", color="white" if v < 6 else "black")
plt.title("how many 3x3 windows cover each pixel")
plt.colorbar()
plt.axis("off");""",
    """#md ## Why overlapping windows add

im2col *copies* a pixel into every column whose window covers it: a centre pixel of a 6x6
image appears 9 times. In the backward pass each copy receives its own gradient, and the
chain rule adds the contributions of all uses of a variable. `col2im` does exactly that: it
folds the columns back and **sums** where windows overlap. The picture above is `col2im` of a
matrix of ones: the number of copies of each pixel.

A precise way to say "col2im is the backward of im2col": it is its *adjoint*,
`<im2col(x), c> = <x, col2im(c)>` for every x and c.""",
    """rng = np.random.default_rng(1)
x = rng.standard_normal((2, 3, 7, 6))
c = rng.standard_normal(ref.im2col(x, 3, 3, 2, 1).shape)
lhs = np.sum(ref.im2col(x, 3, 3, 2, 1) * c)
rhs = np.sum(x * ref.col2im(c, x.shape, 3, 3, 2, 1))
print(f"<im2col(x), c> = {lhs:.10f}\\n<x, col2im(c)> = {rhs:.10f}")""",
    """#md ## The backward pass of a convolution

With `d2` the upstream gradient reordered to (F, N*OH*OW):

    dW = d2 @ cols.T        db = d2.sum(axis=1)        dx = col2im(W2.T @ d2)

`conv2d_backward` is those three lines. We run a forward pass that keeps its context
(`training=True` means "keep what backward needs") and back-propagate a gradient of ones.""",
    """w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
out, ctx = ref.conv2d_forward(x, w, b, 1, 1, training=True)
dx, dw, db = ref.conv2d_backward(ctx, np.ones_like(out), need_dx=True)
print("out", out.shape, "dx", dx.shape, "dW", dw.shape, "db", db.shape)
print("db = number of outputs per filter:", db)""",
    """#md With a gradient of ones, `dx` counts, for each pixel, the weights that touched it: inside
the image every weight of every filter, at the border fewer (the padding took their place).""",
    """plt.imshow(dx[0, 0], cmap="viridis")
plt.title("dx for dout = 1: the border pixels are used by fewer windows")
plt.colorbar();""",
    """#md ## Exercises

1. Make the overlap picture for stride 2 and for stride 3 with a 3x3 kernel. When do windows
   stop overlapping, and what does `col2im` then become?
2. Check `dW` for the gradient of ones by hand: `dW[f, c, i, j]` is the sum of the input pixels
   that weight touched. Compute it with `ref.im2col` and a sum.
3. Chapter 3 checks these formulas numerically; before reading it, predict which of `dW`, `db`,
   `dx` a wrong `col2im` would break.""",
])

CHAPTERS["03_gradient_checking"] = ([], [
    """#md # 3. Gradient checking: how we know backward is right

**You will learn** the central-difference check, why it runs in float64 and away from kinks,
and how it catches a wrong backward pass. Uses `nncore.gradcheck` (the same helpers as
`tests/test_gradcheck.py` and `python experiments/gradcheck.py`).""",
    setup(),
    """from nncore import gradcheck
from nncore.layers import Conv2D, MaxPool2D, ReLU

x = gradcheck.away_from_zero((2, 3, 6, 6), seed=0)
conv = Conv2D(3, 4, 3, padding=1, dtype=np.float64, rng=0)
print(gradcheck.format_table(gradcheck.check_layer(conv, x)))""",
    """#md ## The idea

For a scalar function f, `df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h` with error O(h^2).
The check draws a random upstream gradient g and compares `backward(g)` with the numerical
gradient of `sum(g * layer(x))`, for the input and every parameter. Errors around 1e-10 mean
right; near 1 mean wrong.

## Catching a wrong backward

A layer whose backward forgets the factor of overlapping windows (it *overwrites* instead of
*adding*, a classic col2im bug) looks plausible and trains badly. The check sees it at once:""",
    """from nncore.kernels.reference import conv as ref


class OverwritingConv(Conv2D):
    \"\"\"A Conv2D whose input gradient keeps only the last window's contribution per pixel (wrong).\"\"\"

    def backward(self, dout):
        dx_right = super().backward(dout)
        n, c, h, w = dx_right.shape
        d2, _ = ref.nchw_to_rows(dout)
        dcols = (self.params["W"].reshape(self.out_channels, -1).T @ d2).reshape(c, 3, 3, n, h, w)
        xpad = np.zeros((n, c, h + 2, w + 2))
        for i in range(3):
            for j in range(3):
                xpad[:, :, i:i + h, j:j + w] = dcols[:, i, j].transpose(1, 0, 2, 3)   # = instead of +=
        return xpad[:, :, 1:-1, 1:-1]


bad = OverwritingConv(3, 4, 3, padding=1, dtype=np.float64, rng=0)
print(gradcheck.format_table(gradcheck.check_layer(bad, x)))""",
    """#md ## Why float64, and why away from kinks

In float32, rounding (about 1e-7 relative) divided by h swamps the O(h^2) term; and at a ReLU
input of exactly 0, or a tie in a max-pool window, the function has no derivative. A ReLU
checked at points near 0 can fail for reasons that have nothing to do with the code:""",
    """relu = ReLU()
near_kink = np.array([[-3e-7, 2e-7, 1.0, -1.0]])
print("near the kink:", gradcheck.format_table(gradcheck.check_layer(relu, near_kink)), sep="\\n")
print("away from it:", gradcheck.format_table(gradcheck.check_layer(relu, gradcheck.away_from_zero((2, 4), 1))),
      sep="\\n")
pool = MaxPool2D(2)
print(gradcheck.format_table(gradcheck.check_layer(pool, gradcheck.distinct_values((1, 2, 4, 4), 2))))""",
    """#md ## A whole network, in training and in evaluation mode

`check_model` checks the loss of a small CNN against every parameter and the input. With
`training=False` it checks the evaluation-mode backward (BatchNorm with its running
statistics): the gradient that chapter 5's saliency maps use.""",
    """model = gradcheck.small_cnn()
xs = np.random.default_rng(14).standard_normal((3, 1, 8, 8))
print("margin from kinks and ties:", gradcheck.smoothness_margin(model, xs))
for training in (True, False):
    results = gradcheck.check_model(model, xs, np.array([0, 2, 1]), training=training)
    worst = max(r.rel_error for r in results)
    print(f"training={training}: {len(results)} arrays, worst relative error {worst:.1e}")""",
    """#md ## Exercises

1. Run the Conv2D check with `h=1e-3` and `h=1e-10`. Why does the error grow both ways?
2. Cast `x` and the layer to float32 (`conv.astype("float32")`): what does `check_layer` say?
3. Write a Dense layer whose backward forgets to transpose `W` (use a square W so the shapes
   still fit) and check it.""",
])

CHAPTERS["04_train_a_small_cnn"] = (["mnist"], [
    """#md # 4. Train a small CNN in under a minute

**You will learn** the training loop (forward, loss, backward, optimizer step) on real data:
a small CNN trained on 8,000 MNIST images for three passes reaches about 95% test accuracy
(a few seconds on 2 cores).
MNIST is read from `NNCORE_DATA_DIR` (the folder holding `mnist/`); nothing is downloaded.
The full loop with schedules, checkpoints and augmentation is `nncore/training/trainer.py`.""",
    setup("time", "plt", "nncore"),
    """from nncore.data.mnist import load_mnist

data = load_mnist(download=False)   # a clear error naming NNCORE_DATA_DIR if the files are not there
x_train, y_train = data["x_train"][:8000], data["y_train"][:8000].astype(np.int64)
x_test, y_test = data["x_test"][:2000], data["y_test"][:2000].astype(np.int64)
print(x_train.shape, np.bincount(y_train))""",
    """model = nncore.cnn(conv_channels=(8, 16), dense=(64,), fused=True, seed=0)
print(model.summary())""",
    """#md ## The loop

`model.train_step` is four lines: `logits = forward(x, training=True)`, the softmax
cross-entropy loss, `backward(dloss)` filling every layer's `grads`, and the optimizer step.""",
    """loss_fn = nncore.SoftmaxCrossEntropy()
opt = nncore.optim.Adam(model, lr=3e-3)
rng = np.random.default_rng(0)
x_all = model.prepare(x_train)
losses, start = [], time.perf_counter()
for epoch in range(3):
    order = rng.permutation(len(y_train))
    for i in range(0, len(order), 64):
        idx = order[i:i + 64]
        loss, _ = model.train_step(x_all[idx], y_train[idx], loss_fn, opt)
        losses.append(float(loss))
    acc = (model.predict(x_test) == y_test).mean()
    print(f"epoch {epoch + 1}: loss {np.mean(losses[-60:]):.3f}, test accuracy {100 * acc:.1f}%, "
          f"{time.perf_counter() - start:.0f} s")""",
    """plt.plot(losses, alpha=0.4, label="batch")
plt.plot(np.convolve(losses, np.ones(20) / 20, mode="valid"), label="mean of 20")
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.yscale("log")
plt.legend();""",
    """#md ## What it learned: the first layer's filters""",
    """from nncore.explain.pictures import filter_figure

filter_figure(model.layers[0].params["W"], "after 3 epochs");""",
    """#md ## Exercises

1. Train with `fused=False` (Conv2D, ReLU, MaxPool2D as three layers): same accuracy? Same
   time? (Chapter 7 explains the difference.)
2. Set the learning rate to 0.3: what happens to the loss? nncore's trainer stops such a run
   with a one-line error (`TrainingDivergedError`).
3. Use `nncore.optim.SGD(model, lr=0.05, momentum=0.9)` instead of Adam.""",
])

CHAPTERS["05_conv_relu_pool_on_your_digit"] = ([], [
    """#md # 5. Convolution, ReLU and pooling on your own digit

**You will learn** what the first block of the shipped MNIST model does to *your* picture, one
operation at a time and with the numbers: one learned 3x3 filter slid over the digit, one output
pixel computed by hand, BatchNorm, the ReLU that clips negatives, and the max-pooling that keeps
the largest of each 2x2 window. Each step is a reference kernel; the last cell checks that they
give exactly what the model computes.

Put the path of a photo or scan of a digit in `MY_PICTURE` (any size, dark on light or light on
dark: `nncore.preprocess_image` turns it into MNIST's 28x28 format). Left as `None`, a digit is
drawn for you.""",
    setup("plt", "nncore"),
    """from PIL import Image, ImageDraw

from nncore import explain
from nncore.kernels.reference import activations as ref_act
from nncore.kernels.reference import conv as ref_conv
from nncore.kernels.reference import pool as ref_pool

MY_PICTURE = None

if MY_PICTURE is None:                               # a drawn 4: dark ink on white paper, like a scan
    paper = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(paper).line([(120, 30), (50, 130), (150, 130)], fill=0, width=14)
    ImageDraw.Draw(paper).line([(120, 30), (120, 175)], fill=0, width=14)
    MY_PICTURE = paper
digit = nncore.preprocess_image(MY_PICTURE)          # (28, 28) uint8, white ink on black
model = nncore.load_model(os.path.join(ROOT, "weights", "mnist_cnn.npz"))
x = model.prepare(digit[None])                       # (1, 1, 28, 28): scaled as in training
print("the model says:", model.symbols[int(model.predict(digit[None])[0])])
plt.imshow(digit, cmap="gray")
plt.title("your digit, as the network sees it")
plt.axis("off");""",
    """#md ## One filter, slid over the digit

The first layer has 32 filters of 3x3 weights. Take one (number 5 here; try others), convolve
with padding 1 so the output keeps 28x28, and look at one output pixel: it is the sum of the
3x3 patch around it times the weights.""",
    """f = 5
w = model.layers[0].params["W"][f:f + 1]             # (1, 1, 3, 3)
conv, _ = ref_conv.conv2d_forward(x, w, None, 1, 1, training=False)
r, c = 10, 14
patch = np.pad(x[0, 0], 1)[r:r + 3, c:c + 3]         # padded image: pixel (r, c) is at the patch centre
print("patch:\\n", patch, "\\nweights:\\n", w[0, 0])
print(f"sum(patch * weights) = {np.sum(patch * w[0, 0]):.4f};  conv output at ({r}, {c}) = {conv[0, 0, r, c]:.4f}")
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
axes[0].imshow(w[0, 0], cmap="RdBu_r", vmin=-np.abs(w).max(), vmax=np.abs(w).max())
axes[0].set_title(f"filter {f}")
axes[1].imshow(conv[0, 0], cmap="RdBu_r", vmin=-np.abs(conv).max(), vmax=np.abs(conv).max())
axes[1].add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, color="k", lw=2))
axes[1].set_title("convolution output (red +, blue -)")
for ax in axes:
    ax.axis("off")""",
    """#md ## BatchNorm, then the ReLU

BatchNorm (evaluation mode) shifts and scales each channel with the statistics it learned:
`gamma * (conv - running_mean) / sqrt(running_var + eps) + beta`. The ReLU then sets every
negative value to 0: only the places where the filter's pattern is present survive.""",
    """bn = model.layers[1]
normed = (bn.params["gamma"][f] * (conv - bn.buffers["running_mean"][f])
          / np.sqrt(bn.buffers["running_var"][f] + bn.eps) + bn.params["beta"][f])
relu = ref_act.relu_forward(normed)
print(f"negative before the ReLU: {100 * (normed < 0).mean():.0f}% of the pixels")
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
axes[0].imshow(normed[0, 0], cmap="RdBu_r", vmin=-np.abs(normed).max(), vmax=np.abs(normed).max())
axes[0].set_title("after BatchNorm")
axes[1].imshow(relu[0, 0], cmap="magma")
axes[1].set_title("after the ReLU: negatives are 0")
for ax in axes:
    ax.axis("off")""",
    """#md ## Max-pooling: the largest of each 2x2 window

28x28 becomes 14x14. Below, a 4x4 corner of the ReLU output around the strongest response,
with its numbers, and the 2x2 pooled values it becomes.""",
    """pooled, arg = ref_pool.maxpool_forward(relu, 2, 2)
pr, pc = np.unravel_index(pooled[0, 0].argmax(), pooled[0, 0].shape)
r0, c0 = 2 * min(pr, 12), 2 * min(pc, 12)
block = relu[0, 0, r0:r0 + 4, c0:c0 + 4]
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
pooled_block = pooled[0, 0, r0 // 2:r0 // 2 + 2, c0 // 2:c0 // 2 + 2]
for ax, a, title in ((axes[0], block, "ReLU output, 4x4"), (axes[1], pooled_block, "after 2x2 max-pooling")):
    ax.imshow(a, cmap="magma", vmin=0, vmax=block.max() or 1)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 * block.max() else "black")
    ax.set_title(title)
    ax.axis("off")""",
    """#md ## The same numbers as the model

`explain.activations` returns what each layer of the model computed; channel `f` of the first
four layers must equal our four steps.""",
    """acts = dict(explain.activations(model, digit))
for name, ours in (("0:Conv2D", conv), ("1:BatchNorm", normed), ("2:ReLU", relu), ("3:MaxPool2D", pooled)):
    print(f"{name:12s} largest difference {np.abs(acts[name][f] - ours[0, 0]).max():.1e}")""",
    """#md ## Exercises

1. Photograph or scan a digit of your own, set `MY_PICTURE` to its path and run again.
2. Which of the 32 filters responds most to your digit? (Hint: `acts["2:ReLU"].mean(axis=(1, 2))`.)
   Plot its weights: what pattern does it look for?
3. Pool with `ref_pool.avgpool_forward(relu, 2, 2)` instead: what is lost compared with the maximum?""",
])

CHAPTERS["06_inside_the_trained_model"] = (["mnist"], [
    """#md # 6. Inside the trained model: filters, feature maps, saliency, mistakes

**You will learn** to look at what the shipped MNIST model (`weights/mnist_cnn.npz`, 99.5%)
does with an image: the filters it learned, the feature maps each layer computes, which
pixels its decision is sensitive to (saliency, by the model's own `backward`), what happens
when part of the digit is hidden (occlusion), and the digits it gets wrong.
`python experiments/explain.py IMAGE` draws the same panel for any picture.""",
    setup("plt", "nncore"),
    """from nncore import explain
from nncore.data.mnist import load_mnist
from nncore.explain import pictures

model = nncore.load_model(os.path.join(ROOT, "weights", "mnist_cnn.npz"))
data = load_mnist(download=False)
x_test, y_test = data["x_test"][:2000], data["y_test"][:2000]
print(model.summary())""",
    """#md ## Filters

The first layer's 32 filters look at 3x3 pixels: edge and stroke detectors of different
directions (blue negative weights, red positive). The second layer has 48 filters of 32 channels.""",
    """for name, w in explain.conv_filters(model):
    pictures.filter_figure(w, name)""",
    """#md ## Feature maps: exactly the forward pass

`explain.activations(model, image)` returns the output of every layer for one image (the very
arrays `model.forward` passes along). The convolution, then BatchNorm, then the ReLU (negative
values set to 0), then max-pooling (each 2x2 window kept by its largest value):""",
    """digit = x_test[0]
acts = explain.activations(model, digit)
for name, a in acts:
    print(f"{name:14s} {a.shape}")
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, (name, a) in zip(axes, acts[1:5]):
    ax.imshow(a[16], cmap="magma")
    ax.set_title(f"{name}, channel 16")
    ax.axis("off")""",
    """#md ## Saliency and occlusion

The saliency is the gradient of the class's score (its logit) with respect to the input
pixels. The model runs in evaluation mode (BatchNorm's running statistics, no dropout) with
`model.eval_forward`, which keeps what `backward` needs; then `backward` runs from a one-hot
gradient down to the input: the code that trains the network, used to explain it.
Occlusion covers a 6x6 patch at every position and records how much the probability drops.""",
    """pictures.panel_figure(model, digit);""",
    """grad, k = explain.saliency(model, digit)
print("predicted", k, "gradient shape", grad.shape)
drops, _ = explain.occlusion(model, digit, k, patch=6, stride=2)
print("largest drop of p(%d) when a patch is covered: %.4f" % (k, drops.max()))""",
    """#md ## Mistakes, and what drove them

`explain.misclassified` lists the wrong answers, most confident first; below each, the saliency
of the (wrong) class it chose.""",
    """mistakes = explain.misclassified(model, x_test, y_test, limit=6)
print(f"{len(explain.misclassified(model, x_test, y_test))} mistakes in {len(y_test)} test digits")
pictures.mistakes_figure(model, x_test, mistakes);""",
    """#md ## Exercises

1. Draw a digit, save it as a PNG and run `python experiments/explain.py my_digit.png`.
2. Compute the saliency of a *different* class (`explain.saliency(model, digit, class_index=1)`):
   where would the 7 have to change to become a 1?
3. Run occlusion with `fill=255` (white patches instead of black): which is the fairer test?""",
])

CHAPTERS["07_speed_winograd_and_fusion"] = ([], [
    """#md # 7. Speed: what Winograd and fused kernels change

**You will learn** what the fast CPU kernels do differently from the reference ones, and that
they compute the same numbers. The reference kernels (`nncore/kernels/reference/`) are the
lecture; the numba twins (`nncore/kernels/cpu/`) have the same names and parameters, and
`kernels/cpu/algorithms.py` chooses Winograd, a direct first layer or im2col by shape.
The timings below are on whatever machine runs this notebook; `experiments/benchmark.py`
measures properly.""",
    setup("time", "nncore"),
    """from nncore.kernels import cpu
from nncore.kernels import reference as ref
from nncore.kernels.cpu.algorithms import conv2d_algorithm, conv_algorithms


def best_ms(fn, repeat=5):
    fn()                                           # the first call compiles (numba) or warms caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


rng = np.random.default_rng(0)
x = rng.standard_normal((32, 32, 14, 14)).astype(np.float32)   # ref-cnn's second layer, batch 32
w = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np.float32)
b = np.zeros(64, np.float32)
print("auto picks:", conv2d_algorithm(x.shape, w.shape, 1, 1))""",
    """#md ## Winograd F(4x4, 3x3)

A 3x3 convolution computed in 4x4 output tiles needs 36 multiplications per tile and channel
instead of 144: the input and filter tiles are transformed (`BT d B`, `G g GT`), multiplied
elementwise, and transformed back (`AT M A`). The sum over channels happens in the transformed
domain as 36 matrix products. Read `nncore/kernels/reference/winograd.py`.""",
    """out_ref, _ = ref.conv2d_forward(x, w, b, 1, 1, training=False)
for algorithm in ("im2col", "winograd"):
    out, _ = cpu.conv2d_forward(x, w, b, 1, 1, training=False, algorithm=algorithm)
    ms = best_ms(lambda a=algorithm: cpu.conv2d_forward(x, w, b, 1, 1, training=False, algorithm=a))
    print(f"{algorithm:9s} {ms:6.1f} ms, max difference from the reference {np.abs(out - out_ref).max():.1e}")
print(f"reference {best_ms(lambda: ref.conv2d_forward(x, w, b, 1, 1, training=False)):6.1f} ms")""",
    """#md The transforms themselves, on one tile: the Winograd result equals the direct sum.""",
    """from nncore.kernels.reference import winograd as wino

x1 = rng.standard_normal((1, 1, 4, 4))
w1 = rng.standard_normal((1, 1, 3, 3))
u = wino.winograd_weights(w1)                       # the filter in the transformed domain
out_w, _, tiles = wino.winograd_forward(x1, u, np.zeros(1), pool=False)
print("transformed filter", u.shape, "transformed input tiles", tiles.shape)
print(np.allclose(out_w, ref.conv2d_naive(x1, w1, np.zeros(1), 1, 1)))""",
    """#md ## Fusing conv, ReLU and pooling

Unfused, the full-size convolution output is written, read and written again by the ReLU,
then read by the pooling. `conv_relu_pool_forward` reads the GEMM output once and writes only
the pooled quarter. Same parameters, same outputs:""",
    """def unfused():
    out, _ = cpu.conv2d_forward(x, w, b, 1, 1, training=True)
    return cpu.maxpool_forward(cpu.relu_forward(out), 2, 2)[0]


def fused():
    return cpu.conv_relu_pool_forward(x, w, b, 1, 1, 2, 2, training=True)[0]


print("same output:", np.allclose(unfused(), fused(), atol=1e-5))
with conv_algorithms(winograd=False):
    print(f"im2col: unfused {best_ms(unfused):.1f} ms, fused {best_ms(fused):.1f} ms")
print(f"winograd: unfused {best_ms(unfused):.1f} ms, fused {best_ms(fused):.1f} ms")""",
    """#md ## A whole model

The reference CNN with each conv block as one fused layer, on the reference kernels and on
the numba ones (the layers call `kernels_for(x)`, so switching changes no layer code):""",
    """from nncore.kernels import set_cpu_kernels

model = nncore.ref_cnn(fused=True)
images = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8)
for name in ("reference", "numba"):
    set_cpu_kernels(name)
    print(f"{name:9s} predict 64 images: {best_ms(lambda: model.predict(images), repeat=3):.0f} ms")
set_cpu_kernels("numba")""",
    """#md ## Exercises

1. Time `cpu.conv2d_forward` with `algorithm="winograd"` and `"im2col"` on the *first* layer
   shape (1 input channel, 28x28). Which wins, and why does `algorithms.py` require
   `WINOGRAD_MIN_CHANNELS` channels?
2. Count multiplications: a 3x3 convolution of a 4x4 output tile directly, and with Winograd.
3. Run `python experiments/benchmark.py --help` and compare one A/B mode on your machine.""",
])


def make_notebook(needs, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nncore"] = {"needs": list(needs)}
    for i, text in enumerate(cells):
        cell = (nbformat.v4.new_markdown_cell(text[3:].lstrip()) if text.startswith("#md")
                else nbformat.v4.new_code_cell(text))
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    return nb


def render(name):
    """The notebook ``name`` as the text ``build.py`` writes."""
    return nbformat.writes(make_notebook(*CHAPTERS[name])) + "\n"


def main():
    for name in CHAPTERS:
        with open(os.path.join(HERE, f"{name}.ipynb"), "w", encoding="utf-8") as f:
            f.write(render(name))
    print(f"wrote {len(CHAPTERS)} notebooks to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
