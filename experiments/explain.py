"""Show what a trained network does with one picture: one PNG panel.

Usage::

    python experiments/explain.py my_digit.png
    python experiments/explain.py my_symbol.jpg --weights weights/symbols_cnn.npz --out runs/explain

The picture goes through nncore.preprocess_image (as in classify.py), then the
panel shows the input as the network sees it (28x28), the top-3 probabilities,
the saliency (the gradient of the predicted class's score with respect to each
input pixel, computed by the model's own backward pass in evaluation mode), the
occlusion map (how much the probability drops when a 6x6 patch is covered), and
the most active feature maps of every convolutional-stage layer.
Writes <out>/<image name>_explain.png and prints its path and the prediction.
"""

import os

import nncore
from nncore.atomic import check_writable
from nncore.cli import ArgumentParser, compile_kernels, default_weights, run_cli
from nncore.errors import CorruptInputError, MissingInputError, UsageError
from nncore.explain.pictures import panel_figure
from nncore.plots import save_figure


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", metavar="IMAGE", help="an image file (any size; dark on light or light on dark)")
    p.add_argument("--weights", default=default_weights("mnist_cnn.npz"), help="weights file")
    p.add_argument("--out", default=os.path.join("runs", "explain"), help="folder for the PNG panel")
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    if not os.path.isfile(args.image):
        raise MissingInputError(f"{args.image} not found; give an image file")
    model = nncore.load_model(args.weights)
    if model.input_shape != (1, 28, 28):
        raise UsageError(f"{args.weights} expects inputs of shape {model.input_shape}, not 28x28 images")
    image = nncore.preprocess_image(args.image)
    if not image.any():
        raise CorruptInputError(f"{args.image}: no ink found (blank image)")
    compile_kernels(model, training=True)           # the saliency maps run the backward pass
    name = os.path.splitext(os.path.basename(args.image))[0]
    path = os.path.join(args.out, f"{name}_explain.png")
    check_writable(path)
    probs = model.predict_proba(image[None])[0]
    k = int(probs.argmax())
    title = (f"{os.path.basename(args.image)}: {model.symbols[k]} ({100 * probs[k]:.1f}%), "
             f"{os.path.basename(args.weights)}")
    save_figure(panel_figure(model, image, title=title), path)
    print(f"{args.image}: {model.symbols[k]} {100 * probs[k]:.1f}%; panel: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
