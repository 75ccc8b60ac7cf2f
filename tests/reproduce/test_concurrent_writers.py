"""Reproduce runs writing one --json at once keep each other's records (lock, then re-read and merge): two grids,
and a grid beside --robustness-only or --cards-only."""

import json
import threading

import pytest
from test_reproduce_stats import _gemma_like, _run

from analysis.cli import main
from analysis.reproduce.run import RESULTS_VERSION, finish, with_records_of


def _part(model):
    return {
        "version": RESULTS_VERSION,
        "parts": [{"models": [model], "settings": {"lr": 1e-4}}],
        "curves": [{"model": model, "task": "t", "layers": [0, 1, 2]}],
        "cards": [],
        "runs": [],
        "robustness": [],
        "lr_search": [],
    }


def test_two_reproduce_runs_on_one_json_keep_both_records(tmp_path, monkeypatch):
    from analysis.cli import reproduce as cli

    both_started = threading.Barrier(2)  # both runs have started (and read --json) before either saves

    def fake_run(rc, *, cache, log, save, cached_only):
        both_started.wait(timeout=60)
        return _part(rc.models[0])

    monkeypatch.setattr(cli, "run", fake_run)
    # the estimate loads each model to time it; this test is about the writers, not the models installed here
    monkeypatch.setattr(cli, "plan_estimate", lambda rc, root=None: type("E", (), {"text": lambda self: "about 1 s"})())
    monkeypatch.setattr(cli, "write_doc", lambda *a, **k: None)
    monkeypatch.setattr(cli, "registry_status", list, raising=False)
    out = tmp_path / "r.json"
    codes = {}

    def go(model):
        argv = ["reproduce", "--models", model, "--json", str(out), "--doc", str(tmp_path / "r.md")]
        try:
            codes[model] = main([*argv, "--cache-dir", str(tmp_path / "c")])
        except SystemExit as e:  # pragma: no cover - argparse
            codes[model] = e.code

    threads = [threading.Thread(target=go, args=(m,)) for m in ("minilm", "mpnet")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert codes == {"minilm": 0, "mpnet": 0}
    res = json.loads(out.read_text())
    assert sorted(c["model"] for c in res["curves"]) == ["minilm", "mpnet"]
    assert sorted(m for p in res["parts"] for m in p["models"]) == ["minilm", "mpnet"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"curves": [], "verdicts": {}, "parts": "x"}', "wrong shape"), ('{"curves": [', "--fresh")],
)
def test_a_reproduce_json_that_cannot_be_merged_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, content, needle
):
    from analysis.cli import reproduce as cli

    def boom(*a, **k):
        raise AssertionError("trained before checking --json")

    monkeypatch.setattr(cli, "run", boom)
    out = tmp_path / "r.json"
    out.write_text(content)
    code = main(["reproduce", "--models", "minilm", "--json", str(out), "--doc", str(tmp_path / "r.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and "--fresh" in err[0]
    assert out.read_text() == content


def _file(tmp_path) -> tuple:
    js, doc, img = tmp_path / "r.json", tmp_path / "d" / "r.md", tmp_path / "d" / "img"
    js.write_text(json.dumps(_gemma_like(("rotten_tomatoes", "bbc_news"))))
    return js, doc, img


def _meanwhile(js) -> dict:
    """Another process adds a run to the file (as a grid's save would)."""
    other = json.loads(js.read_text())
    other["runs"].append(_run("g", "bbc_news", "top", 2, 0, 0.66, layer=18, n_layers=18))
    js.write_text(json.dumps(finish(other)))
    return other


def test_with_records_of_takes_only_the_named_pairs_records():
    now, res = _gemma_like(), _gemma_like()
    now["runs"] = now["runs"][:-1]  # the file changed since res was read
    res["robustness"] = [{**x, "spearman_mean": 0.1} for x in res["robustness"]]
    out, stale = with_records_of(now, res, "robustness", [("g", "bbc_news")])
    assert out["runs"] == now["runs"] and stale == []
    got = {x["task"]: x["spearman_mean"] for x in out["robustness"]}
    assert got["bbc_news"] == 0.1 and got["rotten_tomatoes"] != 0.1 and got["reuters_r8"] != 0.1
    # a grid re-ran bbc_news meanwhile (a new ν curve): its own claim-3 records stay, not those of the older curve
    now["curves"] = [{**c, "variability": [2.0] * 19} if c["task"] == "bbc_news" else c for c in now["curves"]]
    out, stale = with_records_of(now, res, "robustness", [("g", "bbc_news"), ("g", "reuters_r8")])
    assert stale == [("g", "bbc_news")]
    got = {x["task"]: x["spearman_mean"] for x in out["robustness"]}
    assert got["bbc_news"] != 0.1 and got["reuters_r8"] == 0.1


def test_robustness_only_keeps_a_run_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    from analysis.cli import reproduce as cli

    js, doc, img = _file(tmp_path)

    def fake_add_robustness(res, *, cache, log, save, models):
        _meanwhile(js)
        new = [{**x, "spearman_mean": 0.25} for x in res["robustness"] if x["task"] == "bbc_news"]
        res = finish({**res, "robustness": [x for x in res["robustness"] if x["task"] != "bbc_news"] + new})
        save(res, [("g", "bbc_news")])
        return res

    monkeypatch.setattr(cli, "add_robustness", fake_add_robustness)
    args = ["reproduce", "--robustness-only", "--json", str(js), "--doc", str(doc), "--img", str(img)]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0
    out = json.loads(js.read_text())
    assert any(r["k"] == 2 and r["metric_value"] == 0.66 for r in out["runs"])  # the other process's run
    got = {x["task"]: x["spearman_mean"] for x in out["robustness"]}
    assert got["bbc_news"] == 0.25 and got["rotten_tomatoes"] != 0.25
    assert out["verdicts"]["claim3"] in doc.read_text()


def test_cards_only_keeps_a_run_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    from analysis.cli import reproduce as cli

    js, doc, img = _file(tmp_path)
    card = {"model": "g", "task": "bbc_news", "not_computed": "a test"}
    other_card = {"model": "g", "task": "rotten_tomatoes", "not_computed": "the grid's"}
    first = json.loads(js.read_text())  # the card of rotten_tomatoes when --cards-only reads the file
    js.write_text(json.dumps(finish({**first, "cards": [{**other_card, "not_computed": "older"}]})))

    def fake_add_cards(res, *, cache, log, save, device):
        other = _meanwhile(js)  # and the grid replaces rotten_tomatoes' card after this process read the file
        other["cards"] = [other_card]
        js.write_text(json.dumps(finish(other)))
        assert res["cards"][0]["not_computed"] == "older"
        res["cards"] = [*res["cards"], card]
        save(res)
        return res

    monkeypatch.setattr(cli, "add_cards", fake_add_cards)
    args = ["reproduce", "--cards-only", "--json", str(js), "--doc", str(doc), "--img", str(img)]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0
    out = json.loads(js.read_text())
    assert any(r["k"] == 2 and r["metric_value"] == 0.66 for r in out["runs"])
    assert sorted(out["cards"], key=lambda c: c["task"]) == [card, other_card]  # ours, and the grid's kept
    assert out["verdicts"]["cards"] in doc.read_text()
