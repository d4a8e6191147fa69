"""experiments/benchmark.py runs end to end with tiny settings and prints its JSON line.

No timing is asserted here: the figures depend on the machine and its load.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmark.py"
TINY = ["--steps", "2", "--warmup", "1", "--batch", "8", "--infer-batch", "16", "--threads", "1", "--json"]
KEYS = {"nncore_train_img_s", "nncore_infer_img_s", "torch_train_img_s", "torch_infer_img_s",
        "layers", "gemms", "gemm_share", "mnist_epoch_s", "ratios", "peak_rss_mb", "start"}


def run(*extra, mode=None):
    """The benchmark with tiny settings; ``mode`` None runs the default mode (compare)."""
    return subprocess.run([sys.executable, str(SCRIPT), *([mode] if mode else []), *TINY, *extra],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))


def last_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_without_torch_reports_nncore_and_says_torch_is_absent():
    proc = run("--no-torch", "--skip-subprocess")
    out = last_json(proc)
    assert KEYS <= set(out)
    assert out["nncore_train_img_s"] > 0 and out["nncore_infer_img_s"] > 0
    assert out["reference_train_img_s"] > 0
    assert out["torch_train_img_s"] is None and out["torch_infer_img_s"] is None
    assert out["torch_available"] is False
    assert all(d[k]["faults"] >= 0 for d in (out["train"], out["infer"]) for k in d)    # page faults per iteration
    assert "PyTorch left out" in proc.stderr
    assert out["gemm_share"] > 0  # a ratio of two timings: under load it can pass 1, so only its sign is checked
    assert len(out["layers"]) == 7           # fused ref-cnn: 6 layers + loss/update
    assert out["default_train_img_s"] > 0 and out["default_layers_train_img_s"] > 0
    assert out["default_infer_img_s"] > 0 and out["torch_default_train_img_s"] is None
    assert [row["layer"].split("(")[0] for row in out["default_layers"]] == [   # train.py's model, fused
        "ConvBNReLUPool", "ConvBNReLUPool", "Flatten", "DenseBNReLUDropout", "Dense", "loss + Adam update"]


def test_subprocess_measurements_skip_reference():
    out = last_json(run("--no-torch", "--skip-reference"))
    assert out["reference_train_img_s"] is None
    assert out["peak_rss_mb"]["nncore"] > 0 and out["peak_rss_mb"]["default"] > 0
    assert out["peak_rss_mb"]["default_layers"] > 0 and "torch_default" not in out["peak_rss_mb"]
    for name in ("cold", "warm"):
        assert out["start"][name]["added_s"] >= 0 and out["start_default"][name]["added_s"] >= 0


def test_with_torch_when_installed():
    pytest.importorskip("torch")
    out = last_json(run("--skip-reference", "--skip-subprocess"))
    assert out["torch_train_img_s"] > 0 and out["torch_infer_img_s"] > 0
    assert out["torch_channels_last_train_img_s"] > 0
    assert out["train"]["torch-default-channels-last"]["faults"] >= 0
    assert set(out["ratios"]) >= {"train_vs_torch", "train_vs_torch_channels_last", "infer_vs_torch"}
    assert out["torch_default_train_img_s"] > 0 and out["torch_default_channels_last_infer_img_s"] > 0
    assert set(out["ratios"]) >= {"default_train_vs_torch", "default_train_vs_torch_channels_last",
                                  "default_infer_vs_torch", "default_infer_vs_torch_channels_last"}


def test_gpu_without_a_device_is_one_clear_line():
    """Without CuPy or a CUDA device, the gpu mode exits 7 with the real reason and the install command."""
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here; the GPU benchmark itself is exercised on GPU machines")
    except ImportError:
        pass
    proc = subprocess.run([sys.executable, str(SCRIPT), "gpu"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 7
    assert proc.stderr.startswith("error:") and "cupy" in proc.stderr.lower() and ".[gpu]" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("mode,paths", [("first-layer", {"direct", "gemm"}), ("winograd", {"winograd", "gemm"})])
def test_path_comparison_reports_both_paths(mode, paths):
    out = last_json(run(mode=mode))
    assert set(out) == paths
    for path in out.values():
        assert set(path) == {"fwd", "bwd", "infer"} and min(path.values()) > 0


def test_gemm_list_follows_the_fused_model():
    """The direct first layer runs no GEMM; the second conv's products are Winograd's stacks of 36,
    one row per 6x6 input tile (4x4 per 14x14 image); with the reference kernels, im2col GEMMs at the
    pre-pooling size."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    from nncore.architectures import ref_cnn
    rows = benchmark.gemm_shapes(ref_cnn(seed=0, fused=True).train(), 4)
    convs = [r for r in rows if r[0].startswith("ConvReLUPool")]
    assert len(convs) == 3 and all("in_channels=32" in r[0] for r in convs)
    assert [r[1:5] for r in convs] == [((36, 4 * 16, 32), (36, 64, 32), False, True),
                                       ((36, 4 * 16, 64), (36, 4 * 16, 32), True, False),
                                       ((36, 4 * 16, 64), (36, 64, 32), False, False)]
    from nncore import kernels
    kernels.set_cpu_kernels("reference")
    try:
        rows = benchmark.gemm_shapes(ref_cnn(seed=0, fused=True).train(), 4)
    finally:
        kernels.set_cpu_kernels("numba")
    convs = [r for r in rows if r[0].startswith("ConvReLUPool")]
    assert len(convs) == 5 and convs[0][1:3] == ((32, 9), (9, 4 * 28 * 28))   # a first layer: no dcols
    assert convs[2][1:3] == ((64, 288), (288, 4 * 14 * 14))


def _benchmark_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    return benchmark


@pytest.mark.parametrize("argv,words", [
    (["gpu", "--threads", "2"],
     "the gpu mode has no --threads flag (it belongs to: compare, first-layer, winograd, startup)"),
    (["startup", "--steps", "3"], "the startup mode has no --steps flag (it belongs to: compare, first-layer"),
    (["gpu", "--batch", "8"], "the gpu mode has no --batch flag"),
    (["first-layer", "--no-torch"], "the first-layer mode has no --no-torch flag (it belongs to: compare, gpu)"),
    (["winograd", "--skip-subprocess"], "the winograd mode has no --skip-subprocess flag (it belongs to: compare)"),
    (["--gpu-train-batches", "8"], "the compare mode has no --gpu-train-batches flag (it belongs to: gpu)"),
    (["--device", "gpu", "--threads", "2"], "--device is gone: run `benchmark.py gpu`"),
    (["--first-layer"], "--first-layer is gone: run `benchmark.py first-layer`"),
    (["--winograd", "--batch", "8"], "--winograd is gone: run `benchmark.py winograd`"),
    (["fast"], "unknown mode 'fast'"),
    (["compare", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_flag_the_mode_does_not_use_is_refused(argv, words):
    """No flag is accepted and ignored: each mode takes only the flags it uses, and says whose a flag is."""
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and words in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_startup_times_train_py_cold_then_warm(mnist_dir):
    """One round: train.py up to its compile step on an empty numba cache, then on the warm one."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "startup", "--rounds", "1", "--json"], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, NNCORE_DATA_DIR=os.path.dirname(mnist_dir)))
    rows = last_json(proc)["rows"]
    assert [(r["cache"], r["round"]) for r in rows] == [("empty", 1), ("warm", 1)]
    for r in rows:
        assert r["to_compile_s"] > 0 and r["compile_s"] > 0
        assert r["total_s"] == pytest.approx(r["to_compile_s"] + r["compile_s"])
    assert rows[0]["compile_s"] > rows[1]["compile_s"]      # the empty cache compiled, the warm one loaded
    assert "from launch to the end of its compile step" in proc.stdout


def test_modes_and_their_flags_parse():
    benchmark = _benchmark_module()
    args = benchmark.parse_args(["--steps", "40", "--warmup", "3", "--json"])
    assert args.mode == "compare" and (args.steps, args.warmup, args.json) == (40, 3, True)
    args = benchmark.parse_args(["gpu", "--gpu-infer-batches", "8,16", "--no-torch"])
    assert args.mode == "gpu" and args.gpu_infer_batches == (8, 16) and not hasattr(args, "threads")
    args = benchmark.parse_args(["--debug", "winograd", "--threads", "1"])
    assert args.mode == "winograd" and args.threads == 1 and not hasattr(args, "block")


def test_chunked_winograd_products_are_the_products():
    """The GEMM timer for Winograd's dW stacks computes what the pipeline does: the summed product."""
    import numpy as np
    benchmark = _benchmark_module()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((36, 5, 23)), rng.standard_normal((36, 23, 4))
    np.testing.assert_allclose(benchmark._chunked(4, True)(a, b), a @ b, rtol=1e-12, atol=1e-12)
