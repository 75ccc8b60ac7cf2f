"""One training run: :class:`TrainConfig` in, :class:`RunResult` and the trained model out.

Under ``torchrun`` or ``accelerate launch`` every process calls :func:`train`;
the Trainer runs data-parallel (see :mod:`.trainer` for the batch and the
evaluation) and every process returns the same metrics (timings are its own).
Writing them is the caller's business (the CLI lets rank 0 alone write).
Stop and Skip act on one process: they are for one-process runs (the app).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

from analysis.training.config import (
    TrainConfig as TrainConfig,  # re-exported: ``from analysis.training.run import TrainConfig``
)
from analysis.training.monitor import RunMonitor
from analysis.training.selection import Selection, select
from analysis.training.trainer import Plan

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


@dataclass
class RunResult:
    """What a run measured; ``to_dict()`` is the JSON of ``train --json`` and of the page's exports."""

    label: str
    strategy: str | None
    model: str
    task: str
    classifier_layer: int
    tuned_layers: list[int]
    adapter: str | None
    tune_embeddings: bool
    layers_kept: int
    n_layers: int
    trainable_params: int
    total_params: int
    full_trainable_params: int
    flops_per_example: float
    full_flops_per_example: float
    flops_vs_full: float
    seq_len: float
    history: list[dict]
    evals: list[dict]
    eval: dict
    metric: str
    steps: int
    max_steps: int
    seconds: float
    train_seconds: float
    steps_per_second: float
    stopped: bool
    seed: int
    lr: float
    batch_size: int
    n_train: int
    n_eval: int
    device: str
    world_size: int = 1  # processes that trained together; batch_size is all of theirs per step
    eval_examples: int | None = None  # predictions the final metric counts (n_eval; 0 when skipped)
    prefix_cache: dict | None = None  # {"used": True, "block", "where", "bytes", "rows_per_rank"} or {"used", "why"}
    dtype: str = "float32"  # the weights' dtype, or "autocast-bfloat16": float32 weights under bf16 autocast
    vocab: dict | None = None  # {"task_sized": True, "rows": trained rows, "of": V} or {"task_sized": False, "why"}
    held_out: str = ""  # where the held-out texts came from and how many (none is a training text)
    diverged: bool = False  # the loss became NaN or infinite; training stopped there
    diverged_at: int | None = None  # that step
    variability_before_after: dict | None = field(default=None)
    layer_chosen_on: str | None = None  # the variability strategy: the states ν picked ℓ* on ("raw", "final-norm")

    def to_dict(self) -> dict:
        d = asdict(self)
        for optional in ("variability_before_after", "layer_chosen_on"):
            if d[optional] is None:
                del d[optional]
        return d

    @property
    def selection(self) -> Selection:
        return Selection(self.classifier_layer, tuple(self.tuned_layers), self.tune_embeddings, self.adapter)


class TrainOutput(NamedTuple):
    """``train``'s answer: the measurements and the trained model (never inside the result)."""

    result: RunResult
    model: nn.Module


def train(
    cfg: TrainConfig,
    monitor: RunMonitor | None = None,
    *,
    loader: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    finalize: bool = True,
    cache=None,
) -> TrainOutput:
    """Train ``cfg``; live metrics go to ``monitor``. Returns ``TrainOutput(result, model)``.

    Before the first step the run's time is estimated (:func:`.estimate.estimate_run`): the first
    event of ``monitor`` is ``{"estimate": Estimate.to_dict()}``, and ``progress`` sees its line.
    Stop (``monitor.request_stop()``) ends training within one step and an evaluation in
    flight within one batch; the partial model is then evaluated (status "stopping") unless
    ``monitor.request_skip()``. ``finalize=False`` leaves the final status to the caller
    (``monitor.finish``), e.g. after an export that may still fail. ``cache`` (a DiskCache, else the default
    one): where an offline model is found (converted there once) and where frozen-prefix states spill to disk.
    """
    import torch
    import transformers

    from analysis.distributed import rank, world_size
    from analysis.models.layers import layer_list
    from analysis.training.cost import cost
    from analysis.training.estimate import estimate_run
    from analysis.training.model import build_classifier, freeze_unused
    from analysis.training.trainer import final_eval, fit, make_plan, make_trainer, probe_batch

    monitor = monitor or RunMonitor()
    a = cfg.analysis
    t_start = time.perf_counter()
    try:
        cfg.check()
        target, base, tok = _load_base(a, loader, cache)
        n_layers = len(layer_list(base)[1])
        cfg.selection.check(n_layers)
        plan = make_plan(cfg, tok, world_size(), rank())
        transformers.set_seed(cfg.seed)
        model = build_classifier(base, cfg.selection, len(plan.train_data.label_names), a.pooling)
        prefix, vocab = _wrap(cfg, model, plan, target, progress, cache)
        freeze_unused(model, probe_batch(plan, target.device))  # DDP: every trainable parameter is used
        costs = cost(base, cfg.selection, plan.seq_len, len(plan.train_data.label_names))
        _announce(cfg, estimate_run(model, plan, costs, target), monitor, progress, plan.max_steps)
        with tempfile.TemporaryDirectory() as tmp:
            trainer, live = make_trainer(cfg, model, target, plan, monitor, tmp)
            stopped = fit(trainer, monitor)
            evals, stopped = final_eval(trainer, live, monitor, plan.metric_names, stopped)
        _unwrap(model)
        step = int(trainer.state.global_step)
        monitor.push({"step": step, "elapsed": round(time.perf_counter() - t_start, 3), "eval": evals, "final": True})
        result = _result(
            cfg,
            model,
            plan,
            costs,
            monitor,
            live,
            evals,
            step=step,
            n_layers=n_layers,
            target=target,
            stopped=stopped,
            seconds=time.perf_counter() - t_start,
        )
        result.prefix_cache, result.vocab = prefix, vocab
        if cfg.remeasure and not stopped:
            result.variability_before_after = _remeasure(base, model, tok, plan.eval_data, a, target)
        if finalize:
            monitor.finish(result.to_dict(), result.stopped)
        return TrainOutput(result, model)
    except Exception as e:  # keep the app alive; the message is shown on the page
        monitor.fail(e)
        raise
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _announce(cfg: TrainConfig, est, monitor: RunMonitor, progress: Callable[[str], None] | None, steps: int) -> None:
    """The estimate before the first step: the monitor's first event, its progress, ``progress``'s line."""
    monitor.push({"estimate": est.to_dict()})
    monitor.update_progress(estimate=est.seconds)
    if progress:
        progress(f"training {cfg.label()} for {steps} steps: {est.text()}")


def _load_base(a, loader: Callable | None, cache) -> tuple:
    """(target, base model, tokenizer) of the AnalysisConfig ``a``; an offline model is found under ``cache``'s
    root (else the default cache)."""
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import load_dtype

    target = resolve_target(a, cache.root if cache is not None else None)
    base, tok = (loader or cached_model)(
        target.ref, target.device, load_dtype(target.device, target.dtype), a.trust_remote_code
    )
    return target, base, tok


def _wrap(cfg: TrainConfig, model, plan: Plan, target, progress, cache=None) -> tuple[dict, dict]:
    """The frozen-prefix cache and the task-sized vocabulary put in place where they apply; their JSON records."""
    from analysis.training.estimate import warm_rate
    from analysis.training.prefix import prepare
    from analysis.training.vocab import compact

    warm_rate(model, plan, target)  # the forward rate on the real blocks, before the prefix's stand-ins
    prefix = prepare(model, plan, target.ref, target.device, progress, on=cfg.prefix_cache, rows=plan.rows, cache=cache)
    return prefix, compact(model, plan, on=not cfg.full_vocab, progress=progress)


def _unwrap(model) -> None:
    """The real frozen blocks back (exports, re-measurement and predictions run the whole model) and the trained
    rows into the whole embedding matrix (``trainable_params`` counts all of it, as the paper does)."""
    from analysis.training.prefix import detach
    from analysis.training.vocab import restore

    detach(model)
    restore(model)


def _result(
    cfg: TrainConfig,
    model,
    plan: Plan,
    costs: dict,
    monitor: RunMonitor,
    live,
    ev: dict,
    *,
    step: int,
    n_layers: int,
    target,
    stopped: bool,
    seconds: float,
) -> RunResult:
    from analysis.models.layers import layer_list
    from analysis.training.cost import load_dtype

    events = monitor.snapshot()["events"]
    s = cfg.selection
    return RunResult(
        label=cfg.label(),
        strategy=cfg.strategy,
        model=cfg.analysis.model,
        task=cfg.analysis.task.label(),
        classifier_layer=s.classifier_layer,
        tuned_layers=list(s.tuned_layers),
        adapter=s.adapter,
        tune_embeddings=s.tune_embeddings,
        layers_kept=len(layer_list(model.encoder)[1]),
        n_layers=n_layers,
        trainable_params=int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        total_params=int(sum(p.numel() for p in model.parameters())),
        **{
            k: costs[k]
            for k in (
                "full_trainable_params",
                "flops_per_example",
                "full_flops_per_example",
                "flops_vs_full",
                "seq_len",
            )
        },
        history=[
            {"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")}
            for e in events
            if "loss" in e
        ],
        evals=[e for e in events if "eval" in e and not e.get("final")],
        eval=ev,
        metric=plan.metric_names[0],
        steps=step,
        max_steps=plan.max_steps,
        seconds=round(seconds, 3),
        train_seconds=round(live.train_time, 3),
        steps_per_second=live.steps / live.train_time if live.train_time else 0.0,
        stopped=bool(stopped),
        seed=cfg.seed,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        n_train=len(plan.train_data),
        n_eval=len(plan.eval_data),
        device=target.device,
        dtype=load_dtype(target.device, target.dtype),
        world_size=plan.world_size,
        eval_examples=plan.counts[-1] if ev and plan.counts else 0,
        held_out=str(plan.eval_data.info.get("held_out", "")),
        diverged=live.diverged_at is not None,
        diverged_at=live.diverged_at,
    )


def _remeasure(base, model, tok, data, a, target) -> dict:
    """ν per layer (0..ℓ*) on the eval texts before and after training, on the curve's states (``a``'s
    representation resolved: through the final norm, the base model's before and the trained model's after)."""
    from analysis.models.hidden_states import extract_states
    from analysis.models.layers import layer_list
    from analysis.pipeline import concrete
    from analysis.variability import variability_curve

    representation, device = concrete(a, target).representation, target.device

    enc = model.encoder
    enc.eval()
    k = len(layer_list(enc)[1])
    kw = dict(pooling=a.pooling, max_length=a.max_length, device=device, representation=representation)
    b = extract_states(base, tok, data.texts, data.pairs, **kw)[: k + 1]
    t = extract_states(enc, tok, data.texts, data.pairs, **kw)
    return {
        "representation": representation,
        "layers": list(range(k + 1)),
        "before": variability_curve(b, data.labels).variability,
        "after": variability_curve(t, data.labels).variability,
    }


def baseline_jobs(base: TrainConfig, n_layers: int, *, top: bool = True, full: bool = True) -> list[TrainConfig]:
    """``base`` followed by the baselines it is compared with, same budget and seed.

    top : the same number of layers at the top of the model (with ``base``'s adapter);
    full : full fine-tuning.
    """
    sel = base.selection
    jobs = [base]
    if top:
        jobs.append(
            replace(
                base,
                selection=select(
                    "top", n_layers, max(1, len(sel.tuned_layers)), adapter=sel.adapter, lora_r=sel.lora_r
                ),
                strategy="top",
            )
        )
    if full:
        jobs.append(replace(base, selection=select("full", n_layers, 1), strategy="full"))
    return jobs
