"""The verdicts of a reproduction: per-setting paired comparisons and one verdict per claim.

Pure functions of the results dict of :func:`analysis.reproduce.run.run` (its "runs",
"robustness" and "cards" records), so the verdicts can be recomputed from the JSON alone.

- Claim 1 (variability beats top-k) and claim 2 (variability matches full fine-tuning) compare
  strategies by the paired difference across seeds (:func:`analysis.reproduce.stats.paired`):
  "better"/"worse" when the 95 % t interval excludes 0, else "tie". Where ℓ* is the top layer the
  variability selection *is* the top-k selection: that setting is "void" and does not test claim 1.
  Claim 2 counts a setting as a match when the interval's lower end is at or above −MARGIN (0.05):
  a non-inferiority rule on the paired standard error, so a tie with a wide interval is no match.
- Claim 4 splits the saving of the variability selection into partial tuning (top-k against full
  fine-tuning: same layers kept, fewer tuned) and truncation (variability against top-k: the same
  number of tuned layers, the layers above ℓ* removed), in training FLOPs of the cost model and in
  measured training time; inference cost per example is the share of blocks kept.
- Each claim's word is :func:`analysis.reproduce.stats.claim_word` ("inconclusive" below 3 settings).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from analysis.reproduce.stats import MIN_SETTINGS, by_seed, claim_word, count_outcomes, paired

MARGIN = 0.05  # claim 2: a match needs the interval's lower end at or above −MARGIN (non-inferiority)


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
    for (model, task, strategy, k), rs in sorted(
        _groups(res).items(), key=lambda x: (x[0][0], x[0][1], x[0][2] != "full", x[0][3] or 0, x[0][2])
    ):
        m, sd = _mean_sd(r["metric_value"] for r in rs)
        losses = [r["final_loss"] for r in rs if r.get("final_loss") is not None]
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": strategy,
                "k": k,
                "seeds": len(rs),
                "metric": rs[0]["metric"],
                "mean": m,
                "sd": sd,
                "classifier_layer": rs[0]["classifier_layer"],
                "tuned_layers": rs[0]["tuned_layers"],
                "layers_kept": rs[0].get("layers_kept", rs[0]["classifier_layer"]),
                "trainable_params": rs[0]["trainable_params"],
                "flops_vs_full": rs[0]["flops_vs_full"],
                "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
                "identical_to_top": bool(rs[0].get("identical_to_top")),
                "lr": rs[0].get("lr"),
                "final_loss": statistics.mean(losses) if losses else None,
            }
        )
    return rows


def verdicts(res: dict) -> dict:
    """A verdict per claim, from the numbers only."""
    groups = _groups(res)
    c1, c2, c4 = _claim1_detail(groups), _claim2_detail(groups), _claim4_detail(groups)
    rf, ri = _robustness_summaries(res["robustness"])
    out = {
        "claim1": _claim1_verdict(c1),
        "claim2": _claim2_verdict(c2),
        "claim3": _claim3_verdict(rf, ri),
        "claim4": _claim4_verdict(c4),
        "claim1_detail": c1,
        "claim2_detail": c2,
        "claim4_detail": c4,
        "claim3_detail": {"scarcity": rf, "imbalance": ri},
        "rules": {
            "interval": "95 % t interval of the paired per-seed difference (n − 1 degrees of freedom)",
            "min_settings": MIN_SETTINGS,
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
        line += (
            f"; Spearman between −ν and probe accuracy across layers {rhos[0]:.2f}–{rhos[-1]:.2f} "
            f"(median {statistics.median(rhos):.2f})"
        )
    missing = [f"{c['model']}/{c['task']}" for c in cards if "not_computed" in c]
    if missing:
        line += f"; not computed for {', '.join(missing)}"
    return line


def _settings(groups: dict[tuple, list[dict]]) -> list[tuple[str, str, int, list[dict]]]:
    """(model, task, k, variability runs) per variability group, in a stable order."""
    keys = sorted(k for k in groups if k[2] == "variability")
    return [(m, t, k, groups[(m, t, s, k)]) for m, t, s, k in keys]


def _claim1_detail(groups: dict[tuple, list[dict]]) -> list[dict]:
    """Claim 1 per setting: the paired difference variability − top-k; "void" where they are the same model."""
    out = []
    for model, task, k, var in _settings(groups):
        top = groups.get((model, task, "top", k))
        if not top:
            continue
        p = paired(by_seed(var), by_seed(top))
        void = any(r.get("identical_to_top") for r in var)
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "best_layer": var[0]["classifier_layer"],
                "n_layers": top[0]["classifier_layer"],
                "variability": statistics.mean(r["metric_value"] for r in var),
                "top": statistics.mean(r["metric_value"] for r in top),
                **{x: None if void else p[x] for x in ("mean", "se", "low", "high")},
                "n": p["n"],
                "outcome": "void" if void else p["outcome"],
            }
        )
    return out


def _claim2_detail(groups: dict[tuple, list[dict]]) -> list[dict]:
    """Claim 2 per setting: the paired difference variability − full fine-tuning; a match unless "worse"."""
    out = []
    for model, task, k, var in _settings(groups):
        full = groups.get((model, task, "full", None))
        if not full:
            continue
        p = paired(by_seed(var), by_seed(full))
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "variability": statistics.mean(r["metric_value"] for r in var),
                "full": statistics.mean(r["metric_value"] for r in full),
                "gap": p["mean"],
                **{x: p[x] for x in ("n", "se", "low", "high")},
                "outcome": p["outcome"],
                "matches": p["low"] is not None and p["low"] >= -MARGIN,
            }
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _giga(x: float | None) -> float | None:
    return None if x is None else x / 1e9


def _claim4_detail(groups: dict[tuple, list[dict]]) -> list[dict]:
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
        out.append(
            {
                "model": model,
                "task": task,
                "k": k,
                "has_full": bool(full),
                "flops_vs_full": f_var,
                "partial_flops": f_top,
                "truncation_flops": f_var / f_top,
                "time_vs_full": _ratio(sec["var"], sec["full"]),
                "partial_time": _ratio(sec["top"], sec["full"]),
                "truncation_time": _ratio(sec["var"], sec["top"]),
                "inference_vs_full": kept / top[0]["classifier_layer"],
                "inference_gflops": _giga(var[0].get("inference_flops_per_example")),
                "full_inference_gflops": _giga(top[0].get("inference_flops_per_example")),
            }
        )
    return out


def _claim1_verdict(c1: list[dict]) -> str:
    void = sum(x["outcome"] == "void" for x in c1)
    testable = [x for x in c1 if x["outcome"] in ("better", "worse", "tie")]
    c = count_outcomes(testable)
    word = claim_word(c["better"], c["worse"], len(testable))
    line = (
        f"{word}: {len(testable)} testable setting{'' if len(testable) == 1 else 's'} (ℓ* below the top layer); "
        f"better than top-k in {c['better']}, "
        f"worse in {c['worse']}, tied in {c['tie']}"
    )
    if void:
        line += f"; void in {void} where ℓ* is the top layer (the same model as top-k)"
    return line + (f"; fewer than {MIN_SETTINGS} testable settings" if len(testable) < MIN_SETTINGS else "")


def _claim2_verdict(c2: list[dict]) -> str:
    testable = [x for x in c2 if x["outcome"] in ("better", "worse", "tie")]
    c = count_outcomes(testable)
    match = sum(x["matches"] for x in testable)
    word = claim_word(match, c["worse"], len(testable))
    return (
        f"{word}: within {MARGIN:g} of full fine-tuning (95 % interval of the paired difference above −{MARGIN:g}) "
        f"in {match} of {len(testable)} settings; better in {c['better']}, tied in {c['tie']}, worse in {c['worse']}"
        + (f"; fewer than {MIN_SETTINGS} settings" if len(testable) < MIN_SETTINGS else "")
    )


def _robustness_summaries(rob: list[dict]) -> tuple[dict | None, dict | None]:
    """Claim 3's (scarcity, imbalance) summaries of the robustness records (None: no such records)."""

    def summary(xs: list[dict]) -> dict | None:
        if not xs:
            return None
        return {
            "mean_spearman": statistics.mean(x["spearman"] for x in xs),
            "min_spearman": min(x["spearman"] for x in xs),
            "best_layer_moved": sum(x["best_layer_moved"] for x in xs),
            "settings": len(xs),
        }

    frac = [x for x in rob if x["kind"] == "fraction" and x["value"] != 1.0]
    imb = [x for x in rob if x["kind"] == "imbalance"]
    return summary(frac), summary(imb)


def _claim3_verdict(rf: dict | None, ri: dict | None) -> str:
    if rf is None and ri is None:
        return "inconclusive: no robustness curves"
    ok = all(r is None or (r["mean_spearman"] >= 0.8 and r["best_layer_moved"] <= r["settings"] / 3) for r in (rf, ri))
    return (
        ("reproduced" if ok else "not reproduced")
        + ": "
        + "; ".join(
            f"{name}: mean Spearman {r['mean_spearman']:.2f} (min {r['min_spearman']:.2f}), ℓ* moved in "
            f"{r['best_layer_moved']} of {r['settings']}"
            for name, r in (("scarcity", rf), ("imbalance", ri))
            if r
        )
    )


def _claim4_verdict(c4: list[dict]) -> str:
    if not c4:
        return "inconclusive: no training runs to compare"
    with_full = [x for x in c4 if x["has_full"]]
    cut = [x for x in c4 if x["inference_vs_full"] < 1]  # ℓ* below the top layer: layers removed
    if cut:
        tf, tt = [x["truncation_flops"] for x in cut], [x["truncation_time"] for x in cut if x["truncation_time"]]
        trunc = f"truncation (layers above ℓ* removed, {len(cut)} setting{'s' if len(cut) > 1 else ''}): "
        trunc += f"training FLOPs {min(tf):.2f}–{max(tf):.2f}×"
        trunc += f", measured time {min(tt):.2f}–{max(tt):.2f}× of top-k's" if tt else " of top-k's"
    else:
        trunc = "no truncation anywhere (ℓ* is the top layer in every setting)"
    if not with_full:
        return f"inconclusive: no full fine-tuning runs to compare with; {trunc}"
    cheaper = sum(x["flops_vs_full"] < 1 and (x["time_vs_full"] or 1) < 1 for x in with_full)
    word = claim_word(cheaper, len(with_full) - cheaper, len(with_full))
    fl = [x["flops_vs_full"] for x in with_full]
    tm = [x["time_vs_full"] for x in with_full if x["time_vs_full"]]
    line = (
        f"{word}: cheaper than full fine-tuning in FLOPs and measured time in {cheaper} of {len(with_full)} "
        f"settings; training FLOPs {min(fl):.2f}–{max(fl):.2f}× of full"
    )
    if tm:
        line += f", measured time {min(tm):.2f}–{max(tm):.2f}×"
    return f"{line}; {trunc}"
