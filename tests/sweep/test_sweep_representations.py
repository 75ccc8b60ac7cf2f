"""A sweep scores ν and every selector on the raw states and through the final norm (decoders), once for encoders."""

import numpy as np
import pytest
from _sweep_records import write_three_class_csv

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.store.cache import DiskCache
from analysis.sweep.config import SweepConfig
from analysis.sweep.run import run_sweep
from analysis.sweep.selectors import selector_inputs_by_representation
from conftest import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_a_decoder_sweep_records_both_representations_and_an_encoder_one(kind, tmp_path):
    cfg = AnalysisConfig(
        model=str(tiny_model(kind, tmp_path / kind)),
        task=TaskConfig(data=str(write_three_class_csv(tmp_path / "three.csv"))),
        sampling=SampleConfig(n=30),
        max_length=32,
        device="cpu",
        representation="raw",  # the default ("auto") puts final-norm first on a decoder: tested below
    )
    sc = SweepConfig(layers=(2, 4), seeds=(0,), steps=2, batch_size=4, eval_n=12, lr_grid=(1e-3,))
    cache, lines = DiskCache(tmp_path / "c"), []
    table = lambda: selector_inputs_by_representation(cfg, cache)  # noqa: E731
    rec = run_sweep(cfg, sc, cache=cache, say=lines.append, selector_table=table)
    by_rep = rec["selectors_by_representation"]
    assert rec["representation_default"] == "raw" and rec["selectors"] == by_rep["raw"]
    inputs = table()  # from the cache: the scores the record was made of
    if kind == "bert":
        assert list(by_rep) == list(inputs) == ["raw"] and "no final norm" in rec["representation_note"]
        return
    assert list(by_rep) == list(inputs) == ["raw", "final-norm"]
    for rep in by_rep:
        assert set(by_rep[rep]) == set(rec["selectors"])
        assert {"layer", "score", "regret", "spearman"} <= set(by_rep[rep]["nu_argmin"])
    nu_raw, nu_normed = (np.array(inputs[rep][1]) for rep in ("raw", "final-norm"))
    assert nu_raw[-1] == pytest.approx(nu_normed[-1])  # the top layer is already through the final norm
    assert not np.allclose(nu_raw[1:-1], nu_normed[1:-1])  # below it, the two are different states
    assert inputs["raw"][0]["rgn"] == inputs["final-norm"][0]["rgn"]  # one backward pass, shared
    assert any(line.startswith("estimate for the 2 runs to train: about ") for line in lines)
    again: list[str] = []
    run_sweep(cfg, sc, cache=cache, say=again.append, selector_table=table)  # resumed: nothing left to train
    assert "estimate: every run is in the cache" in again


def test_auto_names_what_it_resolved_to_and_shares_the_trained_runs(tmp_path):
    from dataclasses import replace

    from analysis.sweep.run import cached_record, run_config, run_key

    raw = AnalysisConfig(
        model=str(tiny_model("llama", tmp_path / "llama")),
        task=TaskConfig(data=str(write_three_class_csv(tmp_path / "three.csv"))),
        sampling=SampleConfig(n=30),
        max_length=32,
        device="cpu",
    )
    auto = replace(raw, representation="auto")
    sc = SweepConfig(layers=(2, 4), seeds=(0,), steps=2, batch_size=4, eval_n=12, lr_grid=(1e-3,))
    assert run_key(run_config(raw, sc, 2, 0, 1e-3, False)) == run_key(run_config(auto, sc, 2, 0, 1e-3, False))
    cache = DiskCache(tmp_path / "c")
    run_sweep(raw, sc, cache=cache, say=lambda _: None)
    lines: list[str] = []
    table = lambda: selector_inputs_by_representation(auto, cache)  # noqa: E731
    rec = run_sweep(auto, sc, cache=cache, say=lines.append, selector_table=table)
    assert "estimate: every run is in the cache" in lines  # training does not depend on the representation
    assert rec["representation_default"] == "final-norm"
    assert set(rec["selectors_by_representation"]) == {"raw", "final-norm"}
    assert rec["selectors"] == rec["selectors_by_representation"]["final-norm"]
    found = cached_record(auto, sc, cache)  # the page asks with "auto": the record of what it resolves to
    assert found is not None and found == cached_record(replace(raw, representation="final-norm"), sc, cache)
    assert found["representation_default"] == "final-norm" and found["mean"] == rec["mean"]
