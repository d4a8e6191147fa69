"""nncore.explain: activations, saliency, occlusion and mistakes, checked against the definitions;
experiments/explain.py run as users run it."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nncore
from nncore.explain import activations, conv_filters, misclassified, occlusion, occlusion_heatmap, saliency
from nncore.explain.pictures import PANEL_ROW, PANEL_TOP, PANEL_WIDTH, feature_maps, filter_figure, panel_figure
from nncore.gradcheck import numerical_gradient, rel_error, smoothness_margin
from nncore.plots import save_figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_WEIGHTS = os.path.join(ROOT, "weights", "mnist_cnn.npz")
SYMBOLS_WEIGHTS = os.path.join(ROOT, "weights", "symbols_cnn.npz")
H = 1e-6


def small_model():
    """A float64 CNN with BatchNorm (non-trivial running statistics) and Dropout, 3 classes on 12x12 images."""
    model = nncore.cnn(input_shape=(1, 12, 12), conv_channels=(3, 4), dense=(6,), num_classes=3, batchnorm=True,
                       dropout=0.5, dtype=np.float64, seed=3, input_scaling={"mean": 0.2, "std": 0.5})
    rng = np.random.default_rng(4)
    for ref in model.named_arrays():
        if ref.name == "running_mean":
            ref.set(rng.standard_normal(ref.value.shape) * 0.3)
        elif ref.name == "running_var":
            ref.set(rng.uniform(0.5, 2.0, ref.value.shape))
        elif ref.name in ("gamma", "beta"):
            ref.set(ref.value + rng.standard_normal(ref.value.shape) * 0.2)
    return model


def class_score(model, x, k):
    """The function saliency differentiates: the logit of class k for the prepared input x, in evaluation mode."""
    return lambda: float(model.forward(x, training=False)[0, k])


@pytest.fixture(scope="module")
def mnist_model():
    return nncore.load_model(MNIST_WEIGHTS)


def test_saliency_is_the_gradient_of_the_class_score():
    model = small_model()
    image = np.random.default_rng(5).uniform(0.05, 0.95, (12, 12))
    x = model.prepare(image[None])
    assert smoothness_margin(model, x, training=False) > 100 * H, "pick another seed: near a kink or tie"
    for k in range(3):
        grad, got = saliency(model, image, k)
        assert got == k and grad.shape == (1, 12, 12) and grad.dtype == np.float64
        assert rel_error(grad, numerical_gradient(class_score(model, x, k), x, H)[0]) < 1e-6


def test_saliency_of_the_trained_model_in_float64(mnist_model, mnist_test_digits):
    """The shipped model (BatchNorm, Dropout) copied to float64; MNIST's flat background makes max-pool ties,
    so a little noise is added and the digit with the widest margin from kinks and ties is checked."""
    model = copy.deepcopy(mnist_model).astype(np.float64)
    rng = np.random.default_rng(0)
    images = [0.05 + 0.9 * d / 255 + rng.uniform(-0.04, 0.04, d.shape) for d in mnist_test_digits[0][:8]]
    margins = [smoothness_margin(model, model.prepare(im[None]), training=False) for im in images]
    image, h = images[int(np.argmax(margins))], 1e-7
    assert max(margins) > 100 * h
    x = model.prepare(image[None])
    grad, k = saliency(model, image)
    assert k == int(model.forward(x, training=False)[0].argmax())
    assert rel_error(grad, numerical_gradient(class_score(model, x, k), x, h)[0]) < 1e-6


def test_saliency_leaves_the_model_as_it_was():
    model = small_model()
    before = model.state_dict()
    saliency(model, np.full((12, 12), 0.5))
    assert not model.input_grad and not model.training
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_occlusion_values_are_the_probability_drops():
    model = small_model()
    image = np.random.default_rng(6).uniform(0, 1, (12, 12))
    drops, k = occlusion(model, image, patch=4, stride=3, fill=0.0)
    assert drops.shape == (3, 3)
    p = model.predict_proba(image[None])[0, k]
    for i in range(3):
        for j in range(3):
            covered = image.copy()
            covered[3 * i:3 * i + 4, 3 * j:3 * j + 4] = 0.0
            assert drops[i, j] == pytest.approx(p - model.predict_proba(covered[None])[0, k], abs=1e-12)
    heat = occlusion_heatmap(drops, (12, 12), patch=4, stride=3)
    assert heat[0, 0] == drops[0, 0] and heat[3, 3] == pytest.approx(drops[:2, :2].mean())


def test_activations_are_the_layer_outputs():
    model = small_model()
    image = np.random.default_rng(7).uniform(0, 1, (12, 12))
    found = activations(model, image)
    x = model.prepare(image[None])
    assert found[0][0] == "input"
    np.testing.assert_array_equal(found[0][1], x[0])
    for (name, a), layer in zip(found[1:], model.layers):
        x = layer.forward(x, training=False)
        assert name.endswith(type(layer).__name__)
        np.testing.assert_array_equal(a, x[0])
    np.testing.assert_array_equal(found[-1][1], model.forward(model.prepare(image[None]), training=False)[0])
    conv_block_shapes = [(3, 12, 12)] * 3 + [(3, 6, 6)] + [(4, 6, 6)] * 3 + [(4, 3, 3)]
    assert [a.shape for _, a in feature_maps(model, image)] == conv_block_shapes
    assert [w.shape for _, w in conv_filters(model)] == [(3, 1, 3, 3), (4, 3, 3, 3)]


def test_misclassified_lists_the_mistakes_most_confident_first():
    model = small_model()
    images = np.random.default_rng(8).uniform(0, 1, (20, 12, 12))
    probs = model.predict_proba(images)
    labels = (probs.argmax(axis=1) + np.arange(20) % 2) % 3                 # every other one is wrong
    mistakes = misclassified(model, images, labels)
    assert sorted(m["index"] for m in mistakes) == list(range(1, 20, 2))
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    assert len(misclassified(model, images, labels, limit=3)) == 3


def test_panel_and_filter_figures_have_their_sizes(tmp_path, mnist_model, draw):
    digit = nncore.preprocess_image(draw("seven"))
    path = save_figure(panel_figure(mnist_model, digit), str(tmp_path / "panel.png"))
    rows = len(feature_maps(mnist_model, digit))
    with Image.open(path) as im:
        assert im.size == (round(100 * PANEL_WIDTH), round(100 * (PANEL_TOP + PANEL_ROW * rows)))
    for _, w in conv_filters(mnist_model):
        save_figure(filter_figure(w), str(tmp_path / "filters.png"))


# -- experiments/explain.py ---------------------------------------------------------------------------------

def explain(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "explain.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("weights,kind", [(MNIST_WEIGHTS, "seven"), (SYMBOLS_WEIGHTS, "plus")])
def test_explain_script_writes_one_panel(tmp_path, draw, weights, kind):
    Image.fromarray(draw(kind)).save(tmp_path / "pic.png")
    proc = explain("pic.png", "--weights", weights, "--out", "panels", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "panels/pic_explain.png" in proc.stdout
    with Image.open(tmp_path / "panels" / "pic_explain.png") as im:
        assert im.format == "PNG" and im.size == (1200, 1340)      # 8 image-stack layers in both models


def one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    return lines[0]


def test_explain_script_errors_are_one_line(tmp_path, draw):
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(draw("seven")).save(tmp_path / "pic.png")
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "blank.png")
    assert "not found" in one_line_error(explain("missing.png", "--weights", MNIST_WEIGHTS, cwd=str(tmp_path)), 3)
    assert "notes.png" in one_line_error(explain("notes.png", "--weights", MNIST_WEIGHTS, cwd=str(tmp_path)), 4)
    assert "no ink" in one_line_error(explain("blank.png", "--weights", MNIST_WEIGHTS, cwd=str(tmp_path)), 4)
    assert "nope.npz" in one_line_error(explain("pic.png", "--weights", "nope.npz", cwd=str(tmp_path)), 3)
    one_line_error(explain("pic.png", "--colour", "red", cwd=str(tmp_path)), 2)
    assert not (tmp_path / "runs").exists()
