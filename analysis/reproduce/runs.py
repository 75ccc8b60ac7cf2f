"""The training runs of a reproduction: a learning rate per strategy, chosen on a validation split, then the seeds.

For each (model, task, strategy, k) the learning rate comes from ``rc.lr_grid`` (when given):
one run per rate on the training sample of seed ``rc.lr_seed`` less a stratified
``rc.val_fraction`` of it, scored on that held-back part (training texts only: the test
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
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.reproduce.stats import final_loss
from analysis.store.cache import DiskCache, make_key

if TYPE_CHECKING:  # pragma: no cover
    from analysis.pipeline import AnalysisConfig
    from analysis.reproduce.config import ReproConfig
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


def acfg(rc: ReproConfig, model: str, task: str, n: int | None, seed: int, **sampling) -> AnalysisConfig:
    """The AnalysisConfig of (model, task) with ``n`` texts drawn with ``seed`` (``task`` may be a folder)."""
    from analysis.data.tasks import SampleConfig, TaskConfig
    from analysis.pipeline import AnalysisConfig

    return AnalysisConfig(
        model=model,
        task=TaskConfig(task),
        sampling=SampleConfig(n=n, seed=seed, **sampling),
        pooling=rc.pooling,
        max_length=rc.max_length,
        device=rc.device,
    )


def selections(rc: ReproConfig, model: str, n_layers: int, nu: list[float]) -> list[tuple[str, int | None, Selection]]:
    """(strategy, k, selection) of ``model``: full (unless skipped), then variability and top per k."""
    from analysis.training import select

    out: list[tuple[str, int | None, Selection]] = []
    if model not in rc.skip_full:
        out.append(("full", None, select("full", n_layers, 1)))
    for k in rc.ks_for(model):
        out.append(("variability", k, select("variability", n_layers, k, nu)))
        out.append(("top", k, select("top", n_layers, k)))
    return out


def training_runs(
    rc: ReproConfig,
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
    from analysis.training import TrainConfig, select

    runs, search = [], []
    for strategy, k, sel in selections(rc, model, n_layers, nu):
        chosen = choose_lr(rc, model, task, strategy, k, sel, cache, log, cached_only=cached_only)
        if chosen is None:
            continue
        lr, tried = chosen
        search += tried
        same = strategy == "variability" and k is not None and sel == select("top", n_layers, k)
        for seed in rc.seeds:
            tc = TrainConfig(
                acfg(rc, model, task, rc.n_train, seed),
                sel,
                steps=rc.steps,
                lr=lr,
                batch_size=rc.batch_size,
                eval_n=rc.eval_n,
                eval_every=rc.steps,  # one evaluation, at the end
                seed=seed,
                strategy=strategy,
                prefix_cache=rc.prefix_cache,
                full_vocab=rc.full_vocab,
            )
            rec = cached_train(tc, cache, log, cached_only=cached_only)
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


def choose_lr(
    rc: ReproConfig,
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
    """(the learning rate, the "lr_search" records): ``rc.lr`` without a grid, else the best on validation.

    None: ``cached_only`` and a run of the grid is not in the cache.
    """
    from analysis.training import TrainConfig

    if not rc.lr_grid:
        return rc.lr, []
    folder, n_fit, n_val = validation_folder(rc, model, task, cache)
    tried = []
    for lr in rc.lr_grid:
        tc = TrainConfig(
            acfg(rc, model, str(folder), None, rc.lr_seed),
            sel,
            steps=rc.lr_steps or rc.steps,
            lr=lr,
            batch_size=rc.batch_size,
            eval_n=n_val,
            eval_every=rc.lr_steps or rc.steps,
            seed=rc.lr_seed,
            strategy=strategy,
            prefix_cache=rc.prefix_cache,
            full_vocab=rc.full_vocab,
        )
        rec = cached_train(tc, cache, log, cached_only=cached_only)
        if rec is None:
            return None
        tried.append(
            {
                "model": model,
                "task": task,
                "strategy": strategy,
                "k": k,
                "lr": lr,
                "seed": rc.lr_seed,
                "metric": rec["metric"],
                "val_metric": rec["metric_value"],
                "final_loss": rec.get("final_loss"),
                "steps": rec["steps"],
                "n_fit": n_fit,
                "n_val": n_val,
            }  # fmt: skip
        )
    best = max(tried, key=lambda r: (r["val_metric"], -r["lr"]))
    for r in tried:
        r["chosen"] = r is best
    log(f"  {strategy:<11} k={k}: learning rate {best['lr']:g} (validation {best['metric']} {best['val_metric']:.4f})")
    return best["lr"], tried


def validation_folder(rc: ReproConfig, model: str, task: str, cache: DiskCache) -> tuple[Path, int, int]:
    """(folder, fit texts, validation texts): the training sample of ``rc.lr_seed`` split into fit and validation.

    Only the task's training split is read. The validation part is a stratified ``rc.val_fraction``
    (seeded), at least one text per class; the folder is named by its content, so reruns reuse it.
    """
    from analysis.data.sampling import SampleConfig, sample
    from analysis.pipeline import prepare_sample

    data = prepare_sample(acfg(rc, model, task, rc.n_train, rc.lr_seed))
    n_val = max(len(data.label_names), int(round(len(data) * rc.val_fraction)))
    val = sample(data, SampleConfig(n=n_val, seed=rc.lr_seed + 1000))
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
    tc: TrainConfig, cache: DiskCache, log: Callable[[str], None], *, cached_only: bool = False
) -> dict | None:
    """A training record from the runs cache, or train and store it (``cached_only``: None instead).

    The key is every field of the TrainConfig (and of its AnalysisConfig), with the
    model name replaced by its weights' fingerprint; the strategy is only a label
    (a variability selection equal to the top-k one is the same run).
    """
    from analysis.models.load import resolve_model
    from analysis.training import train

    a = tc.analysis
    conf = asdict(tc)
    del conf["strategy"]
    conf["analysis"]["model"] = resolve_model(a.model, revision=a.revision).fingerprint
    key = make_key({"what": "run", "version": REPRO_VERSION, "config": conf})
    hit = cache.load("runs", key, version=REPRO_VERSION)
    if hit is not None:
        return hit[1]["record"]
    if cached_only:
        return None
    t = time.time()
    r = train(tc).result.to_dict()
    rec = {k: r[k] for k in RECORD_KEYS}
    rec["metric_value"] = r["eval"][r["metric"]]
    rec["final_loss"] = final_loss(r["history"])
    rec["inference_flops_per_example"] = inference_flops(tc, r["seq_len"], r["layers_kept"])
    cache.save(
        "runs",
        key,
        {},
        blobs={"record": rec},
        version=REPRO_VERSION,
        meta={"describe": f"{a.model} · {a.task.label()} · {tc.strategy} · lr {tc.lr:g} · seed {tc.seed}"},
    )
    log(
        f"  {tc.strategy:<11} k={len(tc.selection.tuned_layers)} lr={tc.lr:g} seed={tc.seed}: {r['metric']} "
        f"{rec['metric_value']:.4f}, final loss {rec['final_loss']:.3f} in {time.time() - t:.0f}s"
    )
    return rec


def inference_flops(tc: TrainConfig, seq_len: float, kept: int) -> float:
    """Forward FLOPs per example of the kept blocks (2·P·T + 4·T²·d each, the cost model's forward pass)."""
    from analysis.models.load import layer_list
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import load_dtype

    target = resolve_target(tc.analysis)
    base, _ = cached_model(target.ref, target.device, load_dtype(target.device, target.dtype))
    _, blocks = layer_list(base)
    d, t = base.config.hidden_size, float(seq_len)
    return float(sum(2 * sum(p.numel() for p in b.parameters()) * t + 4 * t * t * d for b in blocks[:kept]))
