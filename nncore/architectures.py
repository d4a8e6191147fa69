"""Model builders: the reference CNN and the configurable CNN that train.py uses, and unfused()."""

import copy

import numpy as np

from .errors import UsageError
from .layers import (
    BatchNorm,
    Conv2D,
    ConvBNReLUPool,
    ConvReLUPool,
    Dense,
    DenseBNReLUDropout,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
)
from .sequential import Sequential

#: MNIST's pixel mean and standard deviation on the [0, 1] scale.
MNIST_SCALING = {"mean": 0.1307, "std": 0.3081}


def cnn(input_shape=(1, 28, 28), conv_channels=(32, 64), dense=(128,), num_classes=10, kernel_size=3,
        batchnorm=False, dropout=0.0, class_names=None, symbols=None, input_scaling=None, seed=0,
        dtype=np.float32, fused=False):
    """A VGG-style CNN: for each entry of ``conv_channels`` a block
    Conv(k x k, padding 'same') [-> BatchNorm] -> ReLU -> MaxPool 2; then Flatten,
    for each entry of ``dense`` a block Dense [-> BatchNorm] -> ReLU [-> Dropout],
    and a final Dense to ``num_classes`` logits.

    ``seed`` fixes the initial weights. ``fused=True`` builds each block as one layer
    with the same parameters, buffers and math, computed in fewer passes over memory
    (faster): without BatchNorm each conv block as a :class:`~nncore.layers.ConvReLUPool`;
    with BatchNorm each conv block as a :class:`~nncore.layers.ConvBNReLUPool` and each
    dense block as a :class:`~nncore.layers.DenseBNReLUDropout`. The same ``seed`` gives a
    fused and an unfused model the same weights and the same dropout masks.
    """
    conv_channels = [int(c) for c in conv_channels]
    dense = [int(d) for d in dense]
    if any(c < 1 for c in conv_channels + dense) or int(num_classes) < 2:
        raise UsageError(f"layer sizes must be positive and num_classes >= 2, got conv {conv_channels}, "
                         f"dense {dense}, classes {num_classes}")
    if not 0.0 <= float(dropout) < 1.0:
        raise UsageError(f"dropout must be in [0, 1), got {dropout}")
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    layers = []
    for ch in conv_channels:
        if h < 2 or w < 2:
            raise UsageError(f"too many conv blocks: the image is only {h}x{w} before block {len(layers)}")
        if fused and batchnorm:
            layers.append(ConvBNReLUPool(c, ch, kernel_size, padding="same", pool=2, rng=rng, dtype=dtype))
        elif fused:
            layers.append(ConvReLUPool(c, ch, kernel_size, padding="same", pool=2, rng=rng, dtype=dtype))
        else:
            layers.append(Conv2D(c, ch, kernel_size, padding="same", bias=not batchnorm, rng=rng, dtype=dtype))
            if batchnorm:
                layers.append(BatchNorm(ch, dtype=dtype))
            layers += [ReLU(), MaxPool2D(2)]
        c, h, w = ch, h // 2, w // 2
    layers.append(Flatten())
    features = c * h * w
    for d in dense:
        if fused and batchnorm:
            layers.append(DenseBNReLUDropout(features, d, p=dropout, rng=rng, dtype=dtype))
            features = d
            continue
        layers.append(Dense(features, d, bias=not batchnorm, rng=rng, dtype=dtype))
        if batchnorm:
            layers.append(BatchNorm(d, dtype=dtype))
        layers.append(ReLU())
        if dropout:
            layers.append(Dropout(dropout, rng=rng.integers(2**32)))
        features = d
    layers.append(Dense(features, num_classes, rng=rng, dtype=dtype))
    return Sequential(layers, input_shape, class_names=class_names, symbols=symbols,
                      input_scaling=input_scaling or MNIST_SCALING)


def ref_cnn(seed=0, dtype=np.float32, fused=False):
    """The reference CNN ("ref-cnn") used by the benchmarks.

    Input 1x28x28; Conv 3x3 1->32 pad 1, ReLU, MaxPool 2; Conv 3x3 32->64 pad 1,
    ReLU, MaxPool 2; Flatten (3136); Dense 3136->128, ReLU; Dense 128->10.
    ``fused=True`` computes each Conv, ReLU, MaxPool triple as one ConvReLUPool
    layer (identical parameters, outputs and gradients for the same seed).
    """
    return cnn(conv_channels=(32, 64), dense=(128,), num_classes=10, seed=seed, dtype=dtype, fused=fused)


def unfused(model):
    """The same network with every fused layer written out as the layers it fuses.

    ConvReLUPool -> Conv2D, ReLU, MaxPool2D; ConvBNReLUPool -> Conv2D (no bias), BatchNorm, ReLU,
    MaxPool2D; DenseBNReLUDropout -> Dense (no bias), BatchNorm, ReLU [, Dropout]. The arrays are
    copied, so the outputs are the same (to float rounding); other layers are copied as they are.
    Training is faster fused; a model written out layer by layer shows every stage to
    :mod:`nncore.explain` and the draw page (train.py saves its weights this way).
    """
    def take(dst, src, names, store):
        for name in names:
            getattr(dst, store)[name] = getattr(src, store)[name].copy()
        return dst

    layers = []
    for layer in model.layers:
        dtype = next(iter(layer.params.values())).dtype if layer.params else None
        if isinstance(layer, ConvReLUPool):               # ConvBNReLUPool is one too
            bn = isinstance(layer, ConvBNReLUPool)
            conv = Conv2D(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          bias=layer.use_bias and not bn, dtype=dtype)
            layers.append(take(conv, layer, ["W"] + (["b"] if conv.use_bias else []), "params"))
            if bn:
                norm = BatchNorm(layer.out_channels, layer.momentum, layer.eps, dtype=dtype)
                layers.append(take(take(norm, layer, ["gamma", "beta"], "params"),
                                   layer, ["running_mean", "running_var"], "buffers"))
            layers += [ReLU(), MaxPool2D(layer.pool, layer.pool_stride)]
        elif isinstance(layer, DenseBNReLUDropout):
            dense = take(Dense(layer.in_features, layer.out_features, bias=False, dtype=dtype), layer, ["W"], "params")
            norm = BatchNorm(layer.out_features, layer.momentum, layer.eps, dtype=dtype)
            layers += [dense, take(take(norm, layer, ["gamma", "beta"], "params"),
                                   layer, ["running_mean", "running_var"], "buffers"), ReLU()]
            if layer.p:
                layers.append(Dropout(layer.p))
        else:
            layers.append(copy.deepcopy(layer))
    out = Sequential(layers, model.input_shape, class_names=model.class_names, symbols=model.symbols,
                     input_scaling=model.input_scaling)
    return out.train() if model.training else out.eval()
