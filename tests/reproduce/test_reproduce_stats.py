"""The reproduction's statistics, verdict rules, merging of results and the doc's numbers (no training)."""

import json
import math
import re
from dataclasses import asdict, replace

import pytest

from analysis.reproduce.config import part_pairs
from analysis.reproduce.missing import missing_lines
from analysis.reproduce.report import report_markdown
from analysis.reproduce.run import ReproConfig, finish, merge, migrate, settings_for
from analysis.reproduce.stats import claim_word, final_loss, paired
from conftest import ROOT

DOCS = ROOT / "docs"


def test_paired_difference_uses_the_t_interval_over_shared_seeds():
    a = {0: 0.80, 1: 0.82, 2: 0.84, 3: 0.9}
    b = {0: 0.70, 1: 0.74, 2: 0.72}  # seed 3 is not shared
    p = paired(a, b)
    d = [0.10, 0.08, 0.12]
    assert p["n"] == 3 and p["seeds"] == [0, 1, 2]
    assert p["mean"] == pytest.approx(0.10)
    sd = math.sqrt(sum((x - 0.10) ** 2 for x in d) / 2)
    assert p["se"] == pytest.approx(sd / math.sqrt(3))
    assert p["t"] == pytest.approx(4.302653, rel=1e-5)  # t(0.975, 2)
    assert p["low"] == pytest.approx(0.10 - 4.302653 * p["se"], rel=1e-5)
    assert p["outcome"] == "better"
    assert paired(b, a)["outcome"] == "worse"
    noisy = paired({0: 0.8, 1: 0.6, 2: 0.9}, {0: 0.7, 1: 0.7, 2: 0.7})
    assert noisy["low"] < 0 < noisy["high"] and noisy["outcome"] == "tie"
    assert paired({0: 0.8}, {0: 0.7})["outcome"] == "untested"  # one seed: no interval


def test_the_claim_words():
    assert claim_word(2, 0, 2) == "inconclusive"  # fewer than 3 settings, whatever they say
    assert claim_word(3, 0, 4) == "reproduced"
    assert claim_word(0, 0, 5) == "not reproduced"  # all ties: no support
    assert claim_word(1, 3, 6) == "not reproduced"
    assert claim_word(2, 1, 6) == "mixed"


def test_final_loss_is_the_mean_of_the_last_tenth():
    hist = [{"step": i, "loss": float(i)} for i in range(1, 21)]
    assert final_loss(hist) == pytest.approx(19.5)
    assert final_loss([]) is None


def _run(model, task, strategy, k, seed, value, *, layer, n_layers, seconds=10.0, flops=0.5, same=False):
    tuned = list(range(max(1, layer - (k or n_layers) + 1), layer + 1))  # as select(): never below layer 1
    return {
        "model": model, "task": task, "strategy": strategy, "k": k, "seed": seed, "identical_to_top": same,
        "classifier_layer": layer, "tuned_layers": tuned, "layers_kept": layer, "trainable_params": 1000 * len(tuned),
        "total_params": 10**6, "flops_vs_full": flops, "flops_per_example": 1e9 * flops, "eval": {"accuracy": value},
        "metric": "accuracy", "metric_value": value, "seconds": seconds + 1, "train_seconds": seconds,
        "steps_per_second": 1.0, "steps": 10, "n_train": 100, "n_eval": 600, "lr": 3e-4, "final_loss": 0.5,
    }  # fmt: skip


SEEDS = [(0.80, 0.70, 0.805), (0.82, 0.73, 0.81), (0.81, 0.71, 0.82)]  # (variability, top, full) per seed


def _draws_record(task: str, layer: int) -> dict:
    """A claim-3 record of three disjoint draws at fraction 0.5 (synthetic curves)."""
    from analysis.reproduce.robustness import spread

    draws = []
    for seed, (rho, best) in enumerate([(0.91, layer), (0.84, layer), (0.77, layer - 1)], start=1):
        nu = [1.0 + 0.01 * seed] * 19
        nu[best] = 0.5
        draws.append({"seed": seed, "n": 20, "shared_with_reference": 0, "spearman": rho, "best_layer": best,
                      "moved": best != layer, "variability": nu})  # fmt: skip
    return {"model": "g", "task": task, "kind": "fraction", "value": 0.5, "n": 20, "source": "disjoint",
            **spread(draws), "draws": draws}  # fmt: skip


def _gemma_like(tasks=("rotten_tomatoes", "bbc_news", "reuters_r8"), ks=(1,), layer=13, seeds=SEEDS) -> dict:
    """Synthetic results: ℓ* = ``layer`` of 18; by default variability better than top on every task, tied with full."""
    runs = []
    for t in tasks:
        for s, (v, top, full) in enumerate(seeds):
            runs.append(_run("g", t, "full", None, s, full, layer=18, n_layers=18, seconds=40.0, flops=1.0))
            for k in ks:
                runs.append(_run("g", t, "variability", k, s, v, layer=layer, n_layers=18, seconds=4.0, flops=0.2))
                runs.append(_run("g", t, "top", k, s, top, layer=18, n_layers=18, seconds=6.0, flops=0.3))
    rc = ReproConfig(models=("g",), tasks=tasks, lr_grid=(1e-4, 3e-4))
    settings = {**asdict(rc), "models": ["g"], "tasks": list(tasks)}
    nu = [1.0] * 19
    nu[layer] = 0.5
    curve = {"layers": list(range(19)), "variability": nu, "band": None, "n": 40}
    res = {
        "version": 3,
        "parts": [{"models": ["g"], "settings": settings, "seconds": 600.0, "complete": True, "command": "c"}],
        "curves": [{"model": "g", "task": t, **curve, "best_layer": layer, "counts": [20, 20]} for t in tasks],
        "cards": [],
        "runs": runs,
        "robustness": [_draws_record(t, layer) for t in tasks],
        "lr_search": [
            {
                "model": "g",
                "task": t,
                "strategy": "top",
                "k": 1,
                "lr": lr,
                "seed": 0,
                "metric": "accuracy",
                "val_metric": 0.6 + lr,
                "final_loss": 0.4,
                "steps": 10,
                "n_fit": 80,
                "n_val": 20,
                "chosen": lr == 3e-4,
            }
            for t in tasks
            for lr in (1e-4, 3e-4)
        ],  # fmt: skip
    }
    return finish(res)


def test_verdicts_on_a_model_whose_best_layer_is_below_the_top():
    v = _gemma_like()["verdicts"]
    assert [x["outcome"] for x in v["claim1_detail"]] == ["better"] * 3
    assert v["claim1"].startswith("reproduced: holds on 3 of 3 testable tasks")
    assert all(x["difference"] == "tie" for x in v["claim2_detail"])
    assert [x["outcome"] for x in v["claim2_detail"]] == ["match"] * 3 and v["claim2"].startswith("reproduced")
    c4 = v["claim4_detail"][0]
    assert c4["flops_vs_full"] == pytest.approx(c4["partial_flops"] * c4["truncation_flops"])
    assert c4["time_vs_full"] == pytest.approx(c4["partial_time"] * c4["truncation_time"])
    assert (c4["partial_flops"], c4["truncation_time"], c4["inference_vs_full"]) == pytest.approx((0.3, 4 / 6, 13 / 18))
    assert v["claim4"].startswith("reproduced")
    # two tasks only: claim 1 cannot be settled
    assert _gemma_like(("rotten_tomatoes", "bbc_news"))["verdicts"]["claim1"].startswith("inconclusive")


def test_a_diverged_seed_leaves_the_binomial_floor_in_place():
    from analysis.reproduce.stats import binomial_sd

    # seeds 0-2: variability exactly 0.1 above top (zero sd, so only the floor gives the interval a width);
    # seed 3 diverged (NaN): it has no pair, and must not turn the floor into NaN, which max() would ignore
    seeds = [(0.80, 0.70, 0.80), (0.80, 0.70, 0.80), (0.80, 0.70, 0.80), (float("nan"), 0.70, 0.80)]
    (x, *_) = [d for d in _gemma_like(seeds=seeds)["verdicts"]["claim1_detail"] if d["task"] == "rotten_tomatoes"]
    p = (3 * 0.80 + 4 * 0.70) / 7  # the two strategies' mean over their finite runs
    assert x["n"] == 3 and x["floored"] and x["sd_floor"] == pytest.approx(binomial_sd(p, 600))
    assert x["mean"] == pytest.approx(0.1) and x["low"] < 0.1 < x["high"] and x["outcome"] == "better"
    assert x["high"] - x["low"] > 0.01  # the floor's width, not a zero-width interval
    with pytest.raises(ValueError, match="NaN"):
        binomial_sd(float("nan"), 600)


def test_void_settings_do_not_count_for_claim_1():
    res = _gemma_like()
    for r in res["runs"]:
        if r["strategy"] == "variability":
            r["identical_to_top"] = True
    v = finish(res)["verdicts"]
    assert {x["outcome"] for x in v["claim1_detail"]} == {"void"}
    assert v["claim1"].startswith("inconclusive: holds on 0 of 0 testable tasks") and "top-k) in 3" in v["claim1"]


def test_old_results_migrate_and_merge_keeps_the_other_models():
    old = json.loads((DOCS / "reproduction.json").read_text())
    flat = {k: old[k] for k in ("curves", "cards", "runs", "robustness")}
    flat |= {"settings": old["parts"][0]["settings"], "seconds": 30.0, "command": "python -m analysis reproduce"}
    flat["verdicts"] = {}
    m = migrate(flat)
    assert m["parts"][0]["command"] == "python -m analysis reproduce" and m["verdicts"] == old["verdicts"]
    assert settings_for(m, "minilm")["lr"] == 1e-4
    new = _gemma_like()
    both = merge(m, new)
    assert [p["models"] for p in both["parts"]] == [m["parts"][0]["models"], ["g"]]
    assert len(both["runs"]) == len(m["runs"]) + len(new["runs"])
    rt = _gemma_like(("rotten_tomatoes",))
    rt["runs"] = [{**r, "metric_value": 0.5} for r in rt["runs"]]
    again = merge(both, rt)  # a rerun of "g" on one task replaces that task's records only
    mine = [r for r in again["runs"] if r["model"] == "g"]
    assert {r["task"] for r in mine} == {"rotten_tomatoes", "bbc_news", "reuters_r8"}
    assert len(mine) == len(new["runs"])
    assert {r["metric_value"] for r in mine if r["task"] == "rotten_tomatoes"} == {0.5}
    assert [len([c for c in again["curves"] if c["model"] == "g"]), len(again["parts"])] == [3, 3]
    kept = again["parts"][1]  # the first "g" part keeps the tasks nothing replaced, and says which
    assert kept["pairs"] == [["g", "bbc_news"], ["g", "reuters_r8"]]
    assert settings_for(again, "g", "bbc_news") is kept["settings"]
    assert part_pairs(again["parts"][2]) == [("g", "rotten_tomatoes")]
    doc = report_markdown(again)
    assert "- Tasks: bbc_news, reuters_r8 (offline" in doc
    assert "That invocation also ran g · rotten_tomatoes; replaced since." in doc  # the trimmed part says so
    assert "(all its pairs, those replaced since included)" in doc and doc.count("replaced since.") == 1
    assert merge(again, rt)["parts"][1:] == again["parts"][1:]  # the same rerun again changes nothing


_NUM = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _json_numbers(x, out: set) -> set:
    if isinstance(x, bool):
        return out
    if isinstance(x, (int, float)):
        out.add(float(x))
    elif isinstance(x, dict):
        for v in x.values():
            _json_numbers(v, out)
    elif isinstance(x, list):
        for v in x:
            _json_numbers(v, out)
    return out


def _table_numbers(text: str) -> list[str]:
    """Every number in the body rows of the document's tables."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            continue  # a header row
        for cell in line.strip("|").split("|")[3:]:  # after model, task and the first key column
            out += _NUM.findall(cell.replace("**", ""))
    return out


def _in_json(token: str, nums: set) -> bool:
    t = token.replace(",", "").replace("−", "-")
    digits = len(t.split(".")[1]) if "." in t and "e" not in t else 0
    v = float(t)
    if any(round(x, digits) == round(v, digits) for x in nums):
        return True
    return any(f"{x:.3g}" == token or f"{x:g}" == token for x in nums)  # ν is printed with 3 significant digits


@pytest.mark.parametrize("source", ["synthetic", "docs"])
def test_every_number_in_the_doc_tables_is_in_the_json(source):
    res = _gemma_like() if source == "synthetic" else json.loads((DOCS / "reproduction.json").read_text())
    text = report_markdown(res, "c")
    nums = _json_numbers(res, set())
    tokens = _table_numbers(text)
    assert len(tokens) > 50
    missing = [t for t in tokens if not _in_json(t, nums)]
    assert not missing, missing[:10]
    for c in ("claim1", "claim2", "claim3", "claim4"):
        assert res["verdicts"][c] in text


def test_the_committed_doc_is_the_json_rendered():
    res = json.loads((DOCS / "reproduction.json").read_text())
    assert (DOCS / "reproduction.md").read_text() == report_markdown(res, None, "img")


def test_relabel_turns_an_old_results_file_into_the_new_form_without_training(tmp_path):
    from analysis.cli.main import main

    cur = json.loads((DOCS / "reproduction.json").read_text())
    part = cur["parts"][0]
    old = {k: cur[k] for k in ("curves", "cards", "runs", "robustness")}
    old |= {"settings": part["settings"], "seconds": 30.0, "verdicts": {"claim1": "not reproduced: old rule"}}
    for r in old["runs"]:
        r.pop("lr", None)
    js, doc = tmp_path / "r.json", tmp_path / "d" / "r.md"
    js.write_text(json.dumps(old))
    doc.parent.mkdir()
    doc.write_text("Regenerate: `python -m analysis reproduce --old`\n")
    args = ["reproduce", "--relabel", "--json", str(js), "--doc", str(doc), "--img", str(tmp_path / "d" / "img")]
    assert main([*args, "--cache-dir", str(tmp_path / "empty")]) == 0
    new = json.loads(js.read_text())
    assert new["parts"][0]["command"] == "python -m analysis reproduce --old"
    assert new["verdicts"]["claim1"] == cur["verdicts"]["claim1"] != "not reproduced: old rule"  # recomputed
    assert {r["lr"] for r in new["runs"]} == {part["settings"]["lr"]}
    assert not (tmp_path / "empty" / "runs").exists()  # nothing trained
    text = doc.read_text()
    assert "Regenerate: `python -m analysis reproduce --old`" in text and new["verdicts"]["claim2"] in text


def test_a_results_dict_without_runs_or_robustness_is_inconclusive_everywhere():
    res = _gemma_like()
    res["runs"], res["lr_search"], res["robustness"] = [], [], []
    v = finish(res)["verdicts"]
    assert [v[c].split(":")[0] for c in ("claim1", "claim2", "claim3", "claim4")] == ["inconclusive"] * 4


def test_the_regenerate_command_leaves_out_the_note_and_cached_only():
    from analysis.cli.reproduce import _command

    argv = ["--model", "gemma3-270m", "--note", "a reduced budget: 1 task", "--cached-only", "--steps", "100"]
    assert _command(argv) == "python -m analysis reproduce --model gemma3-270m --steps 100"
    assert _command(["--note=x", "--tasks", "a b"]) == "python -m analysis reproduce --tasks 'a b'"


def test_the_doc_lists_what_the_raw_models_grid_still_lacks():
    preset = ReproConfig(models=("g",), tasks=("rotten_tomatoes", "bbc_news", "reuters_r8"), ks=(1,), seeds=(0, 1, 2))
    res = _gemma_like(("rotten_tomatoes", "reuters_r8"))
    assert missing_lines(res, preset)[4:] == ["- g · bbc_news: not run yet.", ""]
    res["runs"] = [r for r in res["runs"] if not (r["task"] == "reuters_r8" and r["strategy"] == "top" and r["seed"])]
    assert missing_lines(res, preset)[5] == "- g · reuters_r8: missing top k = 1 (1 of 3 seeds)."
    assert missing_lines(_gemma_like(), preset) == []
    assert missing_lines(_gemma_like(), replace(preset, models=("other",))) == []  # no record of that model


def test_full_fine_tuning_asked_on_some_tasks_is_missing_only_while_fewer_tasks_have_it():
    preset = ReproConfig(
        models=("g",), tasks=("rotten_tomatoes", "bbc_news", "reuters_r8"), ks=(1,), seeds=(0, 1, 2), full_min_tasks=2
    )
    res = _gemma_like()
    assert missing_lines(res, preset) == []  # full on every task: more than asked
    res["runs"] = [r for r in res["runs"] if not (r["strategy"] == "full" and r["task"] != "rotten_tomatoes")]
    lines = missing_lines(res, preset)
    assert lines[4:] == [
        "- g: full fine-tuning on 1 of the 2 tasks it is asked on "
        "(3 seeds each; `--skip-full g` leaves it out of a task).",
        "",
    ]  # and no task is listed for its own lack of full runs
    assert missing_lines(res, replace(preset, full_min_tasks=0))[4:6] == [
        "- g · bbc_news: missing full (0 of 3 seeds).",
        "- g · reuters_r8: missing full (0 of 3 seeds).",
    ]
    assert missing_lines(res, replace(preset, full_min_tasks=1)) == []


def test_a_save_after_the_first_task_keeps_the_older_records_of_the_tasks_not_run_yet():
    from analysis.reproduce.run import _with_part

    old = _gemma_like(("rotten_tomatoes", "bbc_news"))
    settings = old["parts"][0]["settings"]  # a rerun planned on both tasks, interrupted after the first
    first = {k: [x for x in old[k] if x["task"] == "rotten_tomatoes"] for k in ("curves", "runs", "robustness")}
    first |= {"cards": [], "lr_search": []}
    first["runs"] = [{**r, "metric_value": 0.5} for r in first["runs"]]
    part = _with_part(first, settings, 1.0, done=False)
    assert part["parts"][0]["pairs"] == [["g", "rotten_tomatoes"]]
    both = merge(old, part)
    assert {r["task"] for r in both["runs"]} == {"rotten_tomatoes", "bbc_news"}
    assert {r["metric_value"] for r in both["runs"] if r["task"] == "rotten_tomatoes"} == {0.5}
    assert len([r for r in both["runs"] if r["task"] == "bbc_news"]) == len(
        [r for r in old["runs"] if r["task"] == "bbc_news"]
    )


def test_a_part_without_pairs_or_planned_tasks_covers_the_pairs_of_its_models_curves():
    res = _gemma_like(("rotten_tomatoes", "bbc_news"))
    res["parts"][0]["settings"] = {"lr": 1e-4}  # an old part whose settings name neither models nor tasks
    assert part_pairs(res["parts"][0], res) == [("g", "rotten_tomatoes"), ("g", "bbc_news")]
    assert settings_for(res, "g", "bbc_news") == {"lr": 1e-4}
    again = merge(res, _gemma_like(("rotten_tomatoes",)))
    assert again["parts"][0]["pairs"] == [["g", "bbc_news"]] and len(again["parts"]) == 2
