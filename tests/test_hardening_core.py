"""Hardening of the core: killed saves, hostile arrays through the API, extreme numerics.

Property-based tests (hypothesis) throw arbitrary shapes, dtypes and pixel
values at the public prediction API: every input must give either a valid
probability table or a one-line UsageError, never a crash or a NaN.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nncore
from nncore.errors import UsageError

MODEL = nncore.ref_cnn(seed=0)


def test_sigkill_during_repeated_saves_always_leaves_a_loadable_file(tmp_path):
    """Kill a process that saves in a loop at several moments: the file on disk must always load."""
    path = tmp_path / "w.npz"
    script = textwrap.dedent(f"""
        import nncore, sys
        m = nncore.ref_cnn(seed=0)
        nncore.save_model(m, {str(path)!r}, metadata={{"i": -1}})
        print("ready", flush=True)
        i = 0
        while True:
            nncore.save_model(m, {str(path)!r}, metadata={{"i": i}})
            i += 1
    """)
    seen = set()
    for delay in (0.05, 0.13, 0.29, 0.41, 0.67):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model, header, _ = nncore.load_model(path, return_extra=True)
        assert model.num_params() == MODEL.num_params()
        seen.add(header["metadata"]["i"])
    assert max(seen) >= 0  # some kills landed after at least one complete save in the loop
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "w.npz"]
    assert all(name.endswith(".tmp") for name in leftovers)  # a killed writer can only leave its own temp file


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.bool_]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=30)))
def test_any_array_gives_probabilities_or_a_usage_error(images):
    try:
        probs = MODEL.predict_proba(images)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert probs.shape == (images.shape[0], 10)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(dtype=np.float64, shape=(2, 28, 28),
                  elements=st.floats(0, 1, allow_nan=False, allow_infinity=False)))
def test_valid_float_pixels_always_give_finite_probabilities(images):
    probs = MODEL.predict_proba(images)
    assert np.isfinite(probs).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused(bad):
    images = np.zeros((2, 28, 28))
    images[1, 5, 5] = bad
    with pytest.raises(UsageError, match="NaN or infinite"):
        MODEL.predict(images)


def test_huge_logits_keep_training_finite():
    """A model whose weights blow up produces huge logits; the loss and gradients stay finite."""
    model = nncore.ref_cnn(seed=0)
    model.layers[-1].params["W"] *= np.float32(1e5)
    loss_fn = nncore.SoftmaxCrossEntropy()
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    loss = loss_fn.forward(model.forward(x, training=True), np.arange(8))
    grad = loss_fn.backward()
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_batch_size_must_be_positive():
    with pytest.raises(UsageError, match="batch_size"):
        MODEL.predict(np.zeros((1, 28, 28), np.uint8), batch_size=0)


def test_empty_batch_gives_empty_predictions():
    assert MODEL.predict(np.zeros((0, 28, 28), np.uint8)).shape == (0,)


def test_bad_thread_setting_is_a_usage_error(monkeypatch):
    from nncore import threads
    monkeypatch.setenv("NNCORE_NUM_THREADS", "zero")
    with pytest.raises(UsageError, match="NNCORE_NUM_THREADS"):
        threads.default_num_threads()
    with pytest.raises(UsageError):
        nncore.set_num_threads(0)


def test_bad_kernel_setting_is_a_usage_error(monkeypatch):
    from nncore import kernels
    monkeypatch.setitem(kernels._state, "cpu_kernels", "fortran")
    with pytest.raises(UsageError, match="NNCORE_KERNELS"):
        kernels.kernels_for(np.zeros(1))


def test_atomic_write_cleans_up_on_error(tmp_path):
    from nncore.atomic import atomic_write
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
