"""The statistics of a reproduction: paired differences across seeds and the verdict words.

Strategies share seeds (and so batches and head initialisation), so two strategies are
compared by the per-seed difference of their held-out metric: its mean, its standard
error and a 95 % interval mean ± t(0.975, n−1)·se. The standard error is sd/√n with the
per-seed sd floored at the binomial sd of the metric on the held-out texts,
√(p̄(1−p̄)/m) (:func:`binomial_sd`): a metric measured on m texts moves in steps of 1/m,
so three seeds can share one difference and give sd = 0, an interval of width 0 and a
"better"/"worse" that the texts cannot support. (An exact sign or permutation test is no
remedy for n ≤ 5 seeds: its smallest two-sided p is 2/2ⁿ ≥ 0.0625, so it could never call
a difference at 95 %.) A setting is "better" or "worse" when the interval excludes 0,
else "tie"; "untested" with fewer than two shared seeds.

Settings are not independent (k = 1, 2, 3 of a task share ℓ*, the texts and the full
runs), so a claim is judged per task (:func:`task_word`: it holds on a task when most of
the task's testable k support it) and then over tasks (:func:`claim_word`: "inconclusive"
below :data:`MIN_TASKS`). Pure functions of numbers, so verdicts can be recomputed from the
JSON alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

MIN_TASKS = 3
OUTCOMES = ("better", "worse", "tie")


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def binomial_sd(p: float, m: int) -> float:
    """The sampling sd √(p(1−p)/m) of a proportion ``p`` measured on ``m`` texts (0 for m < 1)."""
    if math.isnan(p):  # a mean over a diverged run: a NaN floor would be silently ignored by max()
        raise ValueError("binomial_sd of NaN: leave diverged runs out of the mean")
    if m < 1:
        return 0.0
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / m)


def paired(a: dict[int, float], b: dict[int, float], sd_floor: float = 0.0) -> dict:
    """The paired difference ``a − b`` over the seeds both have.

    sd_floor : the least per-seed sd the interval uses (:func:`binomial_sd` of the metric).
    Returns n, the seeds, diffs, mean, sd (observed), sd_floor, floored (the floor was used),
    se, t, low, high and the outcome ("better"/"worse"/"tie"; "untested" with fewer than two
    shared seeds, where no interval exists).
    """
    seeds = [s for s in sorted(set(a) & set(b)) if not math.isnan(a[s] - b[s])]  # NaN: a run diverged, no pair
    d = [a[s] - b[s] for s in seeds]
    out: dict = {"n": len(d), "seeds": seeds, "diffs": d, "sd_floor": sd_floor}
    if len(d) < 2:
        return {**out, "mean": d[0] if d else None, "sd": None, "floored": False, "se": None, "t": None,
                "low": None, "high": None, "outcome": "untested"}  # fmt: skip
    mean, sd = statistics.mean(d), statistics.stdev(d)
    se = max(sd, sd_floor) / math.sqrt(len(d))
    t = t_quantile(len(d) - 1)
    low, high = mean - t * se, mean + t * se
    outcome = "better" if low > 0 else "worse" if high < 0 else "tie"
    return {**out, "mean": mean, "sd": sd, "floored": sd < sd_floor, "se": se, "t": t, "low": low, "high": high,
            "outcome": outcome}  # fmt: skip


def task_word(support: int, against: int, testable: int) -> str:
    """A claim on one task from its testable k settings: "holds" when more than half support it,
    "fails" when more than half contradict it, "split" otherwise, "untestable" with none testable."""
    if testable == 0:
        return "untestable"
    if support > testable / 2:
        return "holds"
    if against > testable / 2:
        return "fails"
    return "split"


def claim_word(support: int, against: int, testable: int) -> str:
    """The verdict word of a claim from its testable tasks.

    support : tasks on which the claim holds; against : tasks on which it fails.
    inconclusive : fewer than MIN_TASKS testable tasks; reproduced : support on more than half;
    not reproduced : no support, or it fails on at least half; mixed : otherwise.
    """
    if testable < MIN_TASKS:
        return "inconclusive"
    if support > testable / 2:
        return "reproduced"
    if support == 0 or against >= testable / 2:
        return "not reproduced"
    return "mixed"


def spearman_p(rho: float | None, n: int) -> float | None:
    """Two-sided p of a Spearman ``rho`` over ``n`` points (t approximation with n − 2 df, as scipy's)."""
    from scipy.stats import t

    if rho is None or n < 3 or math.isnan(rho):
        return None
    if abs(rho) >= 1:
        return 0.0
    stat = rho * math.sqrt((n - 2) / (1 - rho * rho))
    return float(2 * t.sf(abs(stat), n - 2))


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
