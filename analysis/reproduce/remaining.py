"""What a (model, task) of the grid still has to train, and how long that takes, once ℓ* is known.

The plan's estimate (:func:`analysis.reproduce.runs.plan_estimate`) comes before any curve, so it
counts every run, cached or not, and each variability run with every layer kept. This one comes
after the task's ν curve: it builds the grid's exact run configurations, leaves out those in the
runs cache, and costs the rest with the one estimator (:func:`analysis.training.estimate.estimate_configs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.reproduce.config import ReproConfig
from analysis.reproduce.runs import (
    choose_lr,
    edge_step,
    final_config,
    is_cached,
    run_keys,
    selections,
    trial_config,
    validation_folder,
)
from analysis.store.cache import DiskCache


@dataclass(frozen=True)
class Remaining:
    """The runs of a (model, task) still to train.

    configs : their TrainConfigs, one per run (a final run whose rate is not chosen yet is costed at the default
    rate: the rate does not change its time); cached : runs found in the cache (a run shared by two strategies
    is counted per strategy); open_searches : learning-rate searches not finished, which may each still add
    validation runs past an edge of their grid (the next one is counted when it is known).
    """

    configs: tuple
    cached: int
    open_searches: int


def remaining(repro: ReproConfig, model: str, task: str, n_layers: int, nu: list[float], cache: DiskCache) -> Remaining:
    """The grid's runs of (model, task) not in ``cache``: each search's validation runs, then its final runs."""
    todo: dict[str, object] = {}  # by run key: a variability selection equal to the top-k one is the same run
    cached = unknown = 0
    folder, _, n_val = validation_folder(repro, model, task, cache) if repro.lr_grid else (None, 0, 0)
    for strategy, k, sel in selections(repro, model, n_layers, nu):
        lr: float | None = repro.lr
        if repro.lr_grid:
            trials = [trial_config(repro, model, folder, n_val, sel, strategy, x) for x in sorted(set(repro.lr_grid))]
            missing = [c for c in trials if not is_cached(c, cache)]
            cached += len(trials) - len(missing)
            lr = None
            if not missing:  # the grid is done: the cached search says its rate, or the extension it runs next
                lr, nxt, extended = _next_of_search(repro, model, task, strategy, k, sel, cache, len(trials))
                cached += extended
                if nxt is not None:
                    missing.append(trial_config(repro, model, folder, n_val, sel, strategy, nxt))
            unknown += lr is None
            for c in missing:
                todo.setdefault(run_keys(c, cache)[0], c)
        # a rate not chosen yet: its final runs are costed at the default rate (the rate does not change the time)
        for seed in repro.seeds:
            c = final_config(repro, model, task, strategy, sel, repro.lr if lr is None else lr, seed)
            if lr is not None and is_cached(c, cache):
                cached += 1
            else:
                todo.setdefault(run_keys(c, cache)[0], c)
    return Remaining(tuple(todo.values()), cached, unknown)


def _next_of_search(repro, model, task, strategy, k, sel, cache, n_grid) -> tuple[float | None, float | None, int]:
    """(the chosen rate, None while the search goes on; the next rate it tries past an edge, None if none; its
    extension runs found in the cache) of a search whose grid is all cached."""
    chosen = choose_lr(repro, model, task, strategy, k, sel, cache, lambda s: None, cached_only=True)
    if chosen is None:  # cannot happen with every rate of the grid cached; counted as a search still open
        return None, None, 0
    best, tried = chosen[0], sorted(r["lr"] for r in chosen[1])
    nxt = edge_step(tried, best) if len(tried) - n_grid < repro.lr_extend else None
    return (best if nxt is None else None), nxt, len(tried) - n_grid


def remaining_line(rem: Remaining, repro: ReproConfig, model: str, task: str, cache: DiskCache) -> str:
    """One line: how many runs are left, how many were found in the cache, and their estimated time."""
    from analysis.pipeline import prepare_sample
    from analysis.reproduce.runs import acfg
    from analysis.training.estimate import combine, estimate_configs

    found = f"{rem.cached} found in the cache"
    if not rem.configs:
        return f"[{model}/{task}] training: every run is in the cache ({found})"
    data = prepare_sample(acfg(repro, model, task, repro.n_train, repro.seeds[0]))
    parts = estimate_configs(list(rem.configs), data.texts, len(data.label_names), cache_root=cache.root)
    est = combine(parts, parts[0].how)
    more = (
        f"; {rem.open_searches} learning-rate search(es) not finished may add runs past the edge of their grid"
        if rem.open_searches
        else ""
    )
    return f"[{model}/{task}] training: {len(rem.configs)} runs left ({found}), {est.text()}{more}"
