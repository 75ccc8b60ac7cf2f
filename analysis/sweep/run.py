"""The sweep: for each layer ℓ, the variability-style selection at ℓ trained over seeds, then the selectors scored.

Pairing: every run shares the training texts, the held-out texts and (for one training seed) the batch
order; a seed varies the training alone (``TrainConfig.seed``), never the data sample. The learning rate
of a layer is the grid's best on a validation split of the training texts (seed 0); the final runs then
train on the whole training sample. Each finished (layer, seed, lr) run is cached, so a sweep resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, fields

import numpy as np

from analysis.pipeline import AnalysisConfig
from analysis.store.cache import DiskCache, make_key
from analysis.sweep.config import SweepConfig
from analysis.sweep.stats import spearman, tied_layers
from analysis.training.config import TrainConfig
from analysis.training.selection import Selection

RUN_VERSION = 2  # 2: frozen blocks run in eval mode (no dropout), as training does since the prefix cache
Say = Callable[[str], None]


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

    key = make_key({"what": "sweep-run", "version": RUN_VERSION, **asdict(tc)})
    if use_cache and (hit := cache.load("runs", key, version=RUN_VERSION)) is not None:
        return hit[1]["run"]
    if should_stop is not None and should_stop():
        raise SweepStopped
    # the run's monitor counts as abandoned once the sweep is stopped: it stops within a step, skipping eval
    monitor = RunMonitor(alive=None if should_stop is None else lambda: not should_stop())
    r = train(tc, monitor, loader=loader).result
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
        with cache.lock("runs", key):
            cache.save("runs", key, {}, blobs={"run": out}, version=RUN_VERSION, config={"label": tc.label()})
    return out


def _lr_for(cfg, sc, layer, run, tick) -> float:
    if len(sc.lr_grid) == 1:
        return sc.lr_grid[0]
    scores = []
    for lr in sc.lr_grid:
        scores.append((run(run_config(cfg, sc, layer, 0, lr, True))["value"], lr))
        tick(sc.lr_steps)
    return max(scores, key=lambda s: (s[0], -s[1]))[1]


def record_key(cfg: AnalysisConfig, sc: SweepConfig) -> str:
    """The cache key of a whole sweep's record: every field of ``cfg`` that decides the states, and ``sc``."""
    conf = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata.get("cache_key", True)}
    conf.update(task=asdict(cfg.task), sampling=asdict(cfg.sampling))
    return make_key({"what": "sweep-record", "version": RUN_VERSION, "config": conf, "sweep": asdict(sc)})


def cached_record(cfg: AnalysisConfig, sc: SweepConfig, cache: DiskCache | None = None) -> dict | None:
    """The record of a finished sweep of ``cfg`` with ``sc`` from the cache (None: never finished)."""
    hit = (cache or DiskCache()).load("sweeps", record_key(cfg, sc), version=RUN_VERSION)
    return None if hit is None else hit[1]["record"]


def save_record(cfg: AnalysisConfig, sc: SweepConfig, record: dict, cache: DiskCache) -> None:
    key = record_key(cfg, sc)
    with cache.lock("sweeps", key):
        cache.save("sweeps", key, {}, blobs={"record": record}, version=RUN_VERSION, config={"model": cfg.model})


def run_sweep(
    cfg: AnalysisConfig,
    sc: SweepConfig,
    *,
    cache: DiskCache | None = None,
    use_cache: bool = True,
    say: Say = print,
    selector_table: Callable[[], tuple[dict, list[float]]] | None = None,
    progress: Callable[[int, int, float, float | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loader: Callable | None = None,
) -> dict:
    """Train every layer of ``sc`` for every seed and compare the selectors with the result.

    ``selector_table()`` gives (name → per-layer score (L+1,) or None, ν (L+1,)); see
    :func:`analysis.sweep.selectors.selector_inputs`. ``progress(done steps, total steps, seconds,
    seconds left or None)`` after every run; ``should_stop()`` ends the sweep (:class:`SweepStopped`),
    keeping the finished runs cached. Returns the sweep's JSON record, cached whole when ``use_cache``
    (:func:`cached_record`).
    """
    cache = cache or DiskCache()
    done_steps, t0 = [0], time.perf_counter()
    say(
        f"sweep: {len(sc.layers)} layers × ({len(sc.lr_grid)} learning rates + {len(sc.seeds)} seeds): "
        f"{sc.runs} runs, {sc.total_steps} training steps"
    )

    def tick(steps: int) -> None:
        done_steps[0] += steps
        el = time.perf_counter() - t0
        eta = el / done_steps[0] * (sc.total_steps - done_steps[0]) if done_steps[0] else None
        say(f"  {done_steps[0]}/{sc.total_steps} steps, {el:.0f}s so far, about {eta or 0:.0f}s left")
        if progress is not None:
            progress(done_steps[0], sc.total_steps, el, eta)

    def run(tc: TrainConfig) -> dict:
        return one_run(tc, cache, use_cache, should_stop=should_stop, loader=loader)

    per_seed, lrs, losses, n_eval = {}, [], [], []
    for layer in sc.layers:
        lr = _lr_for(cfg, sc, layer, run, tick)
        runs = []
        for seed in sc.seeds:
            runs.append(run(run_config(cfg, sc, layer, seed, lr, False)))
            tick(sc.steps)
        say(f"layer {layer}: lr {lr:g}, {runs[0]['metric']} " + ", ".join(f"{r['value']:.4f}" for r in runs))
        per_seed[layer] = [r["value"] for r in runs]
        lrs.append(lr)
        losses.append(runs[0]["loss"])
        n_eval.append(runs[0]["n_eval"])
    scores, nu = selector_table() if selector_table else ({}, [])
    record = summarise(cfg, sc, per_seed, lrs, losses, min(n_eval), runs[0]["metric"], scores, nu)
    if use_cache:
        save_record(cfg, sc, record, cache)
    return record


def summarise(cfg, sc, per_seed, lrs, losses, n_eval, metric, scores, nu) -> dict:
    """The sweep's record from its per-seed results and the selectors' per-layer scores (L+1,)."""
    from analysis.selectors import pick

    layers = list(sc.layers)
    mean = [float(np.mean(per_seed[l])) for l in layers]
    sd = [float(np.std(per_seed[l], ddof=1)) if len(per_seed[l]) > 1 else None for l in layers]
    oracle = layers[int(np.argmax(mean))]
    tied, how = tied_layers(per_seed, oracle, n_eval)
    by_layer = dict(zip(layers, mean, strict=True))
    selectors = {}
    for name, score in scores.items():
        layer = pick(name, score, nu, layers)
        at = None if layer is None else by_layer[layer]
        selectors[name] = {
            "layer": layer,
            "score": None if layer is None or score is None else score[layer],
            "metric": at,
            "regret": None if at is None else by_layer[oracle] - at,
            "in_tied": None if layer is None else layer in tied,
            "spearman": spearman(None if score is None else [score[l] for l in layers], mean),
        }
    return {
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
        "selectors": selectors,
        "settings": {**asdict(sc), "max_length": cfg.max_length, "n": cfg.sampling.n, "seed": cfg.sampling.seed},
    }


def with_train_args(record: dict, data_flags: list[str], sc: SweepConfig) -> dict:
    """``train_args`` per layer: the ``train`` arguments that repeat the layer's seed-0 run."""
    args = []
    for layer, lr in zip(record["layers"], record["lr"], strict=True):
        tuned = ",".join(str(t) for t in range(max(1, layer - sc.k + 1), layer + 1))
        args.append(
            [
                *data_flags,
                "--classifier-layer",
                str(layer),
                "--tune-layers",
                tuned,
                "--steps",
                str(sc.steps),
                "--lr",
                repr(lr),
                "--train-batch",
                str(sc.batch_size),
                "--eval-n",
                str(sc.eval_n),
                "--train-seed",
                "0",
            ]
        )
    return {**record, "train_args": args}
