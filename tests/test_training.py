"""The training loop (nncore.training), augmentation (nncore.augment) and plots, used in-process."""

import argparse
import json
import os
import re

import numpy as np
import pytest

import nncore
from nncore import training
from nncore.augment import affine_warp, augment, thicken
from nncore.cli import int_list, int_list_or_none
from nncore.errors import SettingError, TrainingDivergedError, UsageError

TINY = dict(conv=(8, 16), dense=(32,), batch_size=64, epochs=2, lr=2e-3, dropout=0.25, augment=True, seed=3)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    """Real MNIST slices: 640 training and 256 validation images (uint8 (N, 28, 28), int64 (N,))."""
    from nncore.data import load_mnist
    d = load_mnist(os.path.dirname(mnist_dir), download=False)
    return (d["x_train"][:640], d["y_train"][:640].astype(np.int64),
            d["x_train"][-256:], d["y_train"][-256:].astype(np.int64))


def make_model(cfg, num_classes=10):
    """The cnn a TrainConfig describes (as experiments/train.py builds it)."""
    return nncore.cnn(conv_channels=cfg.conv, dense=cfg.dense, num_classes=num_classes, kernel_size=cfg.kernel_size,
                      batchnorm=cfg.batchnorm, dropout=cfg.dropout, seed=cfg.seed)


def make_trainer(mnist, out_dir, callbacks=(), **overrides):
    cfg = training.TrainConfig(**{**TINY, **overrides})
    return training.Trainer(make_model(cfg), cfg, *mnist, out_dir=out_dir, progress=False, log=None,
                            callbacks=callbacks)


class StopAt:
    """Callback raising KeyboardInterrupt (a simulated Ctrl-C) at (epoch, step) or at an epoch's end."""

    def __init__(self, epoch, step=None):
        self.epoch, self.step = epoch, step

    def on_step(self, trainer, loss):
        if self.step is not None and (trainer.epoch, trainer.step) == (self.epoch, self.step):
            raise KeyboardInterrupt

    def on_epoch_end(self, trainer, row):
        if self.step is None and row["epoch"] == self.epoch + 1:
            raise KeyboardInterrupt


# -- augmentation ---------------------------------------------------------------

def test_identity_warp_is_exact():
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = affine_warp(x, np.zeros(5), np.ones(5), np.zeros((5, 2)))
    assert out.dtype == np.uint8 and np.array_equal(out, x)


def test_integer_shift_moves_pixels():
    x = np.zeros((1, 28, 28), np.uint8)
    x[0, 10:15, 10:12] = 200
    out = affine_warp(x, np.zeros(1), np.ones(1), np.array([[3.0, -2.0]]))
    assert np.array_equal(out[0, 13:18, 8:10], x[0, 10:15, 10:12]) and out.sum() == x.sum()


def test_augment_is_seeded_and_keeps_digits(mnist):
    x = mnist[0][:64]
    a = augment(x, np.random.default_rng([1, 2, 3]))
    b = augment(x, np.random.default_rng([1, 2, 3]))
    c = augment(x, np.random.default_rng([1, 2, 4]))
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, x)
    ink = a.reshape(64, -1).sum(1) / x.reshape(64, -1).sum(1)  # ink mass ~ scale**2 in [0.81, 1.21]
    assert ink.min() > 0.7 and ink.max() < 1.35


def test_thicken_grows_strokes_by_one_pixel_only_where_asked():
    x = np.zeros((2, 28, 28), np.uint8)
    x[:, 5:23, 13] = 255                                   # a one-pixel vertical stroke
    out = thicken(x, np.array([True, False]))
    assert np.array_equal(out[1], x[1])
    grown = np.zeros((28, 28), bool)
    grown[5:24, 13:15] = True                              # one pixel wider and one longer, nothing else
    assert np.array_equal(out[0] > 0, grown) and (out[0][grown] == 255).all()


def test_augment_thick_share_is_seeded_and_checked(mnist):
    from nncore.data.preprocess import stroke_width
    x = mnist[0][:64]
    plain = augment(x, np.random.default_rng([1, 2, 3]))
    thick = augment(x, np.random.default_rng([1, 2, 3]), thick=1.0)
    assert np.array_equal(thick, augment(x, np.random.default_rng([1, 2, 3]), thick=1.0))
    widths = [np.median([stroke_width(a > 127) for a in b]) for b in (plain, thick)]
    assert widths[1] > widths[0] + 0.5, widths
    with pytest.raises(UsageError, match="thick"):
        augment(x, np.random.default_rng(0), thick=1.5)
    with pytest.raises(UsageError, match="thick"):
        training.TrainConfig(augment=False, thick=0.5).validate()


# -- configuration ------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(lr=-0.1), dict(lr=float("nan")), dict(batch_size=0), dict(optimizer="rmsprop"),
                                 dict(conv=(32, 0)), dict(dense=(-5,)), dict(conv=()), dict(epochs=0),
                                 dict(momentum=1.5), dict(dropout=1.0), dict(schedule="poly"), dict(seed=-1),
                                 dict(conv=(8, 8, 8, 8, 8))])
def test_bad_hyperparameters_raise_usage_error(bad):
    with pytest.raises(UsageError) as err:
        training.TrainConfig(**bad).validate()
    assert "\n" not in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize("bad", [dict(conv=()), dict(batch_size=1), dict(batch_size=0), dict(lr=-1.0),
                                 dict(kernel_size=2), dict(warmup=100.0), dict(seed=-1)])
def test_config_errors_name_the_field_not_a_flag(bad):
    """The library speaks of settings (batch_size=...); only the scripts know their flags."""
    with pytest.raises(SettingError) as err:
        training.TrainConfig(**bad).validate()
    msg = str(err.value)
    assert "--" not in msg and err.value.setting in bad and msg.startswith(err.value.setting + " ")


def test_int_list():  # was test_parse_sizes, when the parser lived in nncore.training
    assert int_list("32,64") == (32, 64)
    assert int_list_or_none("none") == ()
    for bad in ("32,x", "0", "-3", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            int_list(bad)


def test_batches_cover_every_sample():
    assert training.batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert training.batch_bounds(9, 4) == [(0, 4), (4, 8)]  # a lone last sample cannot feed BatchNorm
    assert training.batch_bounds(3, 8) == [(0, 3)]


def test_evaluate_counts_the_last_partial_batch(mnist):
    model = make_model(training.TrainConfig(**TINY))
    x, y = mnist[2][:201], mnist[3][:201]
    ev = training.evaluate(model, x, y, batch_size=50)
    assert ev["pred"].shape == (201,) and ev["proba"].shape == (201, 10)
    assert np.array_equal(ev["pred"], model.predict(x))
    assert ev["accuracy"] == pytest.approx(float((model.predict(x) == y).mean()))


# -- resumption, interruption, divergence --------------------------------------------

def _arrays(trainer):
    return trainer.model.state_dict()


@pytest.mark.parametrize("stop", [StopAt(0), StopAt(0, 4)], ids=["epoch-boundary", "mid-epoch"])
def test_resume_ends_where_an_uninterrupted_run_ends(mnist, tmp_path, stop):
    straight = make_trainer(mnist, str(tmp_path / "a"))
    straight.fit()
    broken = make_trainer(mnist, str(tmp_path / "b"), callbacks=[stop])
    with pytest.raises(KeyboardInterrupt):
        broken.fit()
    resumed = training.Trainer.resume(str(tmp_path / "b" / "checkpoint.npz"), *mnist, out_dir=str(tmp_path / "b"),
                                      progress=False, log=None)
    assert (resumed.epoch, resumed.step) == ((1, 0) if stop.step is None else (0, 4))
    resumed.fit()
    a, b = _arrays(straight), _arrays(resumed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
    assert [[r[k] for k in keys] for r in straight.history] == [[r[k] for k in keys] for r in resumed.history]
    assert straight.best["epoch"] == resumed.best["epoch"]


def test_resume_accepts_a_checkpoint_with_the_old_array_names(mnist, tmp_path):
    """Checkpoints written before the "layers.<i>.<name>" keys held extra.opt.0.W.m and extra.best.0.W."""
    straight = make_trainer(mnist, str(tmp_path / "a"))
    straight.fit()
    broken = make_trainer(mnist, str(tmp_path / "b"), callbacks=[StopAt(1, 3)])
    with pytest.raises(KeyboardInterrupt):
        broken.fit()
    path = tmp_path / "b" / "checkpoint.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    old = {re.sub(r"^extra\.(opt|best)\.layers\.", r"extra.\1.", k): v for k, v in arrays.items()}
    assert "extra.opt.0.W.m" in old and "extra.best.0.W" in old and "extra.opt.layers.0.W.m" not in old
    np.savez(path, **old)
    resumed = training.Trainer.resume(str(path), *mnist, out_dir=str(tmp_path / "b"), progress=False, log=None)
    assert resumed.best["arrays"].keys() == straight.model.state_dict().keys()
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert straight.best["epoch"] == resumed.best["epoch"]
    resumed.restore_best()
    assert all(np.array_equal(v, straight.best["arrays"][k]) for k, v in resumed.model.state_dict().items())
    assert "extra.opt.layers.0.W.m" in np.load(path).files  # saved again in today's names


def test_fit_trains_in_training_mode_and_returns_in_evaluation_mode(mnist):
    """The Trainer docstring promises train mode during the steps; the steps see model.training True."""
    modes = []

    class Spy:
        def on_step(self, trainer, loss):
            modes.append(trainer.model.training)

        def on_epoch_end(self, trainer, row):
            modes.append(trainer.model.training)

    trainer = make_trainer(mnist, None, callbacks=[Spy()], epochs=1)
    trainer.fit()
    assert modes[:-1] == [True] * trainer.steps_per_epoch and modes[-1] is False  # validated in eval mode
    assert not trainer.model.training
    stopped = make_trainer(mnist, None, callbacks=[StopAt(0, 2)], epochs=1)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit()
    assert not stopped.model.training


def test_ctrl_c_leaves_a_loadable_checkpoint(mnist, tmp_path, capsys):
    trainer = make_trainer(mnist, str(tmp_path), callbacks=[StopAt(1, 3)])
    trainer.resume_hint = "python experiments/train.py --resume"
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    err = capsys.readouterr().err
    assert "checkpoint saved" in err and "--resume" in err
    model, header, extra = nncore.load_model(str(tmp_path / "checkpoint.npz"), return_extra=True)
    ckpt = header["metadata"]["checkpoint"]
    assert (ckpt["epoch"], ckpt["step"]) == (1, 3) and len(ckpt["history"]) == 1
    assert any(k.startswith("opt.") for k in extra) and any(k.startswith("best.") for k in extra)
    assert ckpt["config"]["seed"] == TINY["seed"]
    assert model.predict(mnist[2][:10]).shape == (10,)
    assert json.load(open(tmp_path / "history.json"))[0]["epoch"] == 1


def test_huge_learning_rate_stops_with_training_diverged(mnist, tmp_path):
    trainer = make_trainer(mnist, str(tmp_path), lr=1e8, optimizer="sgd", schedule="constant")
    with pytest.raises(TrainingDivergedError) as err:
        trainer.fit()
    msg = str(err.value)
    assert err.value.exit_code == 6 and "\n" not in msg and "lower learning rate" in msg
    assert "--lr" not in msg and "lr=1e+07" in msg  # a setting; train.py words it as its flag


def test_best_weights_are_restored(mnist, tmp_path):
    trainer = make_trainer(mnist, None, epochs=3)
    trainer.fit()
    best = trainer.best
    assert best["val_acc"] == max(r["val_acc"] for r in trainer.history)
    trainer.restore_best()
    now = trainer.model.state_dict()
    assert all(np.array_equal(now[k], best["arrays"][k]) for k in now)
    assert trainer.best["val_acc"] > 0.3  # chance is 0.1


def test_history_files_and_curves(tmp_path):
    from nncore.plots import plot_history
    hist = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.9, "val_acc": 0.6, "seconds": 1},
            {"epoch": 2, "lr": 0.05, "train_loss": 0.5, "train_acc": 0.8, "val_loss": float("nan"),
             "val_acc": float("nan"), "seconds": 1}]
    training.save_history(hist, str(tmp_path))
    assert json.load(open(tmp_path / "history.json"))[1]["val_acc"] is None
    lines = open(tmp_path / "history.csv").read().splitlines()
    assert lines[0].startswith("epoch,lr,train_loss") and len(lines) == 3
    plot_history(hist, str(tmp_path / "curves.png"))
    assert open(tmp_path / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_deferred_interrupt_defers_the_first_ctrl_c_only():
    import signal
    before = signal.getsignal(signal.SIGINT)
    with training.DeferredInterrupt(note="") as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.requested and not ctrl_c.forced
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert ctrl_c.forced
    assert signal.getsignal(signal.SIGINT) is before


def test_config_saved_before_label_smoothing_existed_keeps_one_hot_targets():
    saved = training.TrainConfig(**TINY).to_dict()
    del saved["label_smoothing"]
    assert training.TrainConfig.from_dict(saved).label_smoothing == 0.0
    assert training.TrainConfig.from_dict({**saved, "label_smoothing": 0.1}).label_smoothing == 0.1
    del saved["thick"]
    assert training.TrainConfig.from_dict(saved).thick == 0.0       # saved before thick existed: none


def test_kernels_compile_on_a_copy_with_a_message_when_slow(mnist, monkeypatch):
    """The compile passes touch neither the weights, the batch-norm statistics nor the optimizer (whose
    step runs on the copy too); a slow one is announced."""
    from nncore.training import kernel_compile
    cfg = training.TrainConfig(**{**TINY, "batchnorm": True, "optimizer": "adam"})
    model = make_model(cfg)
    optimizer = cfg.build_optimizer(model)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    lines = []
    monkeypatch.setattr(kernel_compile, "QUIET_SECONDS", 0.0)
    kernel_compile.compile_kernels(model, mnist[0][:64], mnist[1][:64], lines.append, optimizer)
    assert lines and lines[0].startswith("compiling kernels, once, about") and lines[1].startswith("kernels compiled")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert optimizer.steps == 0 and optimizer.state == {} and optimizer.model is model
    monkeypatch.setattr(kernel_compile, "QUIET_SECONDS", 60.0)
    lines.clear()
    kernel_compile.compile_kernels(model, mnist[0][:64], mnist[1][:64], lines.append)
    assert lines == []  # compiled already: quick and silent


def test_a_failing_compile_pass_raises_in_the_caller(mnist):
    from nncore.training import kernel_compile
    model = make_model(training.TrainConfig(**TINY))
    with pytest.raises(UsageError, match="labels"):
        kernel_compile.compile_kernels(model, mnist[0][:8], mnist[1][:7], lambda line: None)


def test_default_warmup_is_an_eighth_of_the_run_at_most_one_epoch():
    assert training.TrainConfig().validate().warmup == 1.0
    assert training.TrainConfig(epochs=2).validate().warmup == 0.25
    assert training.TrainConfig(epochs=30, warmup=0.0).validate().warmup == 0.0


def test_temperature_calibration_keeps_predictions_and_lowers_validation_nll(mnist):
    """An over-confident model (logits x 3) gets T ~ 3 back; argmax unchanged; NLL never worse."""
    from nncore.training.calibration import calibrate, fit_temperature
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 10))
    labels = np.array([rng.choice(10, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    beta, before, after = fit_temperature(3.0 * logits, labels)
    assert beta == pytest.approx(1 / 3, rel=0.1) and after < before
    trainer = make_trainer(mnist, None, epochs=1)
    trainer.fit()
    model = trainer.restore_best()
    x_val, y_val = mnist[2], mnist[3]
    pred = model.predict(x_val)
    info = calibrate(model, x_val, y_val)
    assert np.array_equal(model.predict(x_val), pred)
    assert info["nll_after"] <= info["nll_before"] + 1e-9 and info["temperature"] > 0
