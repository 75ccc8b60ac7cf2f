"""The reproduction's plots, from a results dict alone (no training)."""

from test_reproduce_stats import _gemma_like

from analysis.reproduce.plots import claim_rows, write_plots
from analysis.reproduce.report import report_markdown
from analysis.reproduce.run import finish


def test_the_claims_plot_draws_the_counted_settings_only(tmp_path):
    res = _gemma_like(ks=(1, 2))
    # a task where ℓ* is the top layer: variability is top-k, void for claim 1
    top = _gemma_like(("bbc_news",), ks=(1,), layer=18)
    res = finish({**res, "runs": [r for r in res["runs"] if r["task"] != "bbc_news"] + top["runs"],
                  "curves": [c for c in res["curves"] if c["task"] != "bbc_news"] + top["curves"]})  # fmt: skip
    rows = claim_rows(res, "claim1")
    assert {(x["task"], x["k"]) for x in rows} == {(t, k) for t in ("rotten_tomatoes", "reuters_r8") for k in (1, 2)}
    assert all(x["low"] <= x["mean"] <= x["high"] for x in rows)
    assert {x["task"] for x in claim_rows(res, "claim2")} == {"rotten_tomatoes", "reuters_r8"}  # bbc: void for ν
    write_plots(res, tmp_path)
    assert (tmp_path / "repro_claims.png").stat().st_size > 1000
    text = report_markdown(res, "c", "img")
    assert "![claims 1 and 2: each counted setting's paired difference](img/repro_claims.png)" in text
    assert "repro_claims.png" not in report_markdown(res, "c")  # no images without a folder


def test_every_counted_outcome_of_claims_1_and_2_has_its_colour():
    from analysis.reproduce.plots import OUTCOME_COLOURS
    from analysis.reproduce.verdicts import COUNTED

    want = {"better": "tab:green", "match": "tab:green", "worse": "tab:red", "worse beyond the margin": "tab:red",
            "tie": "tab:gray", "undecided": "tab:gray"}  # fmt: skip
    assert set(COUNTED) | {"match", "undecided", "worse beyond the margin"} == set(want)
    assert {w: OUTCOME_COLOURS.get(w, "tab:gray") for w in want} == want
    assert claim_rows({}, "claim1") == [] and claim_rows({"verdicts": {}}, "claim2") == []
