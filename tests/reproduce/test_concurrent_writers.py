"""--robustness-only and --cards-only share --json with a grid that may be writing it: neither drops its records."""

import json

from test_reproduce_stats import _gemma_like, _run

from analysis.reproduce.run import finish, with_records_of


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
    out = with_records_of(now, res, "robustness", [("g", "bbc_news")])
    assert out["runs"] == now["runs"]
    got = {x["task"]: x["spearman_mean"] for x in out["robustness"]}
    assert got["bbc_news"] == 0.1 and got["rotten_tomatoes"] != 0.1 and got["reuters_r8"] != 0.1


def test_robustness_only_keeps_a_run_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    from analysis.cli import reproduce as cli
    from analysis.cli.main import main

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
    from analysis.cli.main import main

    js, doc, img = _file(tmp_path)
    card = {"model": "g", "task": "bbc_news", "not_computed": "a test"}

    def fake_add_cards(res, *, cache, log, save, device):
        _meanwhile(js)
        res["cards"] = [card]
        save(res)
        return res

    monkeypatch.setattr(cli, "add_cards", fake_add_cards)
    args = ["reproduce", "--cards-only", "--json", str(js), "--doc", str(doc), "--img", str(img)]
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0
    out = json.loads(js.read_text())
    assert any(r["k"] == 2 and r["metric_value"] == 0.66 for r in out["runs"])
    assert out["cards"] == [card]
