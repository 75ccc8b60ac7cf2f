"""bfloat16 autocast on the CPU: opt-in where torch reports native support, refused with one line elsewhere."""

import json
from dataclasses import replace

import numpy as np
import pytest

import analysis.models.load as load
from analysis.errors import VariscopeError


def test_autocast_bfloat16_is_refused_with_one_line_where_the_cpu_lacks_it(monkeypatch, tmp_path, capsys):
    from analysis.cli.main import main

    monkeypatch.setattr(load, "cpu_bf16_supported", lambda: False)
    with pytest.raises(VariscopeError, match="native bfloat16") as e:
        load.resolve_dtype("autocast-bfloat16", "cpu")
    assert "\n" not in str(e.value)
    out = tmp_path / "run.json"
    argv = ["train", "--model", "minilm", "--n", "16", "--classifier-layer", "2", "--steps", "1"]
    assert main([*argv, "--dtype", "autocast-bfloat16", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bfloat16 autocast needs native bfloat16") and "\n" not in err
    assert not out.exists()


def test_autocast_bfloat16_keeps_float32_weights_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(load, "cpu_bf16_supported", lambda: True)
    assert load.resolve_dtype("autocast-bfloat16", "cpu") == "autocast-bfloat16"
    assert load.split_dtype("autocast-bfloat16") == ("float32", "bfloat16")
    assert load.resolve_dtype("auto", "cpu") == "float32"  # never the default: results would depend on the machine


def test_the_capability_query_answers_a_bool():
    assert isinstance(load.cpu_bf16_supported(), bool)


@pytest.mark.slow
def test_a_run_under_cpu_bf16_autocast_trains_near_float32_and_records_its_dtype(monkeypatch, tmp_path):
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig
    from analysis.training import Selection, TrainConfig, save_run, train
    from conftest import tiny_model

    monkeypatch.setattr(load, "cpu_bf16_supported", lambda: True)  # emulated where not native: slower, same numbers
    a = AnalysisConfig(
        model=str(tiny_model("bert", tmp_path / "bert")),
        task=TaskConfig("rotten_tomatoes"),
        sampling=SampleConfig(n=48, seed=0),
        max_length=48,
        device="cpu",
    )
    cfg = TrainConfig(a, Selection(4, (3, 4)), steps=4, lr=1e-3, batch_size=8, eval_n=16, seed=0)
    f32 = train(cfg).result
    bf = train(replace(cfg, analysis=replace(a, dtype="autocast-bfloat16"))).result
    assert f32.dtype == "float32" and bf.dtype == "autocast-bfloat16"
    lf, lb = np.array([h["loss"] for h in f32.history]), np.array([h["loss"] for h in bf.history])
    assert not np.array_equal(lf, lb)  # the forward pass did run in bfloat16
    np.testing.assert_allclose(lb, lf, rtol=0.05)
    save_run(bf, str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "result.json").read_text())["dtype"] == "autocast-bfloat16"
