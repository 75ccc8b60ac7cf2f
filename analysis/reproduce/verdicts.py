"""The verdicts of a reproduction: per-setting paired comparisons, per-task words and one verdict per claim.

Pure functions of the results dict of :func:`analysis.reproduce.run.run` (its "runs",
"robustness", "curves" and "cards" records), so the verdicts can be recomputed from the JSON alone.

- Claim 1 (variability beats top-k) and claim 2 (variability matches full fine-tuning) compare
  strategies by the paired difference across seeds (:func:`analysis.reproduce.stats.paired`, the
  per-seed sd floored at the binomial sd of the metric on the held-out texts).
- Where ℓ* is the top layer the variability selection *is* the top-k selection: such a setting is
  "void" for claim 1, and for claims 2 and 4 "void for ν" (top-k against full fine-tuning: whatever
  it shows owes nothing to ν; it is reported beside the verdict, not counted in it).
- Where ℓ* < k the variability selection tunes only ℓ* layers (:func:`analysis.recommend.tuned_layers`),
  fewer than top-k's k: claim 1's pair is not like-for-like ("unequal") and is not counted.
- Claim 2 is non-inferiority with margin MARGIN (0.05): a setting "matches" when the interval's lower
  end is at or above −MARGIN, is "worse beyond the margin" (against the claim) when its upper end is
  below −MARGIN, else "undecided". A worse setting inside the margin is a match.
- A setting whose partner strategy has no runs is "no partner"; one with fewer than two shared seeds
  is "untested". Neither is counted.
- Claim 4 splits the saving of the variability selection into partial tuning (top-k against full
  fine-tuning) and truncation (variability against top-k: the layers above ℓ* removed).
- Each claim is judged per (model, task) (:func:`analysis.reproduce.stats.task_word`: most of the
  task's testable k) and then over tasks (:func:`analysis.reproduce.stats.claim_word`, ≥ 3 tasks).
- Claim 3 (:mod:`analysis.reproduce.robustness`) on independent draws, per task.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable

from analysis.reproduce.robustness import claim3_tasks, claim3_verdict
from analysis.reproduce.stats import MIN_TASKS, binomial_sd, by_seed, claim_word, paired, spearman_p, task_word

MARGIN = 0.05  # claim 2: a match needs the interval's lower end at or above −MARGIN (non-inferiority)
COUNTED = ("better", "worse", "tie")
NOT_COUNTED = {
    "void": "void (ℓ* is the top layer: the same model as top-k)",
    "void for ν": "void for ν (ℓ* is the top layer: top-k against full, nothing of ν)",
    "unequal": "not like-for-like (ℓ* < k: variability tunes only ℓ* layers)",
    "no partner": "no partner (the other strategy has no runs)",
    "untested": "untested (fewer than 2 shared seeds)",
}


def _mean_sd(xs: Iterable[float]) -> tuple[float, float]:
    xs = list(xs)
    if any(x != x for x in xs):  # a run that diverged (NaN, read back from null): no mean of its setting
        return float("nan"), float("nan")
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def _groups(res: dict) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in res["runs"]:
        groups.setdefault((r["model"], r["task"], r["strategy"], r["k"]), []).append(r)
    return groups


def summarize(res: dict) -> list[dict]:
    """Mean ± sd of the metric, params, FLOPs, time, learning rate and final loss per (model, task, strategy, k)."""
    rows = []
    for (model, task, strategy, k), runs in sorted(
        _groups(res).items(), key=lambda x: (x[0][0], x[0][1], x[0][2] != "full", x[0][3] or 0, x[0][2])
    ):
        m, sd = _mean_sd(r["metric_value"] for r in runs)
        losses = [r["final_loss"] for r in runs if r.get("final_loss") is not None]
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": strategy,
                "k": k,
                "seeds": len(runs),
                "metric": runs[0]["metric"],
                "mean": m,
                "sd": sd,
                "classifier_layer": runs[0]["classifier_layer"],
                "tuned_layers": runs[0]["tuned_layers"],
                "layers_kept": runs[0].get("layers_kept", runs[0]["classifier_layer"]),
                "trainable_params": runs[0]["trainable_params"],
                "flops_vs_full": runs[0]["flops_vs_full"],
                "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
                "identical_to_top": bool(runs[0].get("identical_to_top")),
                "lr": runs[0].get("lr"),
                "final_loss": statistics.mean(losses) if losses else None,
            }
        )
    return rows


def verdicts(res: dict) -> dict:
    """A verdict per claim, from the numbers only."""
    groups, tops = _groups(res), _top_layers(res)
    c1, c2, c4 = _claim1_detail(groups, tops), _claim2_detail(groups, tops), _claim4_detail(groups, tops)
    t1 = _tasks(c1, lambda x: x["outcome"] == "better", lambda x: x["outcome"] == "worse")
    t2 = _tasks(c2, lambda x: x["outcome"] == "match", lambda x: x["outcome"] == "worse beyond the margin")
    t4 = _tasks(c4, lambda x: x["outcome"] == "cheaper", lambda x: x["outcome"] == "not cheaper")
    t3 = claim3_tasks(res["robustness"])
    out = {
        "claim1": _claim1_verdict(c1, t1),
        "claim2": _claim2_verdict(c2, t2),
        "claim3": claim3_verdict(res["robustness"], t3),
        "claim4": _claim4_verdict(c4, t4),
        "claim1_detail": c1,
        "claim2_detail": c2,
        "claim4_detail": c4,
        "claim1_tasks": t1,
        "claim2_tasks": t2,
        "claim3_tasks": t3,
        "claim4_tasks": t4,
        "rules": {
            "interval": "95 % t interval of the paired per-seed difference (n − 1 degrees of freedom), the per-seed "
            "sd floored at the binomial sd √(p̄(1−p̄)/m) of the metric on the m held-out texts",
            "min_tasks": MIN_TASKS,
            "claim2_margin": MARGIN,
        },
    }
    if res.get("cards"):
        out["cards"] = cards_verdict(res["cards"])
    return out


def cards_verdict(cards: list[dict]) -> str:
    """One line on the "cards" records: on how many settings ℓ* is the probe's best layer, and the Spearman range."""
    done = [c for c in cards if "not_computed" not in c]
    same = sum(c["same_layer"] for c in done)
    rhos = sorted(c["rank_agreement"] for c in done if c["rank_agreement"] is not None)
    line = f"ν and the probe agree on the best layer in {same} of {len(done)} settings"
    if rhos:
        ps = [rank_p(c) for c in done]
        sig = sum(p is not None and p < 0.05 and c["rank_agreement"] > 0 for p, c in zip(ps, done, strict=True))
        line += (
            f"; Spearman between −ν and probe accuracy across layers {rhos[0]:.2f}–{rhos[-1]:.2f} "
            f"(median {statistics.median(rhos):.2f}), a significant agreement (p < 0.05) in {sig} of {len(done)}"
        )
    missing = [f"{c['model']}/{c['task']}" for c in cards if "not_computed" in c]
    if missing:
        line += f"; not computed for {', '.join(missing)}"
    return line


def rank_p(card: dict) -> float | None:
    """The two-sided p of a cards record's Spearman across its layers (None: undefined)."""
    return spearman_p(card.get("rank_agreement"), len(card.get("layers") or []))


def _top_layers(res: dict) -> dict[tuple[str, str], int]:
    """{(model, task): L} from the curves (layer 0 is the embeddings)."""
    return {(c["model"], c["task"]): len(c["layers"]) - 1 for c in res.get("curves", [])}


def _settings(groups: dict[tuple, list[dict]]) -> list[tuple[str, str, int, list[dict]]]:
    """(model, task, k, variability runs) per variability group, in a stable order."""
    keys = sorted(k for k in groups if k[2] == "variability")
    return [(m, t, k, groups[(m, t, s, k)]) for m, t, s, k in keys]


def _pair(var: list[dict], other: list[dict]) -> dict:
    """:func:`paired` of two strategies' runs, floored at the binomial sd of their mean metric on the held-out texts."""
    vals = [r["metric_value"] for r in var + other if not math.isnan(r["metric_value"])]  # NaN: a run diverged
    m = min(int(r.get("n_eval") or 0) for r in var + other)
    return paired(by_seed(var), by_seed(other), binomial_sd(statistics.mean(vals), m) if vals else 0.0)


def _is_top(var: list[dict], tops: dict, model: str, task: str) -> bool:
    return var[0]["classifier_layer"] == tops.get((model, task), -1) or any(r.get("identical_to_top") for r in var)


def _claim1_detail(groups: dict[tuple, list[dict]], tops: dict) -> list[dict]:
    """Claim 1 per setting: the paired difference variability − top-k, or why it is not counted."""
    out = []
    for model, task, k, var in _settings(groups):
        top = groups.get((model, task, "top", k))
        p = _pair(var, top) if top else {}
        if not top:
            outcome = "no partner"
        elif _is_top(var, tops, model, task):
            outcome = "void"
        elif len(var[0]["tuned_layers"]) < k:
            outcome = "unequal"
        else:
            outcome = p["outcome"]
        keep = outcome in (*COUNTED, "unequal")
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "best_layer": var[0]["classifier_layer"],
                "n_layers": tops.get((model, task)),
                "tuned": len(var[0]["tuned_layers"]),
                "variability": statistics.mean(r["metric_value"] for r in var),
                "top": statistics.mean(r["metric_value"] for r in top) if top else None,
                **{x: p.get(x) if keep else None for x in ("mean", "se", "low", "high", "sd_floor", "floored")},
                "n": p.get("n", 0),
                "outcome": outcome,
            }
        )
    return out


def _claim2_detail(groups: dict[tuple, list[dict]], tops: dict) -> list[dict]:
    """Claim 2 per setting: variability − full fine-tuning against the margin (match / worse beyond / undecided)."""
    out = []
    for model, task, k, var in _settings(groups):
        full = groups.get((model, task, "full", None))
        p: dict = _pair(var, full) if full else {"outcome": "no partner"}
        if p["outcome"] in COUNTED:
            word = "match" if p["low"] >= -MARGIN else "worse beyond the margin" if p["high"] < -MARGIN else "undecided"
        else:
            word = p["outcome"]
        void = word != "no partner" and _is_top(var, tops, model, task)
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "variability": statistics.mean(r["metric_value"] for r in var),
                "full": statistics.mean(r["metric_value"] for r in full) if full else None,
                "gap": p.get("mean"),
                **{x: p.get(x) for x in ("n", "se", "low", "high", "sd_floor", "floored")},
                "difference": p["outcome"],
                "top_vs_full": word if void else None,
                "outcome": "void for ν" if void else word,
                "matches": word == "match",
            }
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _giga(x: float | None) -> float | None:
    return None if x is None else x / 1e9


def _claim4_detail(groups: dict[tuple, list[dict]], tops: dict) -> list[dict]:
    """Claim 4 per setting: total, partial-tuning and truncation factors (FLOPs and time) and inference share."""
    out = []
    for model, task, k, var in _settings(groups):
        top, full = groups.get((model, task, "top", k)), groups.get((model, task, "full", None))
        if not top:
            continue
        sec = {n: statistics.mean(r["train_seconds"] for r in rs) if rs else None
               for n, rs in (("var", var), ("top", top), ("full", full))}  # fmt: skip
        f_var, f_top = var[0]["flops_vs_full"], top[0]["flops_vs_full"]
        kept = var[0].get("layers_kept", var[0]["classifier_layer"])
        t_full = _ratio(sec["var"], sec["full"])
        if not full:
            outcome = "no partner"
        elif _is_top(var, tops, model, task):
            outcome = "void for ν"
        else:
            outcome = "cheaper" if f_var < 1 and t_full is not None and t_full < 1 else "not cheaper"
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "has_full": bool(full),
                "flops_vs_full": f_var,
                "partial_flops": f_top,
                "truncation_flops": f_var / f_top,
                "time_vs_full": t_full,
                "partial_time": _ratio(sec["top"], sec["full"]),
                "truncation_time": _ratio(sec["var"], sec["top"]),
                "inference_vs_full": kept / top[0]["classifier_layer"],
                "inference_gflops": _giga(var[0].get("inference_flops_per_example")),
                "full_inference_gflops": _giga(top[0].get("inference_flops_per_example")),
                "outcome": outcome,
            }
        )
    return out


def _tasks(details: list[dict], support: Callable[[dict], bool], against: Callable[[dict], bool]) -> list[dict]:
    """One record per (model, task): its testable k, how many support / contradict, and its word (stats.task_word)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for x in details:
        by.setdefault((x["model"], x["task"]), []).append(x)
    out = []
    for (model, task), xs in by.items():
        test = [x for x in xs if x["outcome"] not in NOT_COUNTED]
        s, a = sum(map(support, test)), sum(map(against, test))
        word = task_word(s, a, len(test))
        if not test:  # why: the most common reason among its settings
            reasons = [x["outcome"] for x in xs]
            word = max(set(reasons), key=reasons.count)
        out.append({"model": model, "task": task, "ks": [x["k"] for x in test], "support": s, "against": a,
                    "testable": len(test), "word": word})  # fmt: skip
    return out


def _tally(tasks: list[dict]) -> tuple[str, list[dict], str]:
    """(the claim word over tasks, the testable tasks, a clause naming the tasks that are not testable and why)."""
    test = [t for t in tasks if t["testable"]]
    hold, fail = sum(t["word"] == "holds" for t in test), sum(t["word"] == "fails" for t in test)
    word = claim_word(hold, fail, len(test))
    rest = [f"{t['model']}/{t['task']} {t['word']}" for t in tasks if not t["testable"]]
    return word, test, ("; not testable: " + ", ".join(rest)) if rest else ""


def _task_clause(test: list[dict]) -> str:
    n = len(test)
    c = {w: sum(t["word"] == w for t in test) for w in ("holds", "fails", "split")}
    line = f"holds on {c['holds']} of {n} testable task{'' if n == 1 else 's'}, fails on {c['fails']}, "
    line += f"split on {c['split']} (a task counts when most of its k agree)"
    return line + (f"; fewer than {MIN_TASKS} testable tasks" if n < MIN_TASKS else "")


def _setting_clause(details: list[dict], words: tuple[str, ...]) -> str:
    c = {w: sum(x["outcome"] == w for x in details) for w in (*words, *NOT_COUNTED)}
    return ", ".join(f"{w} {c[w]}" for w in words) + "".join(
        f"; {NOT_COUNTED[w]} in {c[w]}" for w in NOT_COUNTED if c[w]
    )


def _claim1_verdict(c1: list[dict], tasks: list[dict]) -> str:
    word, test, rest = _tally(tasks)
    return f"{word}: {_task_clause(test)}; settings: {_setting_clause(c1, COUNTED)}{rest}"


def _claim2_verdict(c2: list[dict], tasks: list[dict]) -> str:
    word, test, rest = _tally(tasks)
    words = ("match", "undecided", "worse beyond the margin")
    line = f"{word}: {_task_clause(test)}; settings (95 % interval against the −{MARGIN:g} margin): "
    line += _setting_clause(c2, words) + rest
    void = [x for x in c2 if x["outcome"] == "void for ν"]
    if void:
        m = sum(x["top_vs_full"] == "match" for x in void)
        line += f"; there, top-k (plain partial tuning) matched full fine-tuning in {m} of {len(void)}"
    return line


def _claim4_verdict(c4: list[dict], tasks: list[dict]) -> str:
    if not c4:
        return "inconclusive: no training runs to compare"
    word, test, rest = _tally(tasks)
    line = f"{word}: {_task_clause(test)}; settings: {_setting_clause(c4, ('cheaper', 'not cheaper'))}{rest}"
    cut = [x for x in c4 if x["inference_vs_full"] < 1]  # ℓ* below the top layer: layers removed
    if cut:
        tf, tt = [x["truncation_flops"] for x in cut], [x["truncation_time"] for x in cut if x["truncation_time"]]
        line += f"; truncation (layers above ℓ* removed, {len(cut)} setting{'s' if len(cut) > 1 else ''}): "
        line += f"training FLOPs {min(tf):.2f}–{max(tf):.2f}×"
        line += f", measured time {min(tt):.2f}–{max(tt):.2f}× of top-k's" if tt else " of top-k's"
    void = [x for x in c4 if x["outcome"] == "void for ν" and x["time_vs_full"]]
    if void:
        fl, tm = [x["flops_vs_full"] for x in void], [x["time_vs_full"] for x in void]
        line += (
            f"; where ℓ* is the top layer the saving is plain partial tuning: training FLOPs "
            f"{min(fl):.2f}–{max(fl):.2f}×, measured time {min(tm):.2f}–{max(tm):.2f}× of full"
        )
    return line
