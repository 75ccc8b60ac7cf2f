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
    held_out: str = ""  # where the held-out texts came from and how many (none is a training text)
    diverged: bool = False  # the loss became NaN or infinite; training stopped there
    diverged_at: int | None = None  # that step
    variability_before_after: dict | None = field(default=None)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["variability_before_after"] is None:
            del d["variability_before_after"]
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
) -> TrainOutput:
    """Train ``cfg``; live metrics go to ``monitor``. Returns ``TrainOutput(result, model)``.

    Stop (``monitor.request_stop()``) ends training within one step and an evaluation in
    flight within one batch; the partial model is then evaluated (status "stopping") unless
    ``monitor.request_skip()``. ``finalize=False`` leaves the final status to the caller
    (``monitor.finish``), e.g. after an export that may still fail.
    """
    import torch
    import transformers

    from analysis.distributed import world_size
    from analysis.models.load import layer_list
    from analysis.pipeline import cached_model, resolve_target
    from analysis.training.cost import cost, load_dtype
    from analysis.training.model import build_classifier, freeze_unused
    from analysis.training.trainer import final_eval, fit, make_plan, make_trainer, probe_batch

    monitor = monitor or RunMonitor()
    a = cfg.analysis
    t_start = time.perf_counter()
    try:
        cfg.check()
        target = resolve_target(a)
        base, tok = (loader or cached_model)(
            target.ref, target.device, load_dtype(target.device, target.dtype), a.trust_remote_code
        )
        n_layers = len(layer_list(base)[1])
        cfg.selection.check(n_layers)
        plan = make_plan(cfg, tok, world_size())
        transformers.set_seed(cfg.seed)
        model = build_classifier(base, cfg.selection, len(plan.train_data.label_names), a.pooling)
        freeze_unused(model, probe_batch(plan, target.device))  # DDP: every trainable parameter is used
        costs = cost(base, cfg.selection, plan.seq_len, len(plan.train_data.label_names))
        if progress:
            progress(f"training {cfg.label()} for {plan.max_steps} steps")
        with tempfile.TemporaryDirectory() as tmp:
            trainer, live = make_trainer(cfg, model, target, plan, monitor, tmp)
            stopped = fit(trainer, monitor)
            ev, stopped = final_eval(trainer, live, monitor, plan.metric_names, stopped)
        step = int(trainer.state.global_step)
        monitor.push({"step": step, "elapsed": round(time.perf_counter() - t_start, 3), "eval": ev, "final": True})
        result = _result(
            cfg,
            model,
            plan,
            costs,
            monitor,
            live,
            ev,
            step=step,
            n_layers=n_layers,
            device=target.device,
            stopped=stopped,
            seconds=time.perf_counter() - t_start,
        )
        if cfg.remeasure and not stopped:
            result.variability_before_after = _remeasure(base, model, tok, plan.eval_data, a, target.device)
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
    device: str,
    stopped: bool,
    seconds: float,
) -> RunResult:
    from analysis.models.load import layer_list

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
        device=device,
        world_size=plan.world_size,
        eval_examples=plan.counts[-1] if ev and plan.counts else 0,
        held_out=str(plan.eval_data.info.get("held_out", "")),
        diverged=live.diverged_at is not None,
        diverged_at=live.diverged_at,
    )


def _remeasure(base, model, tok, data, a, device) -> dict:
    """ν per layer (0..ℓ*) on the eval texts before and after training."""
    from analysis.models.hidden_states import extract_states
    from analysis.models.load import layer_list
    from analysis.variability import variability_curve

    enc = model.encoder
    enc.eval()
    k = len(layer_list(enc)[1])
    b = extract_states(base, tok, data.texts, data.pairs, pooling=a.pooling, max_length=a.max_length, device=device)[
        : k + 1
    ]
    t = extract_states(enc, tok, data.texts, data.pairs, pooling=a.pooling, max_length=a.max_length, device=device)
    return {
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
