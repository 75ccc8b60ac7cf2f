"""Claim 3: is ν robust to data scarcity and class imbalance? Independent draws against the reference curve.

The reference is the curve of ``repro.analysis_n`` training texts (seed 0). Each fraction f
(``repro.fractions``) and, for two classes, each imbalance 1:r (``repro.imbalances``) gets
``repro.draws`` samples (seeds 1..draws), each drawn afresh from the training texts that are
*not* in the reference: a pool of ``POOL_FACTOR`` × analysis_n texts less the reference's
(:func:`draw_rows`). A draw is therefore never a prefix of the reference's permutation (the
old single draws were: the 1000-text sample was the first half of the 2000-text reference,
which inflates their Spearman). Where the pool cannot supply a draw (the reference is the whole
split, as on bbc_news), the draws are bootstrap resamples of the reference (with replacement,
within each class), marked source "bootstrap". Each record holds the Spearman of every draw
against the reference curve, its ℓ* and the spread over draws.

Claim 3 holds on a task when the mean Spearman over its draws (fractions below 1 and the
imbalances) is at least SPEARMAN_MIN and ℓ* moved in at most a third of them
(:func:`claim3_tasks`); the verdict counts tasks (:func:`analysis.reproduce.stats.claim_word`).
Fraction 1 (a same-size independent draw) is the noise baseline and is shown, not counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from analysis.reproduce.stats import claim_word, task_word

if TYPE_CHECKING:  # pragma: no cover
    from analysis.reproduce.config import ReproConfig
    from analysis.store.cache import DiskCache

POOL_FACTOR = 3  # the pool of candidate texts: this many times the reference's size, before removing it
SPEARMAN_MIN = 0.8


def draw_rows(
    labels: np.ndarray,
    n_classes: int,
    ref_rows: np.ndarray,
    pool_rows: np.ndarray,
    n: int,
    seed: int,
    imbalance: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, str]:
    """(row ids of one draw, source): ``n`` stratified texts from ``pool_rows`` less ``ref_rows``.

    labels : (N,) the class of every row of the split; ref_rows, pool_rows : sorted row ids.
    source "disjoint": no row of the draw is in the reference. Where the pool less the
    reference cannot supply ``n`` texts with the requested class shares, "bootstrap": ``n``
    rows drawn with replacement within each class of the reference (rows may repeat).
    """
    from analysis.data.sampling import SampleConfig, sample_index

    cfg = SampleConfig(n=n, seed=seed, imbalance=imbalance)
    cand = np.setdiff1d(pool_rows, ref_rows)
    if len(cand):
        idx, _ = sample_index(labels[cand], n_classes, cfg)
        if len(idx) >= n:
            return cand[idx], "disjoint"
    want = np.bincount(labels[ref_rows][sample_index(labels[ref_rows], n_classes, cfg)[0]], minlength=n_classes)
    rng = np.random.default_rng(seed)
    rows = [rng.choice(ref_rows[labels[ref_rows] == c], size=int(want[c]), replace=True) for c in range(n_classes)]
    return np.sort(np.concatenate(rows)), "bootstrap"


def robustness(
    repro: ReproConfig, model: str, task: str, ref: dict, cache: DiskCache, log: Callable[[str], None] = print
) -> list[dict]:
    """Claim 3's records of (model, task) against ``ref``, its "curves" record (see the module doc)."""
    from analysis.data.sampling import SampleConfig, sample_index
    from analysis.data.tasks import TaskConfig, load_task
    from analysis.pipeline import get_states
    from analysis.reproduce.runs import acfg

    data = load_task(TaskConfig(task))
    C = len(data.label_names)
    ref_rows = sample_index(data.labels, C, SampleConfig(n=repro.analysis_n, seed=0))[0]
    pool_rows = sample_index(data.labels, C, SampleConfig(n=POOL_FACTOR * repro.analysis_n, seed=0))[0]
    log(f"[{model}/{task}] claim 3: states of {len(pool_rows)} training texts (the reference's and a disjoint pool)")
    pool = get_states(acfg(repro, model, task, POOL_FACTOR * repro.analysis_n, 0), cache=cache, progress=_eta(log))
    if len(pool.labels) != len(pool_rows):
        raise RuntimeError("the states of the claim-3 pool do not match its rows")  # a sampling change
    if np.isin(ref_rows, pool_rows).all():  # seed 0's per-class permutations: the reference lies inside the pool
        pos = np.searchsorted(pool_rows, ref_rows)
        ref_states, ref_labels = pool.states[:, pos], pool.labels[pos]
    else:
        refst = get_states(acfg(repro, model, task, repro.analysis_n, 0), cache=cache)
        ref_states, ref_labels = refst.states, refst.labels
    subsets: list[tuple[str, float | str, int, tuple[float, ...] | None]] = [
        ("fraction", f, max(4 * C, int(round(repro.analysis_n * f))), None) for f in repro.fractions
    ]
    if C == 2:
        subsets += [("imbalance", f"1:{r}", repro.analysis_n, (1.0, float(r))) for r in repro.imbalances]
    out = []
    for kind, value, n, imb in subsets:
        draws, sources = [], set()
        for seed in range(1, repro.draws + 1):
            rows, source = draw_rows(data.labels, C, ref_rows, pool_rows, n, seed, imb)
            states, labels, base = (
                (pool.states, pool.labels, pool_rows) if source == "disjoint" else (ref_states, ref_labels, ref_rows)
            )
            pos = np.searchsorted(base, rows)
            draws.append(_draw(states[:, pos], labels[pos], ref, seed, int(np.isin(rows, ref_rows).sum())))
            sources.add(source)
        out.append({"model": model, "task": task, "kind": kind, "value": value, "n": draws[0]["n"],
                    "source": "/".join(sorted(sources)), **spread(draws), "draws": draws})  # fmt: skip
    return out


def _eta(log: Callable[[str], None]) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` that logs about every tenth of the texts with the time left at the rate so far."""
    import time

    start, last = time.time(), [0.0]

    def progress(done: int, total: int) -> None:
        if total > 0 and (done / total - last[0] >= 0.1 or done == total):
            last[0] = done / total
            rate = done / max(time.time() - start, 1e-9)
            log(f"  {done} of {total} texts embedded, about {(total - done) / rate:.0f} s left")

    return progress


def _draw(states: np.ndarray, labels: np.ndarray, ref: dict, seed: int, shared: int) -> dict:
    """One draw's record: its ν curve, Spearman against the reference curve, ℓ* and whether it moved."""
    from scipy.stats import spearmanr

    from analysis.recommend import recommend_layer
    from analysis.variability import variability_curve

    nu = variability_curve(states, labels).variability
    b = recommend_layer(nu)
    rho = float(spearmanr(nu, ref["variability"]).statistic)
    return {"seed": seed, "n": int(len(labels)), "shared_with_reference": int(shared), "spearman": rho,
            "best_layer": b, "moved": b != ref["best_layer"], "variability": [float(x) for x in nu]}  # fmt: skip


def spread(draws: list[dict]) -> dict:
    """Mean, sd, min and max of the draws' Spearman; how often ℓ* moved; the ℓ* seen."""
    rho = [d["spearman"] for d in draws]
    return {
        "spearman_mean": statistics.mean(rho),
        "spearman_sd": statistics.stdev(rho) if len(rho) > 1 else 0.0,
        "spearman_min": min(rho),
        "spearman_max": max(rho),
        "moved": sum(d["moved"] for d in draws),
        "best_layers": sorted({d["best_layer"] for d in draws}),
    }


def _baseline(x: dict) -> bool:
    """Draws at the reference's own size and balance (fraction 1, imbalance 1:1, which is the same draw on a
    balanced two-class task): they measure the reference's noise, not scarcity or imbalance."""
    if x["kind"] == "fraction":
        return float(x["value"]) == 1.0
    return x["kind"] == "imbalance" and str(x["value"]) == "1:1"


def _counted(x: dict) -> bool:
    return not _baseline(x)


def claim3_tasks(rob: list[dict]) -> list[dict]:
    """One record per (model, task): mean Spearman and ℓ* moves over its counted draws, and its word.

    Records without draws (one draw nested in the reference, from an older run) are not counted:
    their task's word is "nested".
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for x in rob:
        by.setdefault((x["model"], x["task"]), []).append(x)
    out = []
    for (model, task), xs in by.items():
        draws = [d for x in xs if "draws" in x and _counted(x) for d in x["draws"]]
        if not draws:
            out.append({"model": model, "task": task, "draws": 0, "testable": 0, "word": "nested"})
            continue
        s = spread(draws)
        ok = s["spearman_mean"] >= SPEARMAN_MIN and s["moved"] <= len(draws) / 3
        base = [d for x in xs if "draws" in x and _baseline(x) for d in x["draws"]]
        out.append({"model": model, "task": task, "draws": len(draws), "testable": 1, **s,
                    "baseline_draws": len(base), "baseline_moved": sum(d["moved"] for d in base),
                    "word": task_word(int(ok), int(not ok), 1)})  # fmt: skip
    return out


def claim3_verdict(rob: list[dict], tasks: list[dict]) -> str:
    """Claim 3's line: the word over tasks, then scarcity and imbalance spreads over the counted draws."""
    if not rob:
        return "inconclusive: no robustness curves"
    test = [t for t in tasks if t["testable"]]
    hold = sum(t["word"] == "holds" for t in test)
    word = claim_word(hold, len(test) - hold, len(test))
    line = f"{word}: holds on {hold} of {len(test)} tasks (mean Spearman over the task's draws ≥ {SPEARMAN_MIN:g} "
    line += "and ℓ* moved in at most a third of them)"
    fails = [t for t in test if t["word"] == "fails"]
    if fails:
        line += f", fails on {len(fails)}: " + ", ".join(
            f"{t['model']}/{t['task']} (Spearman {t['spearman_mean']:.2f}, ℓ* moved in {t['moved']} of {t['draws']}"
            + (
                f"; in {t['baseline_moved']} of {t['baseline_draws']} same-size draws already"
                if t.get("baseline_draws")
                else ""
            )
            + ")"
            for t in fails
        )
    for kind, name in (("fraction", "scarcity"), ("imbalance", "imbalance")):
        draws = [d for x in rob if x["kind"] == kind and "draws" in x and _counted(x) for d in x["draws"]]
        if draws:
            s = spread(draws)
            line += (
                f"; {name}: Spearman {s['spearman_mean']:.2f} on average ({s['spearman_min']:.2f}–"
                f"{s['spearman_max']:.2f} over {len(draws)} draws), ℓ* moved in {s['moved']}"
            )
    nested = [f"{t['model']}/{t['task']}" for t in tasks if t["word"] == "nested"]
    if nested:
        line += f"; not counted (single draws nested in the reference, from an older run): {', '.join(nested)}"
    return line
