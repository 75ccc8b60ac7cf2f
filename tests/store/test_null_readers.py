"""Every reader of a result JSON takes ``null`` where a number was not finite (strict JSON writes null for NaN/inf)."""

import json
import math
import shutil
from pathlib import Path

from analysis.store.jsonio import dumps, numbers_back
from conftest import ROOT

DOCS = ROOT / "docs"


def test_numbers_back_turns_number_nulls_into_nan_and_leaves_other_nulls():
    got = numbers_back(
        {"nu": [0.5, None], "eval": {"accuracy": None, "loss": 0.3}, "commit": None, "metric_value": None},
        frozenset({"metric_value"}),
    )
    assert math.isnan(got["nu"][1]) and math.isnan(got["eval"]["accuracy"]) and math.isnan(got["metric_value"])
    assert got["commit"] is None and got["nu"][0] == 0.5
    assert math.isnan(numbers_back({"a": {"b": None}}, every=True)["a"]["b"])


def _with_nulls(tmp_path) -> Path:
    res = json.loads((DOCS / "reproduction.json").read_text())
    res["runs"][0]["metric_value"] = None  # a diverged run
    res["runs"][0]["eval"] = dict.fromkeys(res["runs"][0]["eval"])
    res["cards"][0]["probe_accuracy"][1] = None
    res["curves"][0]["variability"][2] = None
    res["robustness"][0]["spearman"] = None
    res["lr_search"][0]["val_metric"] = None
    p = tmp_path / "r.json"
    p.write_text(dumps(res))
    return p


def test_reproduce_resume_and_report_read_nulls(tmp_path):
    from analysis.cli.reproduce import _read
    from analysis.reproduce.report import report_markdown, verdicts_markdown
    from analysis.reproduce.run import finish, merge, migrate

    res = _read(str(_with_nulls(tmp_path)))
    assert math.isnan(res["runs"][0]["metric_value"]) and math.isnan(res["curves"][0]["variability"][2])
    done = finish(migrate(res))
    assert "claim1" in done["verdicts"]
    assert "### " in report_markdown(done, "cmd") and verdicts_markdown(done)
    json.loads(dumps(merge(done, json.loads((DOCS / "reproduction.json").read_text()))))


def test_the_learn_page_reads_a_reproduction_json_with_nulls(tmp_path, monkeypatch):
    """pages/learn.py reads docs/reproduction.json through ``revive``: a copy of the project with nulls in it."""
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "proj"
    shutil.copytree(DOCS.parent / "pages", root / "pages")
    (root / "docs").mkdir()
    shutil.copytree(DOCS / "curves", root / "docs" / "curves")
    shutil.copy(_with_nulls(tmp_path), root / "docs" / "reproduction.json")
    monkeypatch.syspath_prepend(str(root))
    at = AppTest.from_file(str(root / "pages" / "learn.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("claim" in m.value.lower() for m in at.markdown)


def test_teaching_curves_read_a_null_in_nu(tmp_path):
    from analysis.records import teaching_curves

    for f in (DOCS / "curves").glob("*.json"):
        rec = json.loads(f.read_text())
        rec["variability"][1] = None
        (tmp_path / f.name).write_text(dumps(rec))
    curves = teaching_curves(tmp_path)
    assert len(curves) == 2 and all(math.isnan(c["variability"][1]) for c in curves)


def test_the_bench_report_reads_a_null_ratio(tmp_path):
    from analysis.bench.merge import read_results
    from analysis.bench.report import report_markdown

    res = json.loads((DOCS / "benchmarks.json").read_text())
    keys = [k for k, v in res.items() if isinstance(v, float)]
    assert keys
    for k in keys:
        res[k] = None
    p = tmp_path / "b.json"
    p.write_text(dumps(res))
    text = report_markdown(read_results(str(p)), "img", "cmd")
    assert "| nan |" in text
