import json

import pytest

from analysis.cache import DiskCache
from analysis.reproduce import ReproConfig, run
from analysis.reproduce_report import write_doc
from analysis.reproduce_verdicts import summarize

pytestmark = pytest.mark.slow


def test_tiny_reproduction_has_every_strategy_and_the_doc_shows_the_json_numbers(tmp_path):
    rc = ReproConfig(
        tasks=("bbc_news",),
        ks=(1,),
        seeds=(0, 1),
        steps=2,
        n_train=50,
        eval_n=30,
        max_length=24,
        analysis_n=60,
        bootstrap=3,
        fractions=(1.0, 0.5),
        device="cpu",
    )
    res = run(rc, cache=DiskCache(tmp_path / "c"), log=lambda s: None)
    strategies = {r["strategy"] for r in res["runs"]}
    assert strategies == {"variability", "top", "full"}
    for r in res["runs"]:
        for k in (
            "task",
            "model",
            "strategy",
            "k",
            "seed",
            "metric_value",
            "trainable_params",
            "flops_vs_full",
            "seconds",
        ):
            assert k in r
    assert {r["seed"] for r in res["runs"]} == {0, 1}
    assert all("spearman" in x and "best_layer" in x for x in res["robustness"])
    assert set(res["verdicts"]) >= {"claim1", "claim2", "claim3", "claim4"}
    json.dumps(res)  # serialisable
    doc = tmp_path / "docs" / "reproduction.md"
    write_doc(res, str(doc), str(tmp_path / "docs" / "img"), "python -m analysis reproduce --tiny")
    text = doc.read_text()
    for row in summarize(res):
        assert f"{row['mean']:.4f} ± {row['sd']:.4f}" in text
    for x in res["robustness"]:
        assert f"{x['spearman']:.3f}" in text
    for c in ("claim1", "claim2", "claim3", "claim4"):
        assert res["verdicts"][c] in text
    for png in ("repro_curves.png", "repro_metric_vs_params.png", "repro_robustness.png"):
        assert (tmp_path / "docs" / "img" / png).stat().st_size > 1000
    # resuming: a second run trains nothing and gives the same records
    again = run(rc, cache=DiskCache(tmp_path / "c"), log=lambda s: None)
    assert [r["metric_value"] for r in again["runs"]] == [r["metric_value"] for r in res["runs"]]
