"""The ``estimate`` bench section: the estimate before a run against the run, its keys on a tiny random model."""

import math

import pytest

from analysis.bench.estimate_accuracy import KEYS, _worst
from conftest import tiny_model


def test_the_worst_ratio_is_the_farthest_from_one_either_way():
    assert _worst([1.1, 0.5]) == 0.5 and _worst([2.5, 0.5]) == 2.5 and _worst([1.0]) == 1.0


def test_the_section_times_each_run_against_its_estimate_and_reports_them(tmp_path):
    from analysis.bench.estimate_accuracy import estimate_accuracy
    from analysis.bench.report import headline_lines, section_lines

    lines: list[str] = []
    res = estimate_accuracy(
        model=str(tiny_model("gemma3", tmp_path / "g")),
        device="cpu",
        n_train=24,
        n_eval=8,
        steps=3,
        warmup=False,
        progress=lines.append,
    )
    e = res["estimate"]
    assert lines and set(e["runs"]) >= {"float32"}
    for dtype, r in e["runs"].items():
        assert r["estimate_loop_s"] > 0 and r["loop_s"] > 0 and r["wall_s"] >= r["loop_s"]
        assert e["train_ratio"][dtype] == pytest.approx(r["estimate_loop_s"] / r["loop_s"])
        assert "cost model at" in r["how"]
    for k, ratios in (("estimate_train_ratio", e["train_ratio"]), ("estimate_total_ratio", e["total_ratio"])):
        assert res[k] in ratios.values() and abs(math.log(res[k])) == max(abs(math.log(v)) for v in ratios.values())
    assert set(KEYS) <= set(res)
    text = "\n".join(section_lines(res, "."))
    assert "## Time estimates against the runs" in text and f"{e['train_ratio']['float32']:.2f}" in text
    assert any("`estimate_train_ratio`" in line for line in headline_lines(res))
