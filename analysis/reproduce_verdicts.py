"""The statistics of a reproduction: mean ± sd per strategy and a plain verdict per claim.

Pure functions of the results dict of :func:`analysis.reproduce.run` (its "runs",
"robustness" and "cards" records), so the verdicts can be recomputed from the JSON alone.
A difference counts only beyond the seeds' noise: max(0.01, 2·sd/√seeds) for claim 1,
max(0.01, 2·sd of full fine-tuning) for claim 2.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def _mean_sd(xs: Iterable[float]) -> tuple[float, float]:
    xs = list(xs)
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def summarize(res: dict) -> list[dict]:
    """Mean ± sd of the metric, params, FLOPs and time per (model, task, strategy, k)."""
    groups: dict[tuple[str, str, str, int | None], list[dict]] = {}
    for r in res["runs"]:
        groups.setdefault((r["model"], r["task"], r["strategy"], r["k"]), []).append(r)
    rows = []
    for (model, task, strategy, k), rs in sorted(
        groups.items(), key=lambda x: (x[0][0], x[0][1], x[0][2] != "full", x[0][3] or 0, x[0][2])
    ):
        m, sd = _mean_sd(r["metric_value"] for r in rs)
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
                "trainable_params": rs[0]["trainable_params"],
                "flops_vs_full": rs[0]["flops_vs_full"],
                "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
                "identical_to_top": bool(rs[0].get("identical_to_top")),
            }
        )
    return rows


def verdicts(res: dict) -> dict:
    """A plain verdict per claim, from the numbers only."""
    rows = summarize(res)
    c1, c2, c4 = _claim1_detail(rows), _claim2_detail(rows), _claim4_detail(rows)
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


def _compared(rows: list[dict]) -> list[tuple[dict, dict | None, dict | None]]:
    """(variability row, its top-k row, its full fine-tuning row) per variability row of ``summarize``."""
    by = {(r["model"], r["task"], r["strategy"], r["k"]): r for r in rows}
    out = []
    for r in rows:
        if r["strategy"] != "variability":
            continue
        top = by.get((r["model"], r["task"], "top", r["k"]))
        full = next(
            (x for x in rows if (x["model"], x["task"], x["strategy"]) == (r["model"], r["task"], "full")), None
        )
        out.append((r, top, full))
    return out


def _claim1_detail(rows: list[dict]) -> list[dict]:
    """Claim 1 per setting: variability vs top-k, "better"/"worse" only beyond the seeds' noise."""
    out = []
    for r, top, _ in _compared(rows):
        if not top:
            continue
        if r["identical_to_top"]:
            outcome = "identical"
        else:
            noise = max(0.01, 2 * max(r["sd"], top["sd"]) / math.sqrt(max(r["seeds"], 1)))
            d = r["mean"] - top["mean"]
            outcome = "better" if d > noise else "worse" if d < -noise else "tie"
        out.append(
            {
                "model": r["model"],
                "task": r["task"],
                "k": r["k"],
                "variability": r["mean"],
                "top": top["mean"],
                "outcome": outcome,
            }
        )
    return out


def _claim2_detail(rows: list[dict]) -> list[dict]:
    """Claim 2 per setting: the gap to full fine-tuning, and whether it is within the full runs' noise."""
    out = []
    for r, _, full in _compared(rows):
        if not full:
            continue
        d = r["mean"] - full["mean"]
        out.append(
            {
                "model": r["model"],
                "task": r["task"],
                "k": r["k"],
                "variability": r["mean"],
                "full": full["mean"],
                "gap": d,
                "matches": d >= -max(0.01, 2 * full["sd"]),
            }
        )
    return out


def _claim4_detail(rows: list[dict]) -> list[dict]:
    """Claim 4 per setting: training FLOPs and measured time relative to full fine-tuning."""
    return [
        {
            "model": r["model"],
            "task": r["task"],
            "k": r["k"],
            "flops_vs_full": r["flops_vs_full"],
            "time_vs_full": r["train_seconds"] / full["train_seconds"] if full["train_seconds"] else None,
        }
        for r, _, full in _compared(rows)
        if full
    ]


def _claim1_verdict(c1: list[dict]) -> str:
    testable = [x for x in c1 if x["outcome"] != "identical"]
    better = sum(x["outcome"] == "better" for x in testable)
    worse = sum(x["outcome"] == "worse" for x in testable)
    if not testable:
        return (
            "not testable here: ℓ* is the top layer for every task, so the variability selection is the top-k selection"
        )
    if better > len(testable) / 2:
        return f"reproduced: better than top-k in {better} of {len(testable)} testable settings (worse in {worse})"
    counts = f"better in {better}, worse in {worse}, tied in {len(testable) - better - worse} of {len(testable)}"
    return f"partly reproduced: {counts}" if better > worse else f"not reproduced: {counts}"


def _claim2_verdict(c2: list[dict]) -> str:
    m = sum(x["matches"] for x in c2)
    return (
        f"reproduced: within noise of full fine-tuning in {m} of {len(c2)} settings"
        if c2 and m > len(c2) / 2
        else f"not reproduced: within noise of full fine-tuning in {m} of {len(c2)} settings"
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
    fl = [x["flops_vs_full"] for x in c4]
    tm = [x["time_vs_full"] for x in c4 if x["time_vs_full"]]
    if not fl:
        return "no runs"
    if tm and max(fl) < 1 and statistics.mean(tm) < 1:
        return (
            f"reproduced: training FLOPs {min(fl):.2f}–{max(fl):.2f}× and measured time {min(tm):.2f}–{max(tm):.2f}× "
            f"of full fine-tuning"
        )
    return "not reproduced: the selections did not cost less than full fine-tuning"
