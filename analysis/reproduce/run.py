"""``python -m analysis reproduce``: test the paper's four claims on offline data.

1. tuning the k layers ending at the low-ν layer ℓ* beats tuning the top k layers;
2. it often matches full fine-tuning;
3. ν is robust to data scarcity and class imbalance;
4. it cuts computation.

Beside each ν curve, the layer cards of the same states (:mod:`analysis.cards.scores`) ask
whether ℓ* is the layer a linear probe would pick ("cards" records; :func:`add_cards`
adds them to an older results dict without re-running anything else).

ℓ* comes from training texts only. Every strategy gets the same budget, batch size and
seeds; its learning rate is the best of ``lr_grid`` on a validation split of the training
texts (:mod:`analysis.reproduce.runs`), or ``lr`` without a grid. Finished runs are cached
on disk (kind "runs"), so an interrupted run resumes. A results dict holds one "parts"
entry per invocation (its settings, time and command) and the records of all of them;
:func:`merge` adds a new invocation's records to an older file, replacing its models'.
The statistics and verdicts are in :mod:`analysis.reproduce.verdicts`; ``write_doc``
(:mod:`analysis.reproduce.report`) renders docs/reproduction.md from the JSON alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace

from analysis.reproduce.config import GEMMA, QUICK, ReproConfig, config_from_settings, part_pairs
from analysis.reproduce.remaining import remaining, remaining_line
from analysis.reproduce.robustness import robustness
from analysis.reproduce.runs import REPRO_VERSION, acfg, selections, training_runs
from analysis.reproduce.verdicts import cards_verdict, rank_p, summarize, verdicts
from analysis.store.cache import DiskCache
from analysis.store.jsonio import numbers_back

RESULTS_VERSION = 3
__all__ = [
    "GEMMA",
    "QUICK",
    "REPRO_VERSION",
    "ReproConfig",
    "add_cards",
    "add_robustness",
    "config_from_settings",
    "finish",
    "merge",
    "migrate",
    "part_pairs",
    "run",
    "with_records_of",
]


# ------------------------------------------------------------------ the experiments
def run(
    repro: ReproConfig,
    *,
    cache: DiskCache | None = None,
    log: Callable[[str], None] = print,
    save: Callable[[dict], object] | None = None,
    cached_only: bool = False,
) -> dict:
    """Run every experiment (resuming from cached runs) and return the results dict (one part).

    ``save(results)`` sees the results so far after the training runs of each (model, task) and
    after its robustness curves, so an interrupted run leaves what it finished. ``cached_only``:
    train nothing and keep the runs found in the cache (the curves and cards are still computed,
    the robustness curves are not, so the part is marked incomplete: it replaces its pairs' claim-3 records).
    """
    from analysis.models.load import describe, resolve_model
    from analysis.training.prefix import keep_states

    cache = cache or DiskCache()
    settings = {
        **asdict(repro),
        "models": sorted({m for m, _ in repro.pairs()}),
        "tasks": list(dict.fromkeys(t for _, t in repro.pairs())),
    }
    started = time.time()
    out: dict = {"curves": [], "cards": [], "runs": [], "robustness": [], "lr_search": []}
    missing = 0
    for model, task in repro.pairs():
        n_layers = describe(resolve_model(model, cache_dir=cache.root))["layers"]
        curve = _curve(repro, model, task, cache)
        out["curves"].append(curve)
        log(f"[{model}/{task}] ν curve over {curve['n']} texts: ℓ* = {curve['best_layer']} of {n_layers}")
        out["cards"].append(_cards(repro, model, task, cache, log))
        if not cached_only:
            rem = remaining(repro, model, task, n_layers, curve["variability"], cache)
            log(remaining_line(rem, repro, model, task, cache))
        with keep_states():  # a (model, task)'s runs share their frozen-prefix passes (analysis/training/prefix.py)
            runs, search = training_runs(  # claims 1, 2, 4
                repro, model, task, n_layers, curve["variability"], cache, log, cached_only=cached_only
            )
        expected = len(selections(repro, model, n_layers, curve["variability"])) * len(repro.seeds)
        missing += expected - len(runs)
        out["runs"] += runs
        out["lr_search"] += search
        if save is not None:
            save(_with_part(out, settings, time.time() - started, done=False))
        if not cached_only:  # claim 3 (its states may not be cached yet)
            out["robustness"] += robustness(repro, model, task, curve, cache, log)
        if save is not None:
            save(_with_part(out, settings, time.time() - started, done=False))
    if missing:
        log(f"{missing} training runs are not in the cache (left out)")
    return _with_part(out, settings, time.time() - started, done=not missing and not cached_only)


def _with_part(records: dict, settings: dict, seconds: float, *, done: bool) -> dict:
    # the pairs this part holds records of so far: a save after the first task must not take over (and so drop
    # from an older file) the records of tasks it has not run yet
    pairs = [[c["model"], c["task"]] for c in records["curves"]]
    part = {"models": settings["models"], "pairs": pairs, "settings": settings, "seconds": seconds, "complete": done}
    return finish({"version": RESULTS_VERSION, "parts": [part], **{k: list(v) for k, v in records.items()}})


def finish(res: dict) -> dict:
    """``res`` with its "summary", "verdicts" and "seconds" (the parts' total) recomputed from its records."""
    for c in res.get("cards", []):
        if "not_computed" not in c:  # what the probe gains at its best layer over ℓ* (the report shows it)
            acc = c["probe_accuracy"]
            c["probe_gain"] = acc[c["probe_best_layer"]] - acc[c["recommended_layer"]]
            c["rank_p"] = rank_p(c)  # the Spearman's two-sided p over the card's layers
    mark_edges(res.get("lr_search", []))
    res["summary"] = summarize(res)
    res["verdicts"] = verdicts(res)
    res["seconds"] = sum(p.get("seconds") or 0.0 for p in res["parts"])
    return res


def mark_edges(search: list[dict]) -> None:
    """Mark each chosen "lr_search" record with ``at_edge``: its rate is the smallest or largest its search tried."""
    from analysis.reproduce.runs import edge_step

    groups: dict[tuple, list[dict]] = {}
    for r in search:
        groups.setdefault((r["model"], r["task"], r["strategy"], r["k"]), []).append(r)
    for rs in groups.values():
        for r in rs:
            if r.get("chosen"):
                r["at_edge"] = edge_step(sorted(x["lr"] for x in rs), r["lr"]) is not None


#: Scalar number fields of the records (a ``null`` there was a number that was not finite).
NUMBER_FIELDS = frozenset(
    ("metric_value", "val_metric", "final_loss", "spearman", "value", "lr", "mean", "sd", "probe_gain")
    + ("flops_vs_full", "flops_per_example", "seconds", "train_seconds", "steps_per_second")
    + ("accuracy", "f1", "mcc", "loss", "eval_loss", "macro_f1")
)


def revive(res: dict) -> dict:
    """A results dict as read from JSON, with NaN back where a number was not finite (written as ``null``)."""
    return numbers_back(res, NUMBER_FIELDS)


def migrate(res: dict) -> dict:
    """A results dict of an older version (one "settings") in the current form: one part, same records."""
    if "parts" in res:
        return res
    s = res["settings"]
    part = {"models": list(s["models"]), "settings": s, "seconds": res.get("seconds"), "complete": True}
    if res.get("command"):
        part["command"] = res["command"]
    out: dict = {"version": RESULTS_VERSION, "parts": [part]}
    for k in ("curves", "cards", "runs", "robustness", "lr_search"):
        out[k] = list(res.get(k, []))
    for r in out["runs"]:
        r.setdefault("lr", s["lr"])
    return finish(out)


def merge(old: dict, new: dict) -> dict:
    """``old``'s records of the (model, task) pairs that ``new`` does not cover, then ``new``'s.

    Per pair, so a grid run one task at a time keeps the tasks it finished before; an old part
    keeps the pairs that nothing replaced (its "pairs" says which), or goes when none are left.
    """
    old, new = migrate(old), migrate(new)
    ours = {pair for p in new["parts"] for pair in part_pairs(p, new)}
    parts = []
    for p in old["parts"]:
        rest = [pair for pair in part_pairs(p, old) if pair not in ours]
        if rest:
            models = list(dict.fromkeys(m for m, _ in rest))
            parts.append({**p, "models": models, "pairs": [list(x) for x in rest]})
    out: dict = {"version": RESULTS_VERSION, "parts": parts + new["parts"]}
    for k in ("curves", "cards", "runs", "robustness", "lr_search"):
        out[k] = [x for x in old.get(k, []) if (x["model"], x["task"]) not in ours] + list(new.get(k, []))
    return finish(out)


def settings_for(res: dict, model: str, task: str | None = None) -> dict:
    """The settings of the part that holds ``model``'s records (on ``task``, when given)."""
    res = migrate(res)
    return next(
        p["settings"] for p in res["parts"] if any(m == model and task in (None, t) for m, t in part_pairs(p, res))
    )


def _curve(repro: ReproConfig, model: str, task: str, cache: DiskCache) -> dict:
    """The ν curve of (model, task) on ``repro.analysis_n`` texts, as the results' "curves" record."""
    from analysis.pipeline import compute_curve
    from analysis.recommend import recommend_layer

    curve, states = compute_curve(acfg(repro, model, task, repro.analysis_n, 0), cache=cache, bootstrap=repro.bootstrap)
    return {
        "model": model,
        "task": task,
        "layers": curve.layers,
        "variability": curve.variability,
        "band": curve.to_dict()["band"],
        "best_layer": recommend_layer(curve.variability),
        "n": len(states.labels),
        "counts": curve.counts,
    }


def _cards(repro: ReproConfig, model: str, task: str, cache: DiskCache, log: Callable[[str], None]) -> dict:
    """The "cards" record of (model, task): the layer cards of the curve's states (same config, so cached)."""
    from analysis.cards.compute import compute_cards
    from analysis.cards.scores import CardsConfig

    cards_cfg = CardsConfig()
    cards, states = compute_cards(acfg(repro, model, task, repro.analysis_n, 0), cards_cfg, cache=cache)
    rec = {
        "model": model,
        "task": task,
        "n": int(len(states.labels)),
        "layers": cards.layers,
        "variability": cards.variability,
        "probe_accuracy": cards.probe_accuracy,
        "knn_accuracy": cards.knn_accuracy,
        "rank_agreement": cards.rank_agreement,
        "recommended_layer": cards.recommended_layer,
        "probe_best_layer": cards.probe_best_layer,
        "same_layer": cards.recommended_layer == cards.probe_best_layer,
        "probe": {k: getattr(cards_cfg, k) for k in ("folds", "k", "seed", "max_iter", "C", "tol")},
        "probe_converged": cards.probe_converged,  # [layer][fold]: whether each fit met its tolerance
    }
    rho = "undefined" if rec["rank_agreement"] is None else f"{rec['rank_agreement']:.2f}"
    log(
        f"[{model}/{task}] cards: ℓ* = {rec['recommended_layer']}, probe's best layer = {rec['probe_best_layer']}, "
        f"Spearman(−ν, probe accuracy) = {rho}"
    )
    return rec


def add_cards(
    res: dict,
    *,
    cache: DiskCache | None = None,
    log: Callable[[str], None] = print,
    save: Callable[[dict], object] | None = None,
    device: str | None = None,
) -> dict:
    """Add the missing "cards" records of ``res``'s curves (with its stored settings) and their verdict.

    Records already there are kept; a model that is not installed gets ``{"not_computed": ...}``
    (tried again next time). Trains nothing. ``save(res)`` is called after each new record, so an
    interrupted run keeps what it did (the cards are also in the disk cache); ``device`` overrides the
    stored one (it does not change the states' cache key). Each model uses the settings of its part.
    Returns ``res``, changed in place.
    """
    from analysis.models.registry import REGISTRY, is_installed

    cache = cache or DiskCache()

    def config(model: str, task: str) -> ReproConfig:
        repro = config_from_settings(settings_for(res, model, task))
        return repro if device is None else replace(repro, device=device)

    have = {(c["model"], c["task"]): c for c in res.get("cards", []) if "not_computed" not in c}
    cards = []
    for c in res["curves"]:
        model, task = c["model"], c["task"]
        rec = have.get((model, task))
        if rec is None and model in REGISTRY and not is_installed(REGISTRY[model]):
            log(f"[{model}/{task}] cards not computed: {model} is not installed")
            rec = {"model": model, "task": task, "not_computed": "model not installed"}
        elif rec is None:
            rec = _cards(config(model, task), model, task, cache, log)
            if rec["n"] != c["n"] or rec["recommended_layer"] != c["best_layer"]:
                log(f"[{model}/{task}] warning: the cards' states differ from the curve's (n or ℓ*)")
        cards.append(rec)
        if save is not None and rec is not have.get((model, task)):
            done = {(x["model"], x["task"]) for x in cards}
            rest = [x for x in res.get("cards", []) if (x["model"], x["task"]) not in done]
            save({**res, "cards": cards + rest, "verdicts": {**res["verdicts"], "cards": cards_verdict(cards + rest)}})
    res["cards"] = cards
    res["verdicts"]["cards"] = cards_verdict(cards)
    return res


def add_robustness(
    res: dict,
    *,
    cache: DiskCache | None = None,
    log: Callable[[str], None] = print,
    save: Callable[[dict, list[tuple[str, str]]], None] | None = None,
    models: tuple[str, ...] | None = None,
) -> dict:
    """Replace the claim-3 records of ``res``'s curves (of ``models``; None: all) by independent draws.

    Each model uses the settings of its part (trains nothing). ``save(res, done)`` sees the results
    (verdicts recomputed) and the (model, task) pairs redone so far after each of them, so an
    interrupted run keeps what it did. Returns the finished results dict.
    """
    cache = cache or DiskCache()
    done: list[tuple[str, str]] = []
    for c in res["curves"]:
        model, task = c["model"], c["task"]
        if models is not None and model not in models:
            continue
        repro = config_from_settings(settings_for(res, model, task))
        new = robustness(repro, model, task, c, cache, log)
        rest = [x for x in res["robustness"] if (x["model"], x["task"]) != (model, task)]
        res = finish({**res, "robustness": rest + new})
        log(f"[{model}/{task}] claim 3: " + ", ".join(f"{x['value']}: {x['spearman_mean']:.2f}" for x in new))
        done.append((model, task))
        if save is not None:
            save(res, list(done))
    return res


def with_records_of(now: dict, res: dict, kind: str, pairs: list[tuple[str, str]]) -> tuple[dict, list]:
    """(``now``, the file as it is now, with the ``kind`` records ("robustness", "cards") of ``pairs`` taken from
    ``res``, verdicts recomputed; the pairs left as they are in ``now``). What another process wrote to the file
    meanwhile (its runs, its parts) is kept; so are its records of a pair whose ν curve it has since replaced (the
    records of ``res`` belong to the older curve)."""

    def curve(r: dict, pair: tuple) -> tuple | None:
        c = next((c for c in r.get("curves", []) if (c["model"], c["task"]) == pair), None)
        return None if c is None else (c.get("n"), c.get("best_layer"), c.get("variability"))

    stale = [p for p in dict.fromkeys(map(tuple, pairs)) if curve(now, p) != curve(res, p)]
    mine = set(map(tuple, pairs)) - set(stale)
    keep = [x for x in now.get(kind, []) if (x["model"], x["task"]) not in mine]
    return finish({**now, kind: keep + [x for x in res.get(kind, []) if (x["model"], x["task"]) in mine]}), stale
