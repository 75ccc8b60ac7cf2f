"""The sweep: for each layer ℓ, the variability-style selection at ℓ trained over seeds, then the selectors scored.

Pairing: every run shares the training texts, the held-out texts and (for one training seed) the batch
order; a seed varies the training alone (``TrainConfig.seed``), never the data sample. The learning rate
of a layer is the grid's best on a validation split of the training texts (seed 0); the final runs then
train on the whole training sample. Each finished (layer, seed, lr) run is cached, so a sweep resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, fields, replace

import numpy as np

from analysis.pipeline import AnalysisConfig
from analysis.store.cache import DiskCache, make_key
from analysis.sweep.config import SweepConfig
from analysis.sweep.stats import oracle_layer, spearman, tied_layers
from analysis.sweep.timing import SweepProgress
from analysis.training.config import TrainConfig
from analysis.training.estimate import Estimate
from analysis.training.selection import Selection

RUN_VERSION = 2  # 2: frozen blocks run in eval mode (no dropout), as training does since the prefix cache
# A whole record's own version, apart from its runs': a record made before is summarised again from the cached
# runs and selector inputs, never retrained. 2: each selector's per-layer scores (``scores``).
RECORD_VERSION = 4  # 3: the tied set by the reproduction's interval rules; train_args in every record; 4: their wording
Say = Callable[[str], None]


def plural(n: int, word: str) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_config(cfg: AnalysisConfig, sc: SweepConfig, layer: int, seed: int, lr: float, search: bool) -> TrainConfig:
    """The TrainConfig of one run: classifier on ``layer``, the k blocks ending there tuned."""
    tuned = tuple(range(max(1, layer - sc.k + 1), layer + 1))
    return TrainConfig(
        cfg,
        Selection(layer, tuned),
        steps=sc.lr_steps if search else sc.steps,
        lr=lr,
        batch_size=sc.batch_size,
        eval_n=sc.eval_n,
        seed=seed,
        strategy="variability",
        validation=search,
    )


class SweepStopped(Exception):
    """Stop was asked for: the run in flight ended early and was not cached; the finished ones were."""


def run_key(tc: TrainConfig) -> str:
    """The cache key of one run's result.

    Training never reads the representation (only the selectors' states do), so every representation
    shares one key, the one "raw" always had: runs cached under "final-norm" before are trained again once.
    """
    tc = replace(tc, analysis=replace(tc.analysis, representation="raw"))
    return make_key({"what": "sweep-run", "version": RUN_VERSION, **asdict(tc)})


def cached_run(tc: TrainConfig, cache: DiskCache) -> dict | None:
    """The result of run ``tc`` from the cache (None: not trained yet)."""
    hit = cache.load("runs", run_key(tc), version=RUN_VERSION)
    return None if hit is None else hit[1]["run"]


def one_run(
    tc: TrainConfig,
    cache: DiskCache,
    use_cache: bool = True,
    *,
    should_stop: Callable[[], bool] | None = None,
    loader: Callable | None = None,
) -> dict:
    """{metric, value, loss, n_eval, steps_per_second} of one run: from the cache, or trained and stored.

    ``should_stop()`` turning true ends the run within one step (its evaluation skipped) and raises
    :class:`SweepStopped`; a stopped run is never cached.
    """
    from analysis.training.monitor import RunMonitor
    from analysis.training.run import train

    if use_cache and (hit := cached_run(tc, cache)) is not None:
        return hit
    if should_stop is not None and should_stop():
        raise SweepStopped
    # the run's monitor counts as abandoned once the sweep is stopped: it stops within a step, skipping eval
    monitor = RunMonitor(alive=None if should_stop is None else lambda: not should_stop())
    r = train(tc, monitor, loader=loader, cache=cache).result
    if r.stopped:
        raise SweepStopped
    loss = r.history[-1]["loss"] if r.history else None
    out = {
        "metric": r.metric,
        "value": float(r.eval[r.metric]),
        "loss": loss,
        "n_eval": int(r.eval_examples or r.n_eval),
        "steps_per_second": r.steps_per_second,
    }
    if use_cache:
        key = run_key(tc)
        with cache.lock("runs", key):
            cache.save("runs", key, {}, blobs={"run": out}, version=RUN_VERSION, config={"label": tc.label()})
    return out


def best_lr(scores: list[tuple[float, float]]) -> float:
    """The learning rate of the best (validation metric, lr) pair; a tie goes to the smaller rate."""
    return max(scores, key=lambda s: (s[0], -s[1]))[1]


def _lr_for(cfg, sc, layer, run) -> float:
    if len(sc.lr_grid) == 1:
        return sc.lr_grid[0]
    return best_lr([(run(run_config(cfg, sc, layer, 0, lr, True), sc.lr_steps)["value"], lr) for lr in sc.lr_grid])


def pending_runs(
    cfg: AnalysisConfig, sc: SweepConfig, cache: DiskCache, use_cache: bool = True
) -> tuple[list[TrainConfig], list[TrainConfig]]:
    """(search runs, final runs) of the sweep not in the cache yet.

    A layer's final runs are looked up once its whole learning-rate search is cached (their rate is
    known then); before that they all count as still to train.
    """
    search, finals = [], []
    for layer in sc.layers:
        grid = [run_config(cfg, sc, layer, 0, lr, True) for lr in sc.lr_grid] if len(sc.lr_grid) > 1 else []
        hits = [cached_run(tc, cache) if use_cache else None for tc in grid]
        search += [tc for tc, hit in zip(grid, hits, strict=True) if hit is None]
        done = [(hit["value"], tc.lr) for tc, hit in zip(grid, hits, strict=True) if hit is not None]
        lr = sc.lr_grid[0] if not grid else best_lr(done) if len(done) == len(grid) else None
        for seed in sc.seeds:
            tc = run_config(cfg, sc, layer, seed, sc.lr_grid[0] if lr is None else lr, False)
            if lr is None or not use_cache or cached_run(tc, cache) is None:
                finals.append(tc)
    return search, finals


def record_key(cfg: AnalysisConfig, sc: SweepConfig, cache_root=None) -> str:
    """The cache key of a whole sweep's record: every field of ``cfg`` that decides the states, and ``sc``."""
    from analysis.pipeline import concrete

    cfg = concrete(cfg, cache_root=cache_root)  # "auto" finds the record of what it resolves to
    conf = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata.get("cache_key", True)}
    conf.update(task=asdict(cfg.task), sampling=asdict(cfg.sampling))
    body = {"what": "sweep-record", "version": RUN_VERSION, "config": conf, "sweep": asdict(sc)}
    return make_key({**body, "record": RECORD_VERSION})


def cached_record(cfg: AnalysisConfig, sc: SweepConfig, cache: DiskCache | None = None) -> dict | None:
    """The record of a finished sweep of ``cfg`` with ``sc`` from the cache (None: never finished)."""
    cache = cache or DiskCache()
    hit = cache.load("sweeps", record_key(cfg, sc, cache.root), version=RUN_VERSION)
    return None if hit is None else hit[1]["record"]


def save_record(cfg: AnalysisConfig, sc: SweepConfig, record: dict, cache: DiskCache) -> None:
    key = record_key(cfg, sc, cache.root)
    with cache.lock("sweeps", key):
        cache.save("sweeps", key, {}, blobs={"record": record}, version=RUN_VERSION, config={"model": cfg.model})


def run_sweep(
    cfg: AnalysisConfig,
    sc: SweepConfig,
    *,
    cache: DiskCache | None = None,
    use_cache: bool = True,
    say: Say = print,
    selector_table: Callable[[], dict[str, tuple[dict, list[float]]]] | None = None,
    progress: Callable[[int, int, float, float | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loader: Callable | None = None,
    estimate: Callable[[list[TrainConfig], list[TrainConfig]], Estimate | None] | None = None,
    on_estimate: Callable[[Estimate], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Train every layer of ``sc`` for every seed and compare the selectors with the result.

    ``selector_table()`` gives representation → (name → per-layer score (L+1,) or None, ν (L+1,)), with
    ``cfg.representation`` among them; see :func:`analysis.sweep.selectors.selector_inputs_by_representation`.
    Before the first run, ``estimate(search runs, final runs still to train)`` (default
    :func:`analysis.sweep.timing.estimate_sweep`) is said and handed to ``on_estimate``. ``progress(done steps,
    total steps, seconds, seconds left or None)`` after every run (:class:`~analysis.sweep.timing.SweepProgress`:
    the time left from trained steps only; ``clock`` gives its seconds); ``should_stop()`` ends the sweep
    (:class:`SweepStopped`), keeping the finished runs cached. Returns the sweep's JSON record, cached whole
    when ``use_cache`` (:func:`cached_record`).
    """
    from analysis.pipeline import concrete

    cache = cache or DiskCache()
    cfg = concrete(cfg, cache_root=cache.root)  # "auto" named as what it is for this model, in the record and key
    if should_stop is not None and should_stop():
        raise SweepStopped
    per_layer = (
        f"{plural(len(sc.lr_grid), 'learning rate')} + {plural(len(sc.seeds), 'seed')}"
        if len(sc.lr_grid) > 1
        else f"{plural(len(sc.seeds), 'seed')} at lr {sc.lr_grid[0]:g}"
    )
    say(f"sweep: {len(sc.layers)} layers × ({per_layer}): {sc.runs} runs, {sc.total_steps} training steps")
    est, to_train = _estimate(cfg, sc, cache, use_cache, say, estimate, loader)
    if est is not None and on_estimate is not None:
        on_estimate(est)
    per_step = est.seconds / est.steps if est is not None and est.steps else None
    ticker = SweepProgress(sc.total_steps, say, progress, clock=clock, per_step=per_step, to_train=to_train)

    def run(tc: TrainConfig, steps: int) -> dict:
        if use_cache and (hit := cached_run(tc, cache)) is not None:
            ticker.tick(steps, None)  # less work left, no news about the rate
            return hit
        start = clock()
        out = one_run(tc, cache, use_cache, should_stop=should_stop, loader=loader)
        ticker.tick(steps, clock() - start)
        return out

    from analysis.training.prefix import keep_states

    per_seed, lrs, losses, n_eval = {}, [], [], []
    with keep_states():  # one prefix pass per layer's texts, chained from the layer below
        for layer in sc.layers:
            lr = _lr_for(cfg, sc, layer, run)
            runs = [run(run_config(cfg, sc, layer, seed, lr, False), sc.steps) for seed in sc.seeds]
            say(f"layer {layer}: lr {lr:g}, {runs[0]['metric']} " + ", ".join(f"{r['value']:.4f}" for r in runs))
            per_seed[layer] = [r["value"] for r in runs]
            lrs.append(lr)
            losses.append(runs[0]["loss"])
            n_eval.append(runs[0]["n_eval"])
    if selector_table is not None:  # minutes on a large model: say what runs after the last training step
        say("trained every layer; scoring the selectors (pooled states, probes, LogME, one backward pass for RGN)")
    inputs = selector_table() if selector_table else {}
    record = summarise(cfg, sc, per_seed, lrs, losses, min(n_eval), runs[0]["metric"], inputs)
    if use_cache:
        save_record(cfg, sc, record, cache)
    return record


def _estimate(cfg, sc, cache, use_cache, say, estimate, loader) -> tuple[Estimate | None, int]:
    """(the estimate of the runs still to train, said in one line before the first run; their steps)."""
    est, steps, todo = estimate_pending(cfg, sc, cache, use_cache=use_cache, loader=loader, estimate=estimate)
    if not todo:
        say("estimate: every run is in the cache")
        return None, 0
    cached = f", the other {sc.runs - todo} in the cache" if todo < sc.runs else ""
    how = "not known" if est is None else est.text()
    say(f"estimate for the {todo} run{'s' if todo != 1 else ''} to train{cached}: {how}")
    return est, steps


def estimate_pending(
    cfg: AnalysisConfig,
    sc: SweepConfig,
    cache: DiskCache | None = None,
    *,
    use_cache: bool = True,
    loader: Callable | None = None,
    estimate: Callable[[list[TrainConfig], list[TrainConfig]], Estimate | None] | None = None,
) -> tuple[Estimate | None, int, int]:
    """(the estimated time of the sweep's runs not in the cache, or None; their training steps; their number),
    before anything trains: what the CLI prints first and the Layers page shows before Start.
    ``estimate(search runs, final runs)`` replaces :func:`analysis.sweep.timing.estimate_sweep`."""
    from analysis.pipeline import concrete

    cache = cache or DiskCache()
    cfg = concrete(cfg, cache_root=cache.root)
    search, finals = pending_runs(cfg, sc, cache, use_cache)
    todo = len(search) + len(finals)
    steps = sum(tc.steps or 0 for tc in (*search, *finals))
    if not todo:
        return None, 0, 0
    if estimate is None:
        from analysis.sweep.selectors import representations
        from analysis.sweep.timing import estimate_sweep

        reps = len(representations(cfg, cache.root))
        est = estimate_sweep(cfg, search, finals, representations=reps, loader=loader, cache_root=cache.root)
    else:
        est = estimate(search, finals)
    return est, steps, todo


def score_selectors(scores: dict, nu: list[float], layers: list[int], mean: list[float], tied: list[int]) -> dict:
    """name → {layer, score, metric, regret, in_tied, spearman, scores} of every selector of ``scores`` (name →
    (L+1,) or None) and ν (L+1,), against the trained ``mean`` per layer of ``layers`` and the ``tied`` set.

    ``scores``: the selector's score at each of ``layers`` (None for a selector without one, and at a layer
    whose score is not finite), the numbers its Spearman is computed from.
    """
    from analysis.selectors import pick

    by_layer = dict(zip(layers, mean, strict=True))
    best = max(mean)
    out = {}
    for name, score in scores.items():
        layer = pick(name, score, nu, layers)
        at = None if layer is None else by_layer[layer]
        out[name] = {
            "layer": layer,
            "score": None if layer is None or score is None else score[layer],
            "metric": at,
            "regret": None if at is None else best - at,
            "in_tied": None if layer is None else layer in tied,
            "spearman": spearman(None if score is None else [score[l] for l in layers], mean),
            "scores": None if score is None else [_finite(score[l]) for l in layers],
        }
    return out


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def summarise(cfg, sc, per_seed, lrs, losses, n_eval, metric, inputs: dict[str, tuple[dict, list[float]]]) -> dict:
    """The sweep's record from its per-seed results and, per representation, the selectors' scores (L+1,) and ν.

    ``selectors`` are those of ``cfg.representation`` (``representation_default``);
    ``selectors_by_representation`` holds every representation of ``inputs``, each shaped like ``selectors``.
    """
    from analysis.models.hidden_states import REPRESENTATIONS
    from analysis.models.load import resolve_device, resolve_dtype
    from analysis.sweep.train_args import with_train_args
    from analysis.training.cost import load_dtype

    device = resolve_device(cfg.device)
    states_dtype = resolve_dtype(cfg.dtype, device)
    dtype = load_dtype(device, states_dtype)  # what the runs trained in (on a CPU: float32 weights, maybe autocast)
    layers = list(sc.layers)
    mean = [float(np.mean(per_seed[l])) for l in layers]
    sd = [float(np.std(per_seed[l], ddof=1)) if len(per_seed[l]) > 1 else None for l in layers]
    oracle = oracle_layer(layers, mean)
    tied, how = tied_layers(per_seed, oracle, n_eval)
    by_rep = {
        rep: score_selectors(*inputs[rep], layers, mean, tied) for rep in (*REPRESENTATIONS, *inputs) if rep in inputs
    }
    record = {
        "model": cfg.model,
        "task": cfg.task.label(),
        "layers": layers,
        "metric": metric,
        "per_seed": [per_seed[l] for l in layers],
        "seeds": list(sc.seeds),
        "mean": mean,
        "sd": sd,
        "final_loss": losses,
        "oracle_layer": oracle,
        "tied_layers": tied,
        "tied_rule": how,
        "n_eval": n_eval,
        "lr": lrs,
        "selectors": by_rep.get(cfg.representation, {}),
        "selectors_by_representation": by_rep,
        "representation_default": cfg.representation,
        "representation_note": _representation_note(by_rep),
        "settings": {
            **asdict(sc),
            "max_length": cfg.max_length,
            "n": cfg.sampling.n,
            "seed": cfg.sampling.seed,
            # only when not float32, so every float32 record keeps its settings (and its place in the book)
            **({} if dtype == "float32" else {"dtype": dtype}),
            **({} if states_dtype == dtype else {"states_dtype": states_dtype}),  # the selectors' states
        },
    }
    return with_train_args(record, cfg, sc, device, states_dtype)


def _representation_note(by_rep: dict) -> str:
    if len(by_rep) > 1:
        return "a pre-norm decoder: scored on the raw residual stream and through the final norm"
    if not by_rep:
        return "no selector scored"
    return (
        f"scored on one representation ({next(iter(by_rep))}): the model has no final norm, "
        "so its raw states are what the classifier pools"
    )
