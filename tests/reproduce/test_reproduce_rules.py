"""The verdict rules that must not mislead: non-inferiority, the binomial floor, void and unequal settings,
counting tasks, significant Spearman, independent claim-3 draws, the learning-rate grid's edges, the cost model."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from test_reproduce_stats import _gemma_like

from analysis.reproduce.robustness import claim3_tasks, claim3_verdict, draw_rows, spread
from analysis.reproduce.run import finish
from analysis.reproduce.runs import edge_step
from analysis.reproduce.stats import binomial_sd, claim_word, paired, spearman_p, task_word
from analysis.training.cost import attention_width, block_flops


def test_claim_2_counts_a_worse_setting_inside_the_margin_as_a_match_not_against():
    # variability 0.025 below full on each of 5 seeds: "worse", yet inside the −0.05 margin
    seeds = [(0.80 + i / 100, 0.7, 0.825 + i / 100 + (i % 2) / 500) for i in range(5)]
    v = _gemma_like(seeds=seeds)["verdicts"]
    assert {x["difference"] for x in v["claim2_detail"]} == {"worse"}
    assert all(x["low"] >= -0.05 and x["high"] < 0 for x in v["claim2_detail"])
    assert {x["outcome"] for x in v["claim2_detail"]} == {"match"}
    assert v["claim2"].startswith("reproduced: holds on 3 of 3")
    # 0.2 below: the upper end is below −0.05, so this is evidence against the claim
    far = _gemma_like(seeds=[(0.60, 0.5, 0.80), (0.61, 0.5, 0.815), (0.62, 0.5, 0.82)])["verdicts"]
    assert {x["outcome"] for x in far["claim2_detail"]} == {"worse beyond the margin"}
    assert far["claim2"].startswith("not reproduced: holds on 0 of 3 testable tasks, fails on 3")


def test_two_matches_and_two_wide_ties_are_mixed_not_against():
    assert claim_word(2, 0, 4) == "mixed"  # the ties are no evidence against
    assert claim_word(2, 2, 4) == "not reproduced"


def test_a_zero_variance_difference_gets_the_binomial_floor_not_a_zero_width_interval():
    a, b = {0: 0.80, 1: 0.81, 2: 0.79}, {0: 0.79, 1: 0.80, 2: 0.78}  # the same +0.01 on every seed
    bare = paired(a, b)
    assert bare["sd"] == pytest.approx(0, abs=1e-12) and bare["outcome"] == "better"
    floor = binomial_sd(0.8, 600)
    assert floor == pytest.approx(math.sqrt(0.16 / 600))
    p = paired(a, b, floor)
    assert p["floored"] and p["se"] == pytest.approx(floor / math.sqrt(3))
    assert p["low"] < 0 < p["high"] and p["outcome"] == "tie"
    noisy = paired({0: 0.9, 1: 0.5, 2: 0.7}, {0: 0.7, 1: 0.7, 2: 0.7}, floor)  # sd above the floor: unchanged
    assert not noisy["floored"] and noisy["se"] == pytest.approx(0.2 / math.sqrt(3))


def test_the_verdicts_use_the_floor_from_the_held_out_texts():
    seeds = [(0.80, 0.79, 0.80), (0.81, 0.80, 0.81), (0.82, 0.81, 0.82)]  # variability − top = +0.01 exactly
    v = _gemma_like(seeds=seeds)["verdicts"]
    x = v["claim1_detail"][0]
    assert x["floored"] and x["sd_floor"] == pytest.approx(binomial_sd((0.81 + 0.80) / 2, 600))
    assert x["outcome"] == "tie"


def test_a_task_counts_once_however_many_k_it_has():
    one_task = _gemma_like(tasks=("rotten_tomatoes",), ks=(1, 2, 3))["verdicts"]
    assert [x["outcome"] for x in one_task["claim1_detail"]] == ["better"] * 3
    assert one_task["claim1"].startswith("inconclusive: holds on 1 of 1 testable task")
    (t,) = one_task["claim1_tasks"]
    assert (t["support"], t["testable"], t["word"]) == (3, 3, "holds")
    assert task_word(1, 1, 3) == "split" and task_word(2, 0, 3) == "holds" and task_word(0, 2, 3) == "fails"
    assert task_word(0, 0, 0) == "untestable"


def test_l_star_below_k_is_not_like_for_like_and_not_counted():
    v = _gemma_like(ks=(1, 3), layer=2)["verdicts"]  # ℓ* = 2: k = 3 tunes layers 1, 2 only
    out = {(x["task"], x["k"]): x["outcome"] for x in v["claim1_detail"]}
    assert set(out.values()) == {"better", "unequal"} and all(out[(t, 3)] == "unequal" for t, _ in out)
    assert all(t["ks"] == [1] for t in v["claim1_tasks"])
    assert "not like-for-like (ℓ* < k" in v["claim1"]


def test_l_star_at_the_top_voids_claims_2_and_4_for_nu():
    v = _gemma_like(layer=18)["verdicts"]
    assert {x["outcome"] for x in v["claim1_detail"]} == {"void"}
    assert {x["outcome"] for x in v["claim2_detail"]} == {"void for ν"}
    assert {x["top_vs_full"] for x in v["claim2_detail"]} == {"match"}  # what top-k vs full showed, said apart
    assert {x["outcome"] for x in v["claim4_detail"]} == {"void for ν"}
    for c in ("claim1", "claim2", "claim4"):
        assert v[c].startswith("inconclusive: holds on 0 of 0"), v[c]
    assert "plain partial tuning" in v["claim4"]


def test_a_missing_partner_or_one_shared_seed_gets_its_own_word():
    res = _gemma_like()
    res["runs"] = [r for r in res["runs"] if not (r["task"] == "bbc_news" and r["strategy"] == "top")]
    res["runs"] = [r for r in res["runs"] if not (r["task"] == "reuters_r8" and r["seed"] > 0)]
    v = finish(res)["verdicts"]
    c1 = {x["task"]: x["outcome"] for x in v["claim1_detail"]}
    assert c1 == {"bbc_news": "no partner", "reuters_r8": "untested", "rotten_tomatoes": "better"}
    assert "no partner (the other strategy has no runs) in 1" in v["claim1"]
    assert "untested (fewer than 2 shared seeds) in 1" in v["claim1"]


def test_spearman_agreement_needs_significance_and_p_matches_scipy():
    from scipy.stats import spearmanr

    assert spearman_p(0.64, 7) == pytest.approx(0.12, abs=0.005)  # 7 layers: not significant
    x, y = [1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4, 3, 6, 5, 8, 7]
    r = spearmanr(x, y)
    assert spearman_p(float(r.statistic), 8) == pytest.approx(float(r.pvalue), rel=1e-9)
    assert spearman_p(None, 7) is None


def test_claim_3_draws_share_no_text_with_the_reference_and_are_not_its_prefixes():
    from analysis.data.sampling import SampleConfig, sample_index

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    texts = np.array([f"text {i}" for i in range(len(labels))])  # one id per text
    ref = sample_index(labels, 2, SampleConfig(n=500, seed=0))[0]
    pool = sample_index(labels, 2, SampleConfig(n=1500, seed=0))[0]
    old = sample_index(labels, 2, SampleConfig(n=250, seed=0))[0]  # the old scheme: a prefix of the reference
    assert set(texts[old]) <= set(texts[ref])
    seen = []
    for seed in range(1, 6):
        rows, source = draw_rows(labels, 2, ref, pool, 250, seed)
        assert source == "disjoint" and len(rows) == 250
        assert not set(texts[rows]) & set(texts[ref])
        seen.append(frozenset(texts[rows]))
    assert len(set(seen)) == 5  # five different draws
    imb, _ = draw_rows(labels, 2, ref, pool, 500, 1, (1.0, 9.0))
    assert not set(texts[imb]) & set(texts[ref]) and abs(np.bincount(labels[imb])[0] - 50) <= 1


def test_claim_3_falls_back_to_bootstrap_resamples_when_the_reference_is_the_whole_split():
    labels = np.repeat([0, 1, 2], 40)
    ref = np.arange(len(labels))  # the reference holds every text
    rows, source = draw_rows(labels, 3, ref, ref, 60, 1)
    assert source == "bootstrap" and len(rows) == 60 and len(set(rows)) < 60  # with replacement
    assert np.bincount(labels[rows]).tolist() == [20, 20, 20]


def _rob(task, kind, value, rhos, moved):
    draws = [{"seed": i + 1, "spearman": r, "best_layer": 5 if m else 6, "moved": m} for i, (r, m) in
             enumerate(zip(rhos, moved, strict=True))]  # fmt: skip
    return {"model": "m", "task": task, "kind": kind, "value": value, "n": 100, "source": "disjoint",
            **spread(draws), "draws": draws}  # fmt: skip


def test_claim_3_counts_tasks_and_leaves_out_fraction_one_and_nested_records():
    rob = [_rob(t, "fraction", 0.5, [0.9] * 5, [False] * 5) for t in ("a", "b")]
    rob += [_rob("c", "fraction", 0.5, [0.5] * 5, [True] * 5), _rob("c", "fraction", 1.0, [1.0] * 5, [False] * 5)]
    rob += [{"model": "m", "task": "d", "kind": "fraction", "value": 0.5, "spearman": 1.0, "best_layer": 6}]
    tasks = claim3_tasks(rob)
    assert [(t["task"], t["word"]) for t in tasks] == [("a", "holds"), ("b", "holds"), ("c", "fails"),
                                                        ("d", "nested")]  # fmt: skip
    assert next(t for t in tasks if t["task"] == "c")["draws"] == 5  # fraction 1 is not counted
    line = claim3_verdict(rob, tasks)
    assert line.startswith("reproduced: holds on 2 of 3 tasks") and "m/d" in line
    # the basis of a failure, beside how far ℓ* moves at the reference's own size (not counted)
    assert "fails on 1: m/c (Spearman 0.50, ℓ* moved in 5 of 5; in 0 of 5 same-size draws already)" in line


def test_claim_3_does_not_count_a_balanced_1_to_1_draw_it_is_the_reference_size_again():
    rob = [_rob("a", "imbalance", "1:1", [0.2] * 5, [True] * 5), _rob("a", "imbalance", "1:9", [0.9] * 5, [False] * 5)]
    (task,) = claim3_tasks(rob)
    assert task["word"] == "holds" and task["draws"] == 5
    assert (task["baseline_draws"], task["baseline_moved"]) == (5, 5)


def test_the_learning_rate_grid_extends_past_the_edge_it_chose(monkeypatch):
    from analysis.reproduce import runs
    from analysis.reproduce.config import ReproConfig
    from analysis.training import select

    assert edge_step([1e-4, 3e-4, 1e-3], 1e-3) == pytest.approx(3.33e-3)
    assert edge_step([1e-4, 3e-4, 1e-3], 1e-4) == pytest.approx(3.33e-5, rel=1e-2)
    assert edge_step([1e-4, 3e-4, 1e-3], 3e-4) is None and edge_step([1e-3], 1e-3) is None
    score = {1e-4: 0.6, 3e-4: 0.7, 1e-3: 0.8, 3.33e-3: 0.85, 0.0111: 0.5}  # best inside after one step

    def trial(rc, model, folder, n_val, sel, strategy, lr, cache, log, cached_only):
        return {"metric": "accuracy", "metric_value": score[lr], "steps": 1, "final_loss": 0.1}

    monkeypatch.setattr(runs, "validation_folder", lambda *a: ("f", 80, 20))
    monkeypatch.setattr(runs, "_lr_trial", trial)
    rc = ReproConfig(lr_grid=(1e-4, 3e-4, 1e-3), lr_extend=2)
    lr, tried = runs.choose_lr(rc, "m", "t", "top", 1, select("top", 6, 1), None, lambda s: None)
    assert lr == pytest.approx(3.33e-3)
    assert [r["lr"] for r in tried if r["extended"]] == pytest.approx([3.33e-3, 0.0111])
    assert not next(r for r in tried if r["chosen"])["at_edge"]


def test_the_cost_model_uses_the_attention_width_and_twice_the_forward_attention_backward():
    gemma = SimpleNamespace(num_attention_heads=4, head_dim=256, hidden_size=640)
    bert = SimpleNamespace(num_attention_heads=12, hidden_size=768)
    assert attention_width(gemma) == 1024 and attention_width(bert) == 768
    assert attention_width(SimpleNamespace(num_attention_heads=4, head_dim=None, hidden_size=640)) == 640
    P, T = 10_000, 50.0
    fwd, bwd = block_flops(P, T, 1024)
    assert fwd - 2 * P * T == 4 * T * T * 1024
    assert bwd - 2 * P * T == 2 * (fwd - 2 * P * T)


def test_the_doc_says_each_rule_in_how_to_read_them():
    from analysis.reproduce.report import report_markdown

    text = report_markdown(_gemma_like(), "c")
    rules = text[text.index("How to read them") : text.index("## ν per layer")]
    phrases = ("binomial sd", "2/2ⁿ", "void for ν", "not like-for-like", "no partner", "untested",
               "worse but within the margin", "upper end is below", "more than half", "at least 0.8", "p < 0.05",
               "grid is extended")  # fmt: skip
    for phrase in phrases:
        assert phrase in rules, phrase
    assert "| fraction 0.5 | 20 | 3 | disjoint | 0.840 ± 0.070 | 0.770–0.910 | 12, 13 | 1 |" in text


def test_a_stored_search_whose_choice_is_the_largest_rate_is_marked_at_the_edge():
    from analysis.reproduce.run import mark_edges

    search = [{"model": "g", "task": "t", "strategy": "top", "k": 1, "lr": lr, "chosen": lr == 1e-3}
              for lr in (3e-4, 1e-3)] + [{"model": "g", "task": "t", "strategy": "variability", "k": 1, "lr": lr,
                                          "chosen": lr == 3e-4} for lr in (1e-4, 3e-4, 1e-3)]  # fmt: skip
    mark_edges(search)
    assert [r.get("at_edge") for r in search if r["chosen"]] == [True, False]


def test_a_grid_trains_its_selections_lowest_tuned_block_first(monkeypatch):
    """So each run finds the frozen-prefix states of the one before in the memo and chains from them."""
    import analysis.reproduce.runs as runs
    from analysis.reproduce.config import ReproConfig
    from analysis.training.model import lowest_trained

    seen = []
    monkeypatch.setattr(runs, "choose_lr", lambda *a, **kw: (1e-3, []))
    monkeypatch.setattr(runs, "cached_train", lambda cfg, *a, **kw: seen.append(cfg.selection) or None)
    nu = [9.0, 5, 4, 3, 1, 2, 6, 7]  # ℓ* = 4 of 7 layers: variability k = 3 tunes 2..4, top k = 1 tunes 7
    runs.training_runs(ReproConfig(seeds=(0,)), "minilm", "rotten_tomatoes", 7, nu, cache=None, log=print)
    ts = [lowest_trained(s) for s in seen]
    assert len(seen) == 7 and ts == sorted(ts) and ts[0] == 1 and ts[-1] == 7  # full first, top k = 1 last


def test_the_learning_rate_is_chosen_on_the_metric_the_task_is_scored_on(monkeypatch):
    from analysis.reproduce import runs
    from analysis.reproduce.config import ReproConfig
    from analysis.training import select

    # the validation folder's runs report accuracy first; reuters_r8 is scored on macro-F1, which ranks them apart
    evals = {1e-4: {"accuracy": 0.95, "macro_f1": 0.70}, 3e-4: {"accuracy": 0.93, "macro_f1": 0.80}}

    def trial(rc, model, folder, n_val, sel, strategy, lr, cache, log, cached_only):
        e = evals[lr]
        return {"metric": "accuracy", "metric_value": e["accuracy"], "eval": e, "steps": 1, "final_loss": 0.1}

    monkeypatch.setattr(runs, "validation_folder", lambda *a: ("f", 80, 20))
    monkeypatch.setattr(runs, "_lr_trial", trial)
    rc = ReproConfig(lr_grid=(1e-4, 3e-4), lr_extend=0)
    lr, tried = runs.choose_lr(rc, "m", "reuters_r8", "top", 1, select("top", 6, 1), None, lambda s: None)
    assert lr == 3e-4 and {r["metric"] for r in tried} == {"macro_f1"}
    lr, tried = runs.choose_lr(rc, "m", "rotten_tomatoes", "top", 1, select("top", 6, 1), None, lambda s: None)
    assert lr == 1e-4 and {r["metric"] for r in tried} == {"accuracy"}  # scored on accuracy: as before


def test_restored_runs_keep_the_run_and_drop_their_place_in_the_grid(tmp_path):
    from analysis.reproduce.restore import restore_runs
    from analysis.reproduce.runs import REPRO_VERSION
    from analysis.store.cache import DiskCache

    run = {"task": "t", "model": "m", "strategy": "top", "k": 1, "seed": 0, "identical_to_top": False,
           "metric": "accuracy", "metric_value": 0.8, "steps": 10, "lr": 1e-3, "run_key": "a" * 32}  # fmt: skip
    trial = {"model": "m", "task": "t", "strategy": "top", "k": 1, "lr": 1e-3, "seed": 0, "metric": "macro_f1",
             "val_metric": 0.7, "final_loss": 0.2, "steps": 5, "run_key": "b" * 32}  # fmt: skip
    old = {**run, "run_key": None}  # a record from before run_key: nothing to restore it under
    cache = DiskCache(tmp_path / "c")
    assert restore_runs({"runs": [run, old], "lr_search": [trial]}, cache) == 2
    rec = cache.load("runs", "a" * 32, version=REPRO_VERSION)[1]["record"]
    assert rec == {"metric": "accuracy", "metric_value": 0.8, "steps": 10, "lr": 1e-3}  # the strategy is a label
    got = cache.load("runs", "b" * 32, version=REPRO_VERSION)[1]["record"]
    assert got["eval"] == {"macro_f1": 0.7} and got["final_loss"] == 0.2 and got["steps"] == 5
    assert restore_runs({"runs": [{**run, "metric_value": 0.1}]}, cache) == 0  # what the cache has wins
    assert cache.load("runs", "a" * 32, version=REPRO_VERSION)[1]["record"]["metric_value"] == 0.8


def test_the_doc_says_how_many_probe_fits_converged_and_which_cards_never_recorded_it():
    from analysis.reproduce.card_lines import convergence_line

    cards = [{"model": "g", "task": "t", "probe_converged": [[True, False], [True, True]]}, {"model": "m", "task": "t"}]
    line = convergence_line(cards)
    assert (
        "g · t: 3 of 4 fits converged" in line and "not recorded (cards written before convergence was): m · t" in line
    )
