import json
from dataclasses import asdict, replace

import pytest

from analysis.reproduce.report import report_markdown, write_doc
from analysis.reproduce.run import ReproConfig, _curve, config_from_settings, finish, run
from analysis.reproduce.verdicts import summarize
from analysis.store.cache import DiskCache

SECTION = "## Does ν pick the layer a probe would pick?"


@pytest.mark.slow
def test_tiny_reproduction_has_every_strategy_and_the_doc_shows_the_json_numbers(tmp_path, model_roots):
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
    saved = []
    res = run(rc, cache=DiskCache(tmp_path / "c"), log=lambda s: None, save=saved.append)
    assert len(saved) == 2 and saved[0]["parts"][0]["complete"] is False and res["parts"][0]["complete"]
    assert saved[0]["runs"] == res["runs"] and not saved[0]["robustness"]
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
            "lr",
            "final_loss",
            "inference_flops_per_example",
        ):
            assert k in r
        assert r["lr"] == rc.lr and r["final_loss"] > 0
    assert {r["seed"] for r in res["runs"]} == {0, 1}
    assert all(len(x["draws"]) == rc.draws and "spearman_mean" in x for x in res["robustness"])
    assert {x["source"] for x in res["robustness"]} == {"disjoint"}  # bbc_news has texts outside 60
    assert all(d["shared_with_reference"] == 0 for x in res["robustness"] for d in x["draws"])
    (cards,) = res["cards"]
    assert cards["n"] == res["curves"][0]["n"] and cards["variability"] == res["curves"][0]["variability"]
    assert cards["same_layer"] == (cards["recommended_layer"] == cards["probe_best_layer"])
    assert set(res["verdicts"]) >= {"claim1", "claim2", "claim3", "claim4"}
    json.dumps(res)  # serialisable
    doc = tmp_path / "docs" / "reproduction.md"
    write_doc(res, str(doc), str(tmp_path / "docs" / "img"), "python -m analysis reproduce --tiny")
    text = doc.read_text()
    assert res["summary"] == summarize(res)
    for row in summarize(res):
        assert f"{row['mean']:.4f} ± {row['sd']:.4f}" in text
    for x in res["robustness"]:
        assert f"{x['spearman_mean']:.3f} ± {x['spearman_sd']:.3f}" in text
    for c in ("claim1", "claim2", "claim3", "claim4", "cards"):
        assert res["verdicts"][c] in text
    assert SECTION in text
    for png in ("repro_claims.png", "repro_curves.png", "repro_metric_vs_params.png", "repro_robustness.png"):
        assert (tmp_path / "docs" / "img" / png).stat().st_size > 1000
    # resuming: a second run trains nothing and gives the same records
    again = run(rc, cache=DiskCache(tmp_path / "c"), log=lambda s: None)
    assert [r["metric_value"] for r in again["runs"]] == [r["metric_value"] for r in res["runs"]]
    assert set(model_roots) == {str(tmp_path / "c")} and not (tmp_path / "elsewhere").exists()  # only its own cache


@pytest.mark.slow
def test_the_learning_rate_is_chosen_on_a_validation_split_of_the_training_texts(tmp_path):
    from analysis.data.tasks import TaskConfig, load_task
    from analysis.reproduce.runs import validation_folder

    rc = ReproConfig(
        tasks=("rotten_tomatoes",),
        ks=(1,),
        seeds=(0, 1),
        steps=2,
        n_train=40,
        eval_n=20,
        max_length=16,
        analysis_n=40,
        bootstrap=0,
        fractions=(1.0,),
        imbalances=(),
        device="cpu",
        skip_full=("minilm",),
        lr_grid=(1e-4, 1e-3),
        lr_steps=2,
    )
    from analysis.reproduce.remaining import remaining
    from analysis.reproduce.runs import run_keys

    cache = DiskCache(tmp_path / "c")
    said: list[str] = []
    res = run(rc, cache=cache, log=said.append)
    search = res["lr_search"]
    # what is left to train, once ℓ* is known: before the grid, every run of it but the extensions not known yet
    nu = res["curves"][0]["variability"]
    empty = DiskCache(tmp_path / "empty")
    before = remaining(rc, "minilm", "rotten_tomatoes", 6, nu, empty)
    trials = {r["run_key"] for r in search if not r["extended"]}
    assert {run_keys(c, empty)[0] for c in before.configs if c.eval_n == 8} == trials  # the validation runs
    assert len(before.configs) == len(trials) + len({r["run_key"] for r in res["runs"]}) and before.cached == 0
    assert before.open_searches == 2 and [x for x in said if "runs left (0 found in the cache)" in x]
    after = remaining(rc, "minilm", "rotten_tomatoes", 6, nu, cache)
    assert after.configs == () and after.open_searches == 0 and after.cached == len(search) + len(res["runs"])
    # every trained run is said when it starts, and again with its result when it ends
    starts = [i for i, x in enumerate(said) if ": training 2 steps, started " in x]
    assert len(starts) == len({r["run_key"] for r in search + res["runs"]})  # a run shared by two strategies: once
    assert all(said[i + 1].startswith(said[i].split(": training")[0] + ": accuracy ") for i in starts)
    assert search[0]["strategy"] == "variability" and {x["strategy"] for x in search} == {"variability", "top"}
    for strategy in ("variability", "top"):
        tried = [x for x in search if x["strategy"] == strategy]
        assert [x["lr"] for x in tried[:2]] == list(rc.lr_grid) and not any(x["extended"] for x in tried[:2])
        assert all(x["extended"] for x in tried[2:]) and len(tried) <= 2 + rc.lr_extend  # past the edge it chose
        (chosen,) = [x for x in tried if x["chosen"]]
        assert chosen["val_metric"] == max(x["val_metric"] for x in tried)
        assert {r["lr"] for r in res["runs"] if r["strategy"] == strategy} == {chosen["lr"]}
        assert (chosen["n_fit"], chosen["n_val"]) == (32, 8)
    # the validation texts are training texts, never test texts
    folder, n_fit, n_val = validation_folder(rc, "minilm", "rotten_tomatoes", cache)
    val = load_task(TaskConfig(str(folder), split="test")).texts
    fit = load_task(TaskConfig(str(folder), split="train")).texts
    train = set(load_task(TaskConfig("rotten_tomatoes")).texts)
    assert (len(fit), len(val)) == (n_fit, n_val) and not set(val) & set(fit) and set(val) <= train
    assert "Learning-rate search" in report_markdown(res, "c")
    # --cached-only: nothing is trained; the runs not in the cache are left out and the part says so
    part = run(replace(rc, seeds=(0, 1, 2)), cache=cache, log=lambda s: None, cached_only=True)
    assert part["runs"] == res["runs"] and part["lr_search"] == search
    assert part["parts"][0]["complete"] is False and part["robustness"] == []
    # every run cached, but claim 3's curves not computed: still incomplete, since the part replaces its pair's
    whole = run(rc, cache=cache, log=lambda s: None, cached_only=True)
    assert whole["runs"] == res["runs"] and whole["parts"][0]["complete"] is False and not whole["robustness"]
    # the results alone resume the grid: a cache that never saw it gets every run back from its run_key
    from analysis.reproduce.restore import restore_runs

    fresh = DiskCache(tmp_path / "fresh")
    keys = {r["run_key"] for r in res["runs"] + search}
    assert restore_runs(res, fresh) == len(keys) and restore_runs(res, fresh) == 0
    back = run(rc, cache=fresh, log=lambda s: None, cached_only=True)
    assert back["runs"] == res["runs"] and back["lr_search"] == search
    # a final run gone from the cache is the one run left
    gone = res["runs"][-1]
    cache.delete("runs", gone["run_key"])
    (left,) = remaining(rc, "minilm", "rotten_tomatoes", 6, nu, cache).configs
    assert run_keys(left, cache)[0] == gone["run_key"]
    # a search whose last rate past the grid's edge is gone: open again, that rate and its final runs left
    assert any(r["extended"] for r in search)  # two rates: the best is always on an edge
    ext = [r for r in search if r["extended"] and r["strategy"] == "top"][-1]
    cache.delete("runs", ext["run_key"])
    rem = remaining(rc, "minilm", "rotten_tomatoes", 6, nu, cache)
    (trial,) = [c for c in rem.configs if c.eval_n == ext["n_val"]]
    assert run_keys(trial, cache)[0] == ext["run_key"] and trial.lr == ext["lr"]
    assert rem.open_searches == len({r["strategy"] for r in search if r["run_key"] == ext["run_key"]})
    assert len(rem.configs) == 1 + len(rc.seeds)  # the variability and top runs are one model here (ℓ* = L)


def _results(cards: list[dict] | None) -> dict:
    """A small synthetic results dict: two curves, no runs (with ``cards`` when given)."""
    rc = ReproConfig(tasks=("rotten_tomatoes", "bbc_news"))
    curve = {"layers": [0, 1, 2, 3], "variability": [2.0, 1.0, 0.5, 0.7], "band": None, "best_layer": 2, "n": 40}
    res: dict = {
        "parts": [
            {
                "models": ["minilm"],
                "settings": {**asdict(rc), "models": ["minilm"], "tasks": list(rc.tasks)},
                "seconds": 60.0,
                "complete": True,
            }
        ],  # fmt: skip
        "curves": [{"model": "minilm", "task": t, **curve, "counts": [20, 20]} for t in rc.tasks],
        "runs": [],
        "robustness": [],
    }
    if cards is not None:
        res["cards"] = cards
    return finish(res)


def test_the_cards_section_renders_from_the_results_dict_alone():
    rec = {
        "model": "minilm",
        "task": "rotten_tomatoes",
        "n": 40,
        "layers": [0, 1, 2, 3],
        "variability": [2.0, 1.0, 0.5, 0.7],
        "probe_accuracy": [0.6, 0.7, 0.8125, 0.79],
        "knn_accuracy": [0.55, 0.6, 0.75, 0.7],
        "rank_agreement": 1.0,
        "recommended_layer": 2,
        "probe_best_layer": 2,
        "same_layer": True,
        "probe": {"folds": 5, "k": 10, "seed": 0, "max_iter": 200, "C": 1.0},
    }
    other = {"model": "mpnet", "task": "bbc_news", "not_computed": "model not installed"}
    res = _results([rec, other])
    text = report_markdown(res, "python -m analysis reproduce --x")
    assert SECTION in text
    assert res["verdicts"]["cards"] in text
    assert res["verdicts"]["cards"].startswith("ν and the probe agree on the best layer in 1 of 1 settings")
    row = "| minilm | rotten_tomatoes | 40 | 2 | 2 | 0.812 | 0.812 | 1.00 | 0.000 | yes: ℓ* is the probe's best layer"
    assert row + "; rankings agree (p = 0.000) |" in text
    assert "not computed (model not installed)" in text
    # a different layer: the verdict says how much the probe gains there
    res = _results([{**rec, "probe_best_layer": 3, "same_layer": False, "probe_accuracy": [0.6, 0.7, 0.8, 0.85]}])
    assert "no: the probe gains 0.050 at layer 3" in report_markdown(res, "c")
    assert "agree on the best layer in 0 of 1 settings" in res["verdicts"]["cards"]
    # an old results dict without cards: no section, no summary line
    old = _results(None)
    assert "cards" not in old["verdicts"]
    text = report_markdown(old, "c")
    assert SECTION not in text and "Layer cards" not in text


def test_settings_round_trip_to_the_config():
    rc = ReproConfig(
        plan=(("minilm", ("rotten_tomatoes",), (1, 2)), ("mpnet", ("bbc_news",), None)), skip_full=("mpnet",)
    )
    s = json.loads(json.dumps({**asdict(rc), "models": ["minilm", "mpnet"], "tasks": ["rotten_tomatoes"]}))
    assert config_from_settings(s) == replace(rc, models=("minilm", "mpnet"), tasks=("rotten_tomatoes",))


def test_cards_only_adds_the_cards_to_an_existing_json_and_the_doc(tmp_path):
    from analysis.cli.main import main

    rc = ReproConfig(tasks=("rotten_tomatoes",), analysis_n=40, max_length=16, device="cpu")
    cache = tmp_path / "c"
    res = _results(None)
    res["parts"][0]["settings"] = {**asdict(rc), "models": ["minilm"], "tasks": ["rotten_tomatoes"]}
    res["curves"] = [_curve(rc, "minilm", "rotten_tomatoes", DiskCache(cache))]
    js, doc, img = tmp_path / "r.json", tmp_path / "d" / "r.md", tmp_path / "d" / "img"
    js.write_text(json.dumps(res))
    args = ["reproduce", "--cards-only", "--json", str(js), "--doc", str(doc), "--img", str(img)]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    out = json.loads(js.read_text())
    (c,) = out["cards"]
    assert (c["model"], c["task"], c["n"]) == ("minilm", "rotten_tomatoes", res["curves"][0]["n"])
    assert c["variability"] == res["curves"][0]["variability"]  # the curve's states, from the cache
    assert c["recommended_layer"] == res["curves"][0]["best_layer"]
    assert len(c["probe_accuracy"]) == len(c["knn_accuracy"]) == len(c["layers"])
    assert c["same_layer"] == (c["recommended_layer"] == c["probe_best_layer"])
    assert out["curves"] == res["curves"] and out["verdicts"]["claim1"] == res["verdicts"]["claim1"]
    text = doc.read_text()
    assert SECTION in text and out["verdicts"]["cards"] in text
    assert not img.exists() or not any(img.iterdir())  # the plots are not redrawn
    # resumable: a second call finds the record and computes nothing
    js.write_text(json.dumps({**out, "cards": [{**c, "rank_agreement": 0.123}]}))
    assert main([*args, "--cache-dir", str(tmp_path / "empty")]) == 0
    assert json.loads(js.read_text())["cards"][0]["rank_agreement"] == 0.123
