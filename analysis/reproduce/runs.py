"""The training runs of a reproduction: a learning rate per strategy, chosen on a validation split, then the seeds.

For each (model, task, strategy, k) the learning rate comes from ``repro.lr_grid`` (when given):
one run per rate on the training sample of seed ``repro.lr_seed`` less a stratified
``repro.val_fraction`` of it, scored on that held-back part (training texts only: the test
split is never seen). The rate with the best validation metric (ties: the smaller rate)
then trains every seed on the whole training sample, scored on the test split. Every run
is cached on disk (kind "runs"), so an interrupted reproduction resumes where it stopped.
The validation split is written as a small local dataset folder (``train.jsonl``,
``test.jsonl``) under the cache root, which :func:`analysis.training.train` reads like any task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.reproduce.stats import final_loss
from analysis.store.cache import DiskCache, make_key
from analysis.training.cost import COST_MODEL

if TYPE_CHECKING:  # pragma: no cover
    from analysis.pipeline import AnalysisConfig
    from analysis.reproduce.config import ReproConfig
    from analysis.training.estimate import Estimate
    from analysis.training.run import TrainConfig
    from analysis.training.selection import Selection

REPRO_VERSION = 4  # 4: frozen prefix without dropout (training.model.VariscopeClassifier.train)
# The fields of a RunResult that a "runs" record keeps (plus "metric_value", "final_loss").
RECORD_KEYS = (
    "classifier_layer",
    "tuned_layers",
    "layers_kept",
    "trainable_params",
    "total_params",
    "flops_vs_full",
    "flops_per_example",
    "eval",
    "metric",
    "seconds",
    "train_seconds",
    "steps_per_second",
    "steps",
    "n_train",
    "n_eval",
    "lr",
    "seq_len",
    "device",
    "prefix_cache",
    "vocab",
)


def acfg(repro: ReproConfig, model: str, task: str, n: int | None, seed: int, **sampling) -> AnalysisConfig:
    """The AnalysisConfig of (model, task) with ``n`` texts drawn with ``seed`` (``task`` may be a folder)."""
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    return AnalysisConfig(
        model=model,
        task=TaskConfig(task),
        sampling=SampleConfig(n=n, seed=seed, **sampling),
        pooling=repro.pooling,
        max_length=repro.max_length,
        device=repro.device,
        dtype=repro.dtype,
        representation="raw",  # the paper's states: the reproduction keeps them whatever the curve's default is
    )


def selections(
    repro: ReproConfig, model: str, n_layers: int, nu: list[float]
) -> list[tuple[str, int | None, Selection]]:
    """(strategy, k, selection) of ``model``: full (unless skipped), then variability and top per k."""
    from analysis.training import select

    out: list[tuple[str, int | None, Selection]] = []
    if model not in repro.skip_full:
        out.append(("full", None, select("full", n_layers, 1)))
    for k in repro.ks_for(model):
        out.append(("variability", k, select("variability", n_layers, k, nu)))
        out.append(("top", k, select("top", n_layers, k)))
    return out


def training_runs(
    repro: ReproConfig,
    model: str,
    task: str,
    n_layers: int,
    nu: list[float],
    cache: DiskCache,
    log: Callable[[str], None],
    *,
    cached_only: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Claims 1, 2 and 4: (the "runs" records, the "lr_search" records) of (model, task).

    ``cached_only``: train nothing; keep the records found in the cache (a strategy whose
    learning-rate search is not complete is left out).
    """
    from analysis.training import select
    from analysis.training.model import lowest_trained

    runs, search = [], []
    # lowest tuned block first: a run then finds the frozen-prefix states of the one before it in the process's
    # memo and runs only the blocks between (analysis/training/prefix.py), instead of the whole prefix again
    plan = sorted(selections(repro, model, n_layers, nu), key=lambda s: lowest_trained(s[2]))
    for strategy, k, sel in plan:
        chosen = choose_lr(repro, model, task, strategy, k, sel, cache, log, cached_only=cached_only)
        if chosen is None:
            continue
        lr, tried = chosen
        search += tried
        same = strategy == "variability" and k is not None and sel == select("top", n_layers, k)
        for seed in repro.seeds:
            rec = cached_train(
                final_config(repro, model, task, strategy, sel, lr, seed), cache, log, cached_only=cached_only
            )
            if rec is None:
                continue
            runs.append(
                {
                    "task": task,
                    "model": model,
                    "strategy": strategy,
                    "k": k,
                    "seed": seed,
                    "identical_to_top": same,
                    **rec,
                }  # fmt: skip
            )
    return runs, search


def final_config(
    repro: ReproConfig, model: str, task: str, strategy: str, sel: Selection, lr: float, seed: int
) -> TrainConfig:
    """The TrainConfig of one final run of the grid (scored on the held-out test texts)."""
    from analysis.training import TrainConfig

    return TrainConfig(
        acfg(repro, model, task, repro.n_train, seed),
        sel,
        steps=repro.steps,
        lr=lr,
        batch_size=repro.batch_size,
        eval_n=repro.eval_n,
        eval_every=repro.steps,  # one evaluation, at the end
        seed=seed,
        strategy=strategy,
        prefix_cache=repro.prefix_cache,
        full_vocab=repro.full_vocab,
    )


def plan_estimate(repro: ReproConfig, cache_root=None) -> Estimate:
    """The time of ``repro``'s training runs and ν curves before any starts, by the one estimator
    (:func:`analysis.training.estimate.estimate_configs`, the cost model at each model's measured rate).

    ℓ* is not known yet, so a variability run is counted as the top-k run of its k (every layer
    kept: an upper bound); a learning-rate search's runs are counted on the whole training sample, and
    the rates it may add past an edge of its grid are not; runs already in the cache are counted too
    (once a task's ℓ* is known, :mod:`analysis.reproduce.remaining` says what is left of it exactly).
    The ν curves (the full sample's and the robustness samples') are forward passes through every layer.
    """
    from analysis.models.load import describe, resolve_model
    from analysis.pipeline import prepare_sample
    from analysis.training import TrainConfig, select
    from analysis.training.estimate import OneOffPass, combine, estimate_configs

    parts = []
    for model, task in repro.pairs():
        n_layers = int(describe(resolve_model(model, cache_dir=cache_root))["layers"])
        data = prepare_sample(acfg(repro, model, task, repro.n_train, repro.seeds[0]))
        n_val = max(len(data.label_names), int(round(len(data) * repro.val_fraction)))
        curves = repro.analysis_n * (
            1 + sum(repro.fractions) + (len(repro.imbalances) if len(data.label_names) == 2 else 0)
        )
        jobs = []
        for strategy, k, sel in selections(repro, model, n_layers, [0.0] * (n_layers + 1)):
            sel = select("top", n_layers, k) if strategy == "variability" else sel
            a = acfg(repro, model, task, repro.n_train, repro.seeds[0])
            lr_steps = repro.lr_steps or repro.steps
            search = [TrainConfig(a, sel, steps=lr_steps, batch_size=repro.batch_size, eval_n=n_val)] * len(
                repro.lr_grid
            )
            seeds = [TrainConfig(a, sel, steps=repro.steps, batch_size=repro.batch_size, eval_n=repro.eval_n)] * len(
                repro.seeds
            )
            jobs += [
                replace(train_cfg, eval_every=train_cfg.steps) for train_cfg in search + seeds
            ]  # one evaluation, at the end
        parts += estimate_configs(
            jobs,
            data.texts,
            len(data.label_names),
            one_off=[OneOffPass(int(curves), n_layers, "ν curves")],
            cache_root=cache_root,
        )
    rate = parts[0].how if len(repro.pairs()) == 1 or len({m for m, _ in repro.pairs()}) == 1 else "cost model"
    return combine(
        parts,
        f"{rate}; {len(parts)} training runs, the variability ones counted with every layer kept and those already "
        "in the cache counted too, rates past a grid's edge not: each task says its runs left once ℓ* is known",
    )


def choose_lr(
    repro: ReproConfig,
    model: str,
    task: str,
    strategy: str,
    k: int | None,
    sel: Selection,
    cache: DiskCache,
    log: Callable[[str], None],
    *,
    cached_only: bool = False,
) -> tuple[float, list[dict]] | None:
    """(the learning rate, the "lr_search" records): ``repro.lr`` without a grid, else the best on validation.

    When the best rate sits at an edge of the rates tried, one more rate past that edge (the
    grid's ratio there) is tried, up to ``repro.lr_extend`` times, so a chosen rate is inside the
    rates tried unless the extension ran out (the chosen record then says ``at_edge``).
    None: ``cached_only`` and a run of the grid is not in the cache. The rates are compared on the metric the task
    is scored on (macro-F1 on reuters_r8), not the validation folder's default, accuracy.
    """
    if not repro.lr_grid:
        return repro.lr, []
    folder, n_fit, n_val = validation_folder(repro, model, task, cache)
    tried: list[dict] = []

    def trial(lr: float, extended: bool) -> bool:
        rec = _lr_trial(repro, model, folder, n_val, sel, strategy, lr, cache, log, cached_only)
        if rec is not None:
            metric, value = scored_on(task, rec)
            tried.append({"model": model, "task": task, "strategy": strategy, "k": k, "lr": lr, "seed": repro.lr_seed,
                          "metric": metric, "val_metric": value,
                          "final_loss": rec.get("final_loss"), "steps": rec["steps"], "n_fit": n_fit,
                          "n_val": n_val, "extended": extended, "run_key": rec.get("run_key")})  # fmt: skip
        return rec is not None

    if not all(trial(lr, False) for lr in sorted(set(repro.lr_grid))):
        return None
    best = max(tried, key=lambda r: (r["val_metric"], -r["lr"]))
    for _ in range(repro.lr_extend if len(tried) > 1 else 0):
        nxt = edge_step(sorted(r["lr"] for r in tried), best["lr"])
        if nxt is None or not trial(nxt, True):
            break
        best = max(tried, key=lambda r: (r["val_metric"], -r["lr"]))
    for r in tried:
        r["chosen"] = r is best
    best["at_edge"] = edge_step(sorted(r["lr"] for r in tried), best["lr"]) is not None
    said = f"  {strategy:<11} k={'all' if k is None else k}"  # full fine-tuning has no k: every layer
    log(f"{said}: learning rate {best['lr']:g} (validation {best['metric']} {best['val_metric']:.4f})")
    return best["lr"], tried


def scored_on(task: str, rec: dict) -> tuple[str, float]:
    """(metric, value) of a validation record on the metric ``task`` is scored on: the folder of the validation
    split is a task of its own, whose primary metric is accuracy, while e.g. reuters_r8 is scored on macro-F1."""
    from analysis.training.data import task_metrics

    metric = task_metrics(task, 0)[0]
    value = (rec.get("eval") or {}).get(metric)
    return (metric, float(value)) if value is not None else (rec["metric"], rec["metric_value"])


def edge_step(lrs: list[float], best: float) -> float | None:
    """The next rate past the edge of the sorted ``lrs`` that ``best`` is on (same ratio); None: inside, or one rate."""
    if len(lrs) < 2:
        return None
    if best == lrs[-1]:
        return float(f"{lrs[-1] * lrs[-1] / lrs[-2]:.3g}")
    if best == lrs[0]:
        return float(f"{lrs[0] * lrs[0] / lrs[1]:.3g}")
    return None


def _lr_trial(repro, model, folder, n_val, sel, strategy, lr, cache, log, cached_only) -> dict | None:
    """One validation run of the learning-rate search (a cached training record; None: not cached and cached_only)."""
    train_cfg = trial_config(repro, model, folder, n_val, sel, strategy, lr)
    return cached_train(train_cfg, cache, log, cached_only=cached_only)


def trial_config(
    repro: ReproConfig, model: str, folder, n_val: int, sel: Selection, strategy: str, lr: float
) -> TrainConfig:
    """The TrainConfig of one validation run of the learning-rate search (fit and validation texts of ``folder``)."""
    from analysis.training import TrainConfig

    return TrainConfig(
        acfg(repro, model, str(folder), None, repro.lr_seed),
        sel,
        steps=repro.lr_steps or repro.steps,
        lr=lr,
        batch_size=repro.batch_size,
        eval_n=n_val,
        eval_every=repro.lr_steps or repro.steps,
        seed=repro.lr_seed,
        strategy=strategy,
        prefix_cache=repro.prefix_cache,
        full_vocab=repro.full_vocab,
    )


def validation_folder(repro: ReproConfig, model: str, task: str, cache: DiskCache) -> tuple[Path, int, int]:
    """(folder, fit texts, validation texts): the training sample of ``repro.lr_seed`` split into fit and validation.

    Only the task's training split is read. The validation part is a stratified ``repro.val_fraction``
    (seeded), at least one text per class; the folder is named by its content, so reruns reuse it.
    """
    from analysis.data.sampling import SampleConfig, sample
    from analysis.pipeline import prepare_sample

    data = prepare_sample(acfg(repro, model, task, repro.n_train, repro.lr_seed))
    n_val = max(len(data.label_names), int(round(len(data) * repro.val_fraction)))
    val = sample(data, SampleConfig(n=n_val, seed=repro.lr_seed + 1000))
    held = set(zip(val.texts, val.labels.tolist(), strict=True))
    fit = [i for i, x in enumerate(zip(data.texts, data.labels.tolist(), strict=True)) if x not in held]
    fit_data = data.subset(fit)

    def lines(d) -> str:
        rows = zip(d.texts, d.labels.tolist(), strict=True)
        return "".join(json.dumps({"text": t, "label": d.label_names[y]}) + "\n" for t, y in rows)

    body = {"train.jsonl": lines(fit_data), "test.jsonl": lines(val)}
    folder = cache.root / "repro_val" / make_key(body)
    if not (folder / "test.jsonl").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in body.items():
            tmp = folder / (name + ".tmp")
            tmp.write_text(text)
            tmp.replace(folder / name)
    return folder, len(fit_data), len(val)


def cached_train(
    train_cfg: TrainConfig, cache: DiskCache, log: Callable[[str], None], *, cached_only: bool = False
) -> dict | None:
    """A training record from the runs cache, or train and store it (``cached_only``: None instead).

    The key is every field of the TrainConfig (and of its AnalysisConfig), with the
    model name replaced by its weights' fingerprint; the strategy is only a label
    (a variability selection equal to the top-k one is the same run). A validation folder
    inside the cache is named relative to the cache, so the key (``run_key`` of the record,
    :func:`analysis.reproduce.restore.restore_runs`) is the same under any cache root; a record stored under the
    absolute folder's key before is still found.
    """
    from analysis.training import train

    a = train_cfg.analysis
    key, legacy = run_keys(train_cfg, cache)
    for k in dict.fromkeys((key, legacy)):
        if (hit := cache.load("runs", k, version=REPRO_VERSION)) is not None:
            return {**hit[1]["record"], "run_key": key}
    if cached_only:
        return None
    # a run can take many minutes on a CPU, and its result line comes only at its end: say what is running
    tuned = "all" if train_cfg.strategy == "full" else len(train_cfg.selection.tuned_layers)
    lr, seed = train_cfg.lr, train_cfg.seed
    what = f"  {train_cfg.strategy:<11} k={tuned} lr={lr:g} seed={seed}"
    log(f"{what}: training {train_cfg.steps} steps, started {time.strftime('%H:%M')}")
    t = time.time()
    r = train(train_cfg, cache=cache).result.to_dict()
    rec = {k: r[k] for k in RECORD_KEYS}
    rec["metric_value"] = r["eval"][r["metric"]]
    rec["final_loss"] = final_loss(r["history"])
    rec["inference_flops_per_example"] = inference_flops(train_cfg, r["seq_len"], r["layers_kept"], cache.root)
    rec["cost_model"] = COST_MODEL  # which cost model computed the FLOPs (older records have none: model 1)
    cache.save(
        "runs",
        key,
        {},
        blobs={"record": rec},
        version=REPRO_VERSION,
        meta={
            "describe": f"{a.model} · {a.task.label()} · {train_cfg.strategy} · lr {train_cfg.lr:g} · "
            f"seed {train_cfg.seed}"
        },
    )
    log(
        f"{what}: {r['metric']} {rec['metric_value']:.4f}, final loss {rec['final_loss']:.3f} in {time.time() - t:.0f}s"
    )
    return {**rec, "run_key": key}


def run_keys(train_cfg: TrainConfig, cache: DiskCache) -> tuple[str, str]:
    """(key, legacy key) of a run in the runs cache: every field of the TrainConfig (and of its AnalysisConfig),
    the model name replaced by its weights' fingerprint, the strategy left out; the key names a validation folder
    inside the cache relative to it, the legacy key (stores before run_key) by its absolute path."""
    from analysis.models.load import resolve_model

    a = train_cfg.analysis
    conf = asdict(train_cfg)
    del conf["strategy"]
    conf["analysis"]["model"] = resolve_model(a.model, revision=a.revision, cache_dir=cache.root).fingerprint
    legacy = make_key({"what": "run", "version": REPRO_VERSION, "config": conf})
    task = conf["analysis"]["task"]
    if task["name"] and Path(task["name"]).is_relative_to(cache.root / "repro_val"):
        task["name"] = "<cache>/" + Path(task["name"]).relative_to(cache.root).as_posix()
    return make_key({"what": "run", "version": REPRO_VERSION, "config": conf}), legacy


def is_cached(train_cfg: TrainConfig, cache: DiskCache) -> bool:
    """Whether the runs cache holds ``train_cfg``'s record (under its key or its legacy key)."""
    return any(cache.load("runs", k, version=REPRO_VERSION) is not None for k in run_keys(train_cfg, cache))


def inference_flops(train_cfg: TrainConfig, seq_len: float, kept: int, cache_root=None) -> float:
    """Forward FLOPs per example of the kept blocks (the cost model's forward pass); the model found under
    ``cache_root``."""
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import block_forward_flops, load_dtype

    target = resolve_target(train_cfg.analysis, cache_root)
    base, _ = cached_model(target.ref, target.device, load_dtype(target.device, target.dtype))
    return float(sum(block_forward_flops(base, seq_len)[:kept]))
