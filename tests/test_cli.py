"""nncore.cli helpers the scripts share: flag wording of library errors; nncore.json_values."""

import math

import numpy as np
import pytest

from nncore.cli import ArgumentParser
from nncore.errors import MissingInputError, SettingError, TrainingDivergedError, UsageError
from nncore.json_values import finite_or_none


def parser():
    p = ArgumentParser()
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--no-batchnorm", dest="batchnorm", action="store_false")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("mnist").add_argument("--val-size", type=int)
    return p


def reworded(exc):
    with pytest.raises(Exception) as err:
        with parser().flag_errors():
            raise exc
    return err.value


def test_setting_errors_become_flag_errors():
    err = reworded(SettingError("batch_size",
                                "must be >= 2 with BatchNorm, got 1; use a larger batch or batchnorm=False"))
    assert type(err) is UsageError and err.exit_code == 2
    assert str(err) == "--batch-size must be >= 2 with BatchNorm, got 1; use a larger batch or --no-batchnorm"
    assert str(reworded(SettingError("val_size", "must be in [0, 60000), got 7"))).startswith("--val-size must")


def test_hints_in_other_errors_become_flags_and_keep_their_class():
    err = reworded(TrainingDivergedError("training diverged: ...; use a lower learning rate, e.g. lr=0.001"))
    assert type(err) is TrainingDivergedError and str(err).endswith("e.g. --lr 0.001")


def test_settings_without_a_flag_stay_as_they_are():
    original = SettingError("momentum", "must be in [0, 1), got 1.5; or set dropout=0.5")
    assert reworded(original) is original
    missing = MissingInputError("nothing to reword here")
    assert reworded(missing) is missing


def test_finite_or_none():
    assert [finite_or_none(v) for v in (math.nan, math.inf, -math.inf, None)] == [None] * 4
    assert finite_or_none(np.float32(0.25)) == 0.25 and type(finite_or_none(np.float64(1))) is float
    assert finite_or_none(0.1234567891, digits=6) == 0.123457 and finite_or_none(np.float64(np.nan), 6) is None
    assert finite_or_none(3) == 3 and finite_or_none("x") == "x"
