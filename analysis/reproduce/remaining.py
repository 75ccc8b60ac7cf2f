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
    final_config,
    is_cached,
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
    from analysis.reproduce.runs import edge_step, run_keys

    todo: dict[str, object] = {}  # by run key: a variability selection equal to the top-k one is the same run
    cached = unknown = 0
    quiet = lambda s: None  # noqa: E731
    for strategy, k, sel in selections(repro, model, n_layers, nu):
        lr: float | None = repro.lr
        if repro.lr_grid:
            folder, _, n_val = validation_folder(repro, model, task, cache)
            trials = [trial_config(repro, model, folder, n_val, sel, strategy, x) for x in sorted(set(repro.lr_grid))]
            missing = [c for c in trials if not is_cached(c, cache)]
            lr = None
            if not missing:  # the grid is done: the cached search says its rate, or the extension it runs next
                chosen = choose_lr(repro, model, task, strategy, k, sel, cache, quiet, cached_only=True)
                assert chosen is not None  # every rate of the grid is cached
                best, tried = chosen[0], sorted(r["lr"] for r in chosen[1])
                nxt = edge_step(tried, best) if len(tried) - len(trials) < repro.lr_extend else None
                if nxt is None:
                    lr = best
                else:
                    missing.append(trial_config(repro, model, folder, n_val, sel, strategy, nxt))
                cached += len(tried)
            unknown += lr is None
            for c in missing:
                todo.setdefault(run_keys(c, cache)[0], c)
        for seed in repro.seeds:  # a rate not chosen yet: costed at any rate (the rate does not change the time)
            c = final_config(repro, model, task, strategy, sel, repro.lr if lr is None else lr, seed)
            if lr is not None and is_cached(c, cache):
                cached += 1
            else:
                todo.setdefault(run_keys(c, cache)[0], c)
    return Remaining(tuple(todo.values()), cached, unknown)


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
