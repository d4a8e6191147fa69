"""The catalogue of common mistakes, and the probes that diagnose them.

Every hint is found by evidence, never guessed: which cases pass and which
fail (a col2im that is right without overlapping windows and wrong with
them), a flag the child recorded (``dout`` changed in place), or a match with
a known-wrong variant computed here from the same inputs (the dense backward
with ``W`` instead of ``W.T``). Each ``_diagnose_<exercise>`` returns the keys
of :data:`HINTS` that the evidence shows.
"""

import numpy as np

HINTS = {
    "im2col-padding": "im2col ignores the padding: pad the image with np.pad before taking the patches",
    "im2col-stride": "im2col ignores the stride: step the slices by S (i : i + S*OH : S)",
    "im2col-order": "im2col has the right values in the wrong places: rows go (c, i, j), columns go (n, oh, ow)",
    "col2im-assign": "col2im assigns where overlapping windows must add: use += on the slices",
    "col2im-stride": "col2im ignores the stride: step the slices by S (i : i + S*OH : S)",
    "col2im-crop": "col2im returns the padded image: cut the padding off (xpad[:, :, P:P+H, P:P+W])",
    "conv-bias-forward": "the convolution forgets the bias in the forward pass",
    "conv-dw-shape": "dw is still a matrix: reshape it to w's shape (F, C, KH, KW)",
    "bias-sum": "the bias gradient is not summed over the batch (db sums dout over every sample)",
    "dout-mutated": "backward changes dout in place; compute into a new array (the layer before needs dout too)",
    "pool-ties": "the max-pool gradient goes to every tied input; only one (the first arg-max) may get it",
    "pool-overlap": "max-pool backward assigns where overlapping windows must add: use += on the slices",
    "pool-stride": "max-pooling ignores the stride (or takes it to be k): step the windows by S",
    "pool-floor": "rows or columns that do not fill a window are dropped: OH = (H - k) // S + 1",
    "relu-dout-inplace": "ReLU backward changes dout in place (dout[out <= 0] = 0); return a new array",
    "relu-x-inplace": "ReLU forward overwrites its input x; return a new array",
    "relu-mask-dout": "ReLU backward masks by the sign of dout; the mask is out > 0, from the forward pass",
    "relu-mask-ge": "ReLU backward uses out >= 0, true everywhere since out = max(x, 0); use out > 0",
    "dense-transposed-w": "the dense backward uses W where it needs W.T: dx = dout @ W.T",
    "dense-dw-transposed": "dW is transposed: dW = x.T @ dout has W's shape (D, M)",
    "dense-bias-forward": "the dense forward forgets the bias",
    "softmax-max": "softmax without subtracting the row maximum: exp overflows on large logits",
    "softmax-n": "the loss gradient forgets the 1/N of the mean: dlogits = (softmax - onehot) / N",
    "softmax-onehot": "the loss gradient forgets the one-hot: subtract 1 at each row's label",
    "softmax-sign": "the loss gradient has the wrong sign: softmax - onehot, not onehot - softmax",
    "bn-mean-terms": ("BatchNorm backward misses the mean terms: "
                      "dx = gamma*inv_std*(dout - mean(dout) - xhat*mean(dout*xhat))"),
    "bn-count": "BatchNorm backward divides by N: each channel averages M = N*P values",
    "bn-axes": "dgamma and dbeta sum over axes 0 and 2 (the batch and the positions), leaving shape (C,)",
    "dropout-rescale": "dropout is not rescaled: divide the kept values by 1 - p so the expected output is x",
    "dropout-keep": "the mask keeps with probability p; p is the drop probability: keep where u >= p",
    "dropout-backward": "dropout backward must multiply dout by the same mask as the forward pass",
    "sgd-sign": "the momentum step goes uphill: p -= lr * v",
    "sgd-state": "the velocity is not kept between steps: store v in self.state[key]",
    "sgd-nesterov": "Nesterov momentum is ignored: p -= lr * (g + mu * v) when nesterov",
    "sgd-dampening": "the velocity is damped: v = mu*v + g, not mu*v + (1 - mu)*g",
}


def _cases(ev):
    return list(dict.fromkeys(c for c, _n in ev.passed))


def _diagnose_im2col(ev):
    found = []
    if ev.ok("basic") and not ev.ok("padding"):
        found.append("im2col-padding")
    elif ev.ok("basic") and ev.ok("padding") and not ev.ok("stride"):
        found.append("im2col-stride")
    for case in _cases(ev):
        got, want = ev.got(case, "cols"), ev.expected(case, "cols")
        if not ev.ok(case) and got is not None and got.shape == want.shape and \
                np.allclose(np.sort(got.ravel()), np.sort(want.ravel())):
            found.append("im2col-order")
            break
    return found


def _diagnose_col2im(ev):
    found = []
    if ev.ok("no-overlap") and not ev.ok("overlap"):
        found.append("col2im-assign")
    if ev.ok("overlap") and ev.ok("batch1") and not ev.ok("no-overlap"):
        found.append("col2im-stride")
    for case in _cases(ev):
        n, c, h, w = (int(v) for v in ev.inp(case, "x_shape"))
        pad = int(ev.inp(case, "geo")[3])
        got = ev.got(case, "dx")
        if pad and got is not None and got.shape == (n, c, h + 2 * pad, w + 2 * pad):
            found.append("col2im-crop")
            break
    return found


def _diagnose_conv(ev):
    found = []
    for case in _cases(ev):
        x, w, b = ev.inp(case, "x"), ev.inp(case, "w"), ev.inp(case, "b")
        if not ev.ok(case, "out") and ev.matches(case, "out", ev.expected(case, "out") - b.reshape(1, -1, 1, 1)):
            found.append("conv-bias-forward")
        dw = ev.got(case, "dw")
        if dw is not None and dw.shape == (w.shape[0], w[0].size):
            found.append("conv-dw-shape")
        db = ev.got(case, "db")
        if x.shape[0] > 1 and not ev.ok(case, "db") and db is not None and (
                db.shape != b.shape or ev.matches(case, "db", ev.inp(case, "dout")[0].sum(axis=(1, 2)))):
            found.append("bias-sum")
    return found + _dout_flag(ev)


def _dout_flag(ev):
    return ["dout-mutated"] if any(not ev.ok(c, "dout_unchanged") for c in _cases(ev)
                                   if (c, "dout_unchanged") in ev.passed and ev.got(c, "dout_unchanged") is not None) \
        else []


def _diagnose_maxpool(ev):
    found = []
    plain = ev.ok("k2") and ev.ok("odd")
    overlapping = ("overlap", "stride1")
    if plain and ev.ok("ties", "out") and not ev.ok("ties", "dx"):
        dx = ev.got("ties", "dx")
        if dx is not None and abs(float(dx.sum()) - float(ev.inp("ties", "dout").sum())) > 1e-9:
            found.append("pool-ties")                     # non-overlapping windows: sum(dx) must equal sum(dout)
    if plain and any(not ev.ok(c, "out") for c in overlapping + ("gap",)):
        found.append("pool-stride")
    elif plain and ev.ok("gap") and any(ev.ok(c, "out") and not ev.ok(c, "dx") for c in overlapping):
        found.append("pool-overlap")
    elif plain and not ev.ok("gap", "dx") and ev.ok("gap", "out"):
        found.append("pool-stride")
    if ev.ok("k2") and not ev.ok("odd"):
        found.append("pool-floor")
    return found + _dout_flag(ev)


def _diagnose_relu(ev):
    found = []
    if any(ev.got(c, "dout_unchanged") is not None and not ev.ok(c, "dout_unchanged") for c in _cases(ev)):
        found.append("relu-dout-inplace")
    if any(ev.got(c, "x_unchanged") is not None and not ev.ok(c, "x_unchanged") for c in _cases(ev)):
        found.append("relu-x-inplace")
    for case in _cases(ev):
        dout = ev.inp(case, "dout")
        if not ev.ok(case, "dx") and ev.matches(case, "dx", np.where(dout > 0, dout, 0.0)):
            found.append("relu-mask-dout")
            break
        if not ev.ok(case, "dx") and ev.matches(case, "dx", dout):
            found.append("relu-mask-ge")
            break
    return found


def _diagnose_dense(ev):
    found = []
    x, w, dout = ev.inp("square", "x"), ev.inp("square", "W"), ev.inp("square", "dout")
    if not ev.ok("square", "dx") and ev.matches("square", "dx", dout @ w):
        found.append("dense-transposed-w")
    transposed_shape = any(ev.got(c, "dW") is not None and ev.got(c, "dW").shape == ev.inp(c, "W").shape[::-1]
                           != ev.inp(c, "W").shape for c in _cases(ev))
    if transposed_shape or (not ev.ok("square", "dW") and ev.matches("square", "dW", (x.T @ dout).T)):
        found.append("dense-dw-transposed")
    if ev.ok("batch1", "db") and not (ev.ok("basic", "db") and ev.ok("square", "db")):
        found.append("bias-sum")
    if any(not ev.ok(c, "out") and ev.matches(c, "out", ev.inp(c, "x") @ ev.inp(c, "W")) for c in _cases(ev)):
        found.append("dense-bias-forward")
    return found + _dout_flag(ev)


def _diagnose_softmax(ev):
    found = []
    if ev.ok("basic") and not ev.ok("large"):
        found.append("softmax-max")
    want = ev.expected("basic", "dlogits")
    n = want.shape[0]
    if not ev.ok("basic", "dlogits"):
        onehot = np.eye(want.shape[1])[ev.inp("basic", "labels")]
        if ev.matches("basic", "dlogits", want * n):
            found.append("softmax-n")
        elif ev.matches("basic", "dlogits", want + onehot / n) or ev.matches("basic", "dlogits", want * n + onehot):
            found.append("softmax-onehot")
        elif ev.matches("basic", "dlogits", -want) or ev.matches("basic", "dlogits", -want * n):
            found.append("softmax-sign")
    return found


def _bn_variants(ev, case):
    """dx of the usual wrong BatchNorm backward passes, from the case's inputs."""
    x3, gamma, dout = ev.inp(case, "x3"), ev.inp(case, "gamma"), ev.inp(case, "dout3")
    mean = x3.mean(axis=(0, 2), keepdims=True)
    inv_std = 1 / np.sqrt(((x3 - mean) ** 2).mean(axis=(0, 2), keepdims=True) + 1e-5)
    xhat = (x3 - mean) * inv_std
    k = gamma[None, :, None] * inv_std
    m = x3.shape[0] * x3.shape[2]
    dbeta, dgamma = dout.sum(axis=(0, 2), keepdims=True), (dout * xhat).sum(axis=(0, 2), keepdims=True)
    return [k * dout, k * (dout - dbeta / m), k * (dout - xhat * dgamma / m)]


def _diagnose_batchnorm(ev):
    found = []
    if any(not ev.ok(c, "dx") and any(ev.matches(c, "dx", v) for v in _bn_variants(ev, c)) for c in _cases(ev)):
        found.append("bn-mean-terms")
    if ev.ok("dense") and not ev.ok("conv"):
        found.append("bn-count")
    if any(ev.got(c, n) is not None and ev.got(c, n).shape != ev.expected(c, n).shape
           for c in _cases(ev) for n in ("dgamma", "dbeta")):
        found.append("bn-axes")
    return found + _dout_flag(ev)


def _diagnose_dropout(ev):
    found = []
    for case in _cases(ev):
        p = float(ev.inp(case, "p"))
        scale, kept = ev.got(case, "kept_scale"), ev.got(case, "kept_fraction")
        if scale is not None and abs(float(scale) - 1.0) < 1e-9 and "dropout-rescale" not in found:
            found.append("dropout-rescale")
        if kept is not None and abs(float(kept) - p) < 0.03 and abs(p - 0.5) > 0.05 and "dropout-keep" not in found:
            found.append("dropout-keep")
        if ev.got(case, "dx_minus_dout_mask") is not None and not ev.ok(case, "dx_minus_dout_mask") \
                and "dropout-backward" not in found:
            found.append("dropout-backward")
    return found


def _sgd_variant(ev, case, momentum_kept=True, dampening=False):
    """W after three steps of the usual wrong momentum updates."""
    mu, nesterov, wd = (float(v) for v in ev.inp(case, "hyper"))
    w, v = ev.inp(case, "W").copy(), None
    for g in ev.inp(case, "gW"):
        g = g + wd * w
        if v is None or not momentum_kept:
            v = g.copy()
        else:
            v = mu * v + ((1 - mu) * g if dampening else g)
        w = w - 0.1 * ((g + mu * v) if nesterov else v)
    return w


def _diagnose_sgd(ev):
    found = []
    w0 = ev.inp("momentum", "W")
    got = ev.got("momentum", "W1")
    if got is not None and not ev.ok("momentum", "W1") and \
            np.allclose(got - w0, -(ev.expected("momentum", "W1") - w0)):
        found.append("sgd-sign")
    if not ev.ok("momentum", "W3") and ev.matches("momentum", "W3", _sgd_variant(ev, "momentum", False)):
        found.append("sgd-state")
    if not ev.ok("momentum", "W3") and ev.matches("momentum", "W3", _sgd_variant(ev, "momentum", dampening=True)):
        found.append("sgd-dampening")
    if ev.ok("momentum") and not ev.ok("nesterov"):
        found.append("sgd-nesterov")
    return found


DIAGNOSES = {"im2col": _diagnose_im2col, "col2im": _diagnose_col2im, "conv": _diagnose_conv,
             "maxpool": _diagnose_maxpool, "relu": _diagnose_relu, "dense": _diagnose_dense,
             "softmax": _diagnose_softmax, "batchnorm": _diagnose_batchnorm, "dropout": _diagnose_dropout,
             "sgd": _diagnose_sgd}


def diagnose(evidence):
    """The hint keys the evidence shows for its exercise (a failing probe of a hint never stops the others)."""
    try:
        with np.errstate(all="ignore"):
            return list(dict.fromkeys(DIAGNOSES[evidence.exercise](evidence)))
    except (KeyError, ValueError, TypeError, IndexError):
        return []
