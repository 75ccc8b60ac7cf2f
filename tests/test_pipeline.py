"""The analysis config and its derived settings."""

import pytest

from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig


def test_batch_size_default_depends_on_the_device_and_stays_out_of_the_cache_key():
    from analysis.pipeline import BATCH_CPU, BATCH_GPU, batch_for, cache_config, resolve_target

    cfg = AnalysisConfig()
    assert cfg.batch_size is None and (batch_for(cfg, "cpu"), batch_for(cfg, "cuda:0")) == (BATCH_CPU, BATCH_GPU)
    assert BATCH_GPU > BATCH_CPU
    mine = AnalysisConfig(batch_size=8)
    assert batch_for(mine, "cuda") == 8 and batch_for(mine, "cpu") == 8
    t = resolve_target(cfg)
    assert cache_config(cfg, t, "x") == cache_config(mine, t, "x")
    with pytest.raises(VariscopeError, match="batch size must be at least 1"):
        AnalysisConfig(batch_size=0).validate()


def test_train_has_one_training_batch_default_and_leaves_the_forward_batch_to_the_device_as_curve_does():
    import argparse

    from analysis.cli import train as train_cli
    from analysis.cli.common import add_data_args
    from analysis.settings import from_settings, train_settings
    from analysis.training.config import PAGE_TRAIN_DEFAULTS, TRAIN_DEFAULTS, TrainConfig

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    train_cli.register(sub)
    a = p.parse_args(["train"])
    default = TRAIN_DEFAULTS["train_batch"]
    assert default == PAGE_TRAIN_DEFAULTS["train_batch"] == TrainConfig.batch_size == 16
    assert a.batch_size is None and train_settings(vars(a)).train_batch == default
    assert train_settings({"train_batch": None}).train_batch == default  # the Training page's default, not an error
    b = p.parse_args(["train", "--batch-size", "4", "--train-batch", "8"])
    assert from_settings(vars(b)).batch_size == 4 and train_settings(vars(b)).train_batch == 8
    c = argparse.ArgumentParser()
    add_data_args(c)
    assert c.parse_args([]).batch_size is None
