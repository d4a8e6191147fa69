"""Compiling the kernels side by side (nncore.kernels.cpu.precompile): the share-out, the recorded
signatures, and a fresh cache after precompile() that leaves nothing for the first step to compile."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from numba import types

from nncore.kernels.cpu import precompile as pc


def test_argument_types_round_trip_through_json():
    for t in (types.Array(types.float32, 4, "C"), types.Array(types.int8, 2, "A", readonly=True), types.int64,
              types.float64, types.boolean, types.none):
        assert pc.type_from_json(json.loads(json.dumps(pc.type_to_json(t)))) == t
    with pytest.raises(TypeError, match="not recorded"):
        pc.type_to_json(types.UniTuple(types.int64, 2))


def test_each_group_is_compiled_by_the_process_that_claims_it(tmp_path, monkeypatch):
    groups = [[["m", "a", [], 2.0]], [["m", "b", [], 1.0]], [["m", "c", [], 0.5]]]
    done = []
    monkeypatch.setattr(pc, "compile_entries", lambda group: done.append(group[0][1]) or True)
    (tmp_path / "1").touch()                                    # another process took b
    assert pc.take_and_compile(groups, str(tmp_path)) is True
    assert done == ["a", "c"] and sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]
    assert pc.take_and_compile(groups, str(tmp_path)) is True and done == ["a", "c"]      # nothing left


def test_an_out_of_date_record_is_skipped_not_an_error():
    stale = [["winograd", "_no_such_kernel", [["float32", 2, "C", False]], 1.0],
             ["no_such_module", "_kernel", [], 1.0],
             ["pool", "max4", [["float32", 2, "C", False], "int64"], 1.0],         # arguments max4 does not take
             ["winograd", "winograd_forward", [], 1.0]]                             # a Python function
    assert pc.compile_entries(stale) is False


def test_a_warm_cache_stops_after_the_first_group(tmp_path, monkeypatch):
    groups = [[["m", "a", [], 2.0]], [["m", "b", [], 1.0]]]
    done = []
    monkeypatch.setattr(pc, "compile_entries", lambda group: done.append(group[0][1]) and False)   # loaded
    assert pc.take_and_compile(groups, str(tmp_path), stop_if_cached=True) is False and done == ["a"]


def test_a_models_groups_hold_one_kernel_each_longest_first():
    from nncore.architectures import cnn
    model = cnn(conv_channels=(32, 48), dense=(256,), batchnorm=True, seed=0, fused=True)
    groups = pc.kernels_for_model(model)
    names = [(g[0][0], g[0][1]) for g in groups]
    assert len(names) == len(set(names)) and all((e[0], e[1]) == n for g, n in zip(groups, names) for e in g)
    seconds = [sum(e[3] for e in g) for g in groups]
    assert seconds == sorted(seconds, reverse=True) and ("fused_batchnorm", "_bn_relu_pool") in names
    inference = [(g[0][0], g[0][1]) for g in pc.kernels_for_model(model, training=False)]
    assert ("winograd", "_winograd_relu_pool") in inference and ("fused_batchnorm", "_bn_relu_pool") not in inference
    assert ("direct", "_conv3x3_relu_pool2_forward") in set(inference) & set(names)    # conv 1 in both
    # inference's own kernels: compiled in the background while training starts
    deferred = [(g[0][0], g[0][1]) for g in pc.inference_only_kernels(model)]
    assert deferred == [("winograd", "_winograd_relu_pool")] and not set(deferred) & set(names)
    assert pc.kernels_for_model(cnn(conv_channels=(8,), dense=(), seed=0, dtype="float64")) == []      # float64


def test_the_record_names_kernels_that_exist_with_float32_arrays():
    recorded = json.loads(pc.SIGNATURES.read_text())
    assert {"ConvBNReLUPool", "DenseBNReLUDropout", "ConvReLUPool", "Conv2D", "MaxPool2D"} <= recorded.keys()
    for modes in recorded.values():
        assert set(modes) == {"infer", "train"}
        for module, kernel, args, seconds in modes["infer"] + modes["train"]:
            assert callable(pc._dispatcher(module, kernel).py_func) and seconds > 0
            assert any(a[0] == "float32" for a in args if isinstance(a, list))     # recorded from a float32 model


#: child-process code: ``compiled`` gets the name of every kernel numba compiles ``with listening():``
_LISTENING = textwrap.dedent("""
    from numba.core import event
    compiled = []
    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__name__)
        def on_end(self, ev):
            pass
    def listening():
        return event.install_listener("numba:compile", Listener())
""")

_CHILD = _LISTENING + textwrap.dedent("""
    import json, sys
    import numpy as np
    from nncore import SoftmaxCrossEntropy, load_model, ref_cnn
    from nncore.architectures import cnn
    from nncore.kernels.cpu import precompile as pc
    from nncore.optim import Adam
    from nncore.training import TrainConfig
    cfg = TrainConfig()
    training = sys.argv[1] != "shipped"
    if sys.argv[1] == "default":
        model = cnn(conv_channels=cfg.conv, dense=cfg.dense, kernel_size=cfg.kernel_size, batchnorm=True,
                    dropout=cfg.dropout, seed=0, fused=True)
    elif sys.argv[1] == "ref-cnn":
        model = ref_cnn(seed=0, fused=True)
    else:
        model = load_model(sys.argv[2])
    optimizer = Adam(model) if training else None
    helpers = pc.precompile(model, training, optimizer=optimizer)
    background = len(pc._background)
    assert pc.wait_for_background()
    x = np.random.default_rng(0).standard_normal((32, 1, 28, 28)).astype(np.float32)
    with listening():
        if training:
            loss = SoftmaxCrossEntropy()
            loss.forward(model.train().forward(x, training=True), np.arange(32) % 10)
            model.backward(loss.backward())
            optimizer.step()
        logits = model.eval().forward(x, training=False)
        model.predict_proba(np.zeros((1, 28, 28), np.uint8))
    print(json.dumps({"helpers": helpers, "background": background, "compiled_after": compiled,
                      "again": pc.precompile(model, training), "logits": logits[:4].tolist(),
                      "compiler_set_up": "numba.np.arraymath" in sys.modules}))
""")


@pytest.mark.parametrize("model", ["default", "ref-cnn", "shipped"])
def test_after_precompile_on_an_empty_cache_the_first_step_compiles_nothing(model, tmp_path):
    """The recorded signatures are current for train.py's default model and ref-cnn (training and
    inference) and the shipped MNIST file (inference, as classify.py runs it): a helper compiled its
    share, one more compiled inference's own kernels in the background for the default model, and
    what follows finds every kernel in the cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NNCORE_NUM_THREADS="2")
    weights = os.path.join(os.path.dirname(__file__), "..", "weights", "mnist_cnn.npz")
    run = subprocess.run([sys.executable, "-c", _CHILD, model, weights], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # only the default model's inference has kernels of its own (BatchNorm folded into the weights)
    assert result["helpers"] == 1 and result["background"] == (model == "default")
    assert result["compiled_after"] == [], (
        "kernels compiled after precompile(): run `python -m nncore.kernels.cpu.precompile --record`")
    assert result["again"] == 0          # everything is loaded now: no helper, nothing compiled
    assert result["compiler_set_up"]     # this process compiled its share: numba imported its registries
    # a warm start: the kernels load from the cache without numba's compiler set-up (jit.KernelCache),
    # and compute the same numbers
    warm = subprocess.run(run.args, env=env, capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr[-2000:]
    again = json.loads(warm.stdout.strip().splitlines()[-1])
    assert again["helpers"] == 0 and again["compiled_after"] == [] and not again["compiler_set_up"]
    assert again["logits"] == result["logits"]


def test_classify_on_a_fresh_install_says_it_is_compiling(tmp_path):
    from PIL import Image, ImageDraw
    picture = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(picture).line([(30, 20), (90, 20), (50, 100)], fill=0, width=8)     # a 7
    picture.save(tmp_path / "seven.png")
    root = os.path.join(os.path.dirname(__file__), "..")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NNCORE_NUM_THREADS="2")
    run = subprocess.run([sys.executable, os.path.join(root, "experiments", "classify.py"), str(tmp_path / "seven.png"),
                          "--weights", os.path.join(root, "weights", "mnist_cnn.npz")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == "compiling nncore's kernels, once (numba caches them for later runs) ...\n"
    assert run.stdout.startswith(f"{tmp_path / 'seven.png'}: 7 ")
    again = subprocess.run(run.args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stderr == "" and again.stdout == run.stdout      # cached: silent


def test_the_module_run_without_arguments_prints_its_usage():
    run = subprocess.run([sys.executable, "-m", "nncore.kernels.cpu.precompile"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("usage: python -m nncore.kernels.cpu.precompile --record") and "\n" == run.stderr[-1]


_FEW_IMAGES_CHILD = _LISTENING + textwrap.dedent("""
    import json
    import numpy as np
    from nncore import SoftmaxCrossEntropy, set_num_threads
    from nncore.architectures import cnn
    from nncore.optim import Adam
    from nncore.training import TrainConfig
    from nncore.training.kernel_compile import compile_kernels
    set_num_threads(1)          # no helper: the passes on a few images compile everything themselves
    cfg = TrainConfig()
    model = cnn(conv_channels=cfg.conv, dense=cfg.dense, kernel_size=cfg.kernel_size, batchnorm=True,
                dropout=cfg.dropout, seed=0, fused=True)
    optimizer = Adam(model)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), np.arange(256) % 10
    compile_kernels(model, images, labels, lambda line: None, optimizer)
    model.predict_proba(images[:8])     # inference's own kernels (on more threads: compiled in the background)
    with listening():
        model.train_step(model.prepare(images), labels, SoftmaxCrossEntropy(), optimizer)
        model.predict_proba(images)
    print(json.dumps(compiled))
""")


def test_compile_passes_on_a_few_images_compile_what_a_full_batch_needs(tmp_path):
    """compile_kernels runs its passes on COMPILE_IMAGES images of the first batch: numba compiles for
    argument types, not sizes, so a whole batch of 256 afterwards (a training step, and a prediction
    after one on 8 images) compiles nothing more. On an empty cache and one thread, so that the passes
    alone compile."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _FEW_IMAGES_CHILD], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_warm_up_sets_numba_up_in_the_background_on_numba_kernels_only():
    from nncore import kernels
    kernels.set_cpu_kernels("reference")
    try:
        assert kernels.warm_up() is None            # a reference-only run never imports numba for it
    finally:
        kernels.set_cpu_kernels("numba")
    thread = kernels.warm_up()
    thread.join(120)
    assert not thread.is_alive() and thread.daemon
    assert pc._nothing.signatures                   # its kernel ran: numba's CPU target is set up


def test_the_background_helper_compiles_its_groups_and_is_waited_for(tmp_path):
    """compile_in_background starts one helper that fills the cache without this process waiting; after
    wait_for_background, loading the kernel here compiles nothing. An empty list starts nothing."""
    child = _LISTENING + textwrap.dedent("""
        import json
        from nncore.kernels.cpu import precompile as pc
        assert pc.compile_in_background([]) is None
        entry = ["optim", "_adam_update", [["float32", 1, "C", False]] * 4 + ["float32"] * 8, 0.3]
        proc = pc.compile_in_background([[entry]])
        finished = pc.wait_for_background()
        with listening():
            pc.compile_entries([entry])
        print(json.dumps({"code": proc.returncode, "finished": finished, "compiled": compiled}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"code": 0, "finished": True, "compiled": []}


def test_every_cached_kernel_loads_through_kernel_cache():
    """A kernel decorated with numba.njit(cache=True) directly would load with numba's whole compiler
    set-up (its registries, SciPy's BLAS) on every warm start: each cached kernel uses KernelCache."""
    import importlib
    import pkgutil

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    import nncore.kernels.cpu as cpu
    from nncore.kernels.cpu.jit import KernelCache

    cached = {}
    for module in pkgutil.iter_modules(cpu.__path__):
        for name, value in vars(importlib.import_module(f"{cpu.__name__}.{module.name}")).items():
            if isinstance(value, Dispatcher) and not isinstance(value._cache, NullCache):
                cached[f"{module.name}.{name}"] = type(value._cache)
    assert len(cached) > 20 and "winograd._winograd_tiles" in cached
    assert {k: v for k, v in cached.items() if v is not KernelCache} == {}
