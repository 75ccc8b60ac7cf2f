"""The statistics of a reproduction: paired differences across seeds and the verdict words.

Strategies share seeds (and so batches and head initialisation), so two strategies are
compared by the per-seed difference of their held-out metric: its mean, its standard
error sd/√n and a 95 % interval mean ± t(0.975, n−1)·se. A setting is "better" or "worse"
when that interval excludes 0, else "tie". A claim is "reproduced", "not reproduced",
"mixed" or "inconclusive" (fewer than :data:`MIN_SETTINGS` settings can test it), by the
rule of :func:`claim_word`. Pure functions of numbers, so verdicts can be recomputed from
the JSON alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

MIN_SETTINGS = 3
OUTCOMES = ("better", "worse", "tie")


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """The paired difference ``a − b`` over the seeds both have.

    Returns n, the seeds, mean, sd, se, t, low, high and the outcome ("better"/"worse"/"tie";
    "untested" with fewer than two shared seeds, where no interval exists).
    """
    seeds = [s for s in sorted(set(a) & set(b)) if not math.isnan(a[s] - b[s])]  # NaN: a run diverged, no pair
    d = [a[s] - b[s] for s in seeds]
    out: dict = {"n": len(d), "seeds": seeds, "diffs": d}
    if len(d) < 2:
        return {**out, "mean": d[0] if d else None, "sd": None, "se": None, "t": None, "low": None, "high": None,
                "outcome": "untested"}  # fmt: skip
    mean, sd = statistics.mean(d), statistics.stdev(d)
    se = sd / math.sqrt(len(d))
    t = t_quantile(len(d) - 1)
    low, high = mean - t * se, mean + t * se
    outcome = "better" if low > 0 else "worse" if high < 0 else "tie"
    return {**out, "mean": mean, "sd": sd, "se": se, "t": t, "low": low, "high": high, "outcome": outcome}


def claim_word(support: int, against: int, testable: int) -> str:
    """The verdict word of a claim from its testable settings.

    support : settings whose outcome the claim predicts; against : settings whose outcome contradicts it.
    inconclusive : fewer than MIN_SETTINGS testable settings; reproduced : support in more than half;
    not reproduced : no support, or the contradicting settings are at least half; mixed : otherwise.
    """
    if testable < MIN_SETTINGS:
        return "inconclusive"
    if support > testable / 2:
        return "reproduced"
    if support == 0 or against >= testable / 2:
        return "not reproduced"
    return "mixed"


def count_outcomes(details: Iterable[dict]) -> dict[str, int]:
    """How many details have each outcome (better, worse, tie, and any other)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for x in details:
        counts[x["outcome"]] = counts.get(x["outcome"], 0) + 1
    return counts


def by_seed(runs: Iterable[dict]) -> dict[int, float]:
    """{seed: metric_value} of one strategy's runs."""
    return {int(r["seed"]): float(r["metric_value"]) for r in runs}


def final_loss(history: list[dict], tail: float = 0.1) -> float | None:
    """Mean training loss over the last ``tail`` of the logged steps (at least one step; None: no log)."""
    losses = [h["loss"] for h in history if h.get("loss") is not None]
    if not losses:
        return None
    n = max(1, int(round(len(losses) * tail)))
    return float(statistics.mean(losses[-n:]))
