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


def test_settings_refuse_out_of_range_values_with_one_line_instead_of_clipping_them():
    from analysis.settings import (
        DEFAULT_BOOTSTRAP,
        DEFAULT_KEEP,
        MAX_BOOTSTRAP,
        MAX_KEEP,
        STREAM_ABOVE,
        check_bootstrap,
        check_upload,
        curve_settings,
        stream_settings,
    )

    assert stream_settings(None, "") == (STREAM_ABOVE, DEFAULT_KEEP) and stream_settings("50", 40) == (50, 40)
    with pytest.raises(VariscopeError, match=f"states kept must be at most {MAX_KEEP}"):
        stream_settings(100, MAX_KEEP + 1)
    with pytest.raises(VariscopeError, match="stream above .* at least 1"):
        stream_settings(0, 100)
    assert check_bootstrap(MAX_BOOTSTRAP) == MAX_BOOTSTRAP and check_bootstrap(None) == DEFAULT_BOOTSTRAP
    with pytest.raises(VariscopeError, match=f"between 0 and {MAX_BOOTSTRAP}"):
        check_bootstrap(MAX_BOOTSTRAP + 1)
    for bad, words in [
        ({"tolerance": -1}, "tolerance"),
        ({"tolerance": "nan"}, "finite"),
        ({"keep": 10}, "go with --stream"),
        ({"stream": True, "keep": -1}, "--keep must be a number of states ≥ 0, got -1"),
        ({"stream": True, "bootstrap": 5, "keep": 0}, "--keep must be above 0"),
        ({"bootstrap": MAX_BOOTSTRAP + 1}, "between 0"),
        ({"stream": True, "memory_budget": 0}, "positive number of MB"),
        ({"rule": "median"}, "rule must be one of argmin, plateau"),
    ]:
        with pytest.raises(VariscopeError, match=words):
            curve_settings(bad)
    assert curve_settings({}).bootstrap == DEFAULT_BOOTSTRAP
    assert curve_settings({"stream": True, "keep": 0}).bootstrap == 0  # no kept states: no band by default
    check_upload("small.csv", 10)
    with pytest.raises(VariscopeError, match="the limit is"):
        check_upload("big.csv", 2**40)


def test_the_app_names_a_local_path_by_the_model_resolvers_rule(tmp_path):
    from analysis.models.load import is_local_path

    for spec in ("./m", "/abs", "~/m", "\\\\server\\m", str(tmp_path)):
        assert is_local_path(spec), spec
    for spec in ("minilm-not-here", "sentence-transformers/all-MiniLM-L6-v2"):
        assert not is_local_path(spec), spec
