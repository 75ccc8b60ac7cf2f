"""One training run: :class:`TrainConfig` in, :class:`RunResult` and the trained model out."""

from __future__ import annotations

import gc
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import VariscopeError
from ..pipeline import AnalysisConfig
from ..taskdata import TaskData
from .monitor import RunMonitor
from .selection import Selection, select

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

EVAL_BATCH = 64


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``analysis`` gives model, task and sampling of the training data."""

    analysis: AnalysisConfig
    selection: Selection
    steps: int | None = 200
    epochs: float | None = None
    lr: float = 1e-4
    batch_size: int = 16
    eval_n: int = 500
    eval_every: int | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    remeasure: bool = False
    strategy: str | None = None

    def label(self) -> str:
        s = self.selection
        kind = self.strategy or ("full" if s.tune_embeddings else "custom")
        return f"{kind}: ℓ*={s.classifier_layer}, tune {','.join(map(str, s.tuned_layers))}" + (
            " (LoRA)" if s.adapter else ""
        )

    def check(self) -> None:
        self.analysis.validate()
        if self.steps is None and self.epochs is None:
            raise VariscopeError("give a number of steps or of epochs")
        if self.steps is not None and self.steps < 1:
            raise VariscopeError(f"steps must be at least 1, got {self.steps}")
        if self.lr <= 0:
            raise VariscopeError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise VariscopeError(f"batch size must be at least 1, got {self.batch_size}")


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


@dataclass
class _Plan:
    """Everything the Trainer needs besides the model, derived from the config and the data."""

    train_data: TaskData
    eval_data: TaskData
    enc_tr: dict
    enc_ev: dict
    metric_names: list[str]
    max_steps: int
    eval_every: int
    seq_len: float


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

    from ..models import layer_list
    from ..pipeline import cached_model, resolve_target
    from .cost import cost, load_dtype
    from .model import build_classifier

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
        plan = _plan(cfg, tok)
        transformers.set_seed(cfg.seed)
        model = build_classifier(base, cfg.selection, len(plan.train_data.label_names), a.pooling)
        costs = cost(base, cfg.selection, plan.seq_len, len(plan.train_data.label_names))
        if progress:
            progress(f"training {cfg.label()} for {plan.max_steps} steps")
        with tempfile.TemporaryDirectory() as tmp:
            trainer, live = _trainer(cfg, model, target, plan, monitor, tmp)
            stopped = _fit(trainer, monitor)
            ev, stopped = _final_eval(trainer, live, monitor, plan.metric_names, stopped)
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


def _plan(cfg: TrainConfig, tok) -> _Plan:
    from ..hidden_states import tokenize
    from .data import split_train_eval, task_metrics

    a = cfg.analysis
    train_data, eval_data = split_train_eval(a, cfg.eval_n)
    enc_tr = tokenize(tok, train_data.texts, train_data.pairs, a.max_length)
    enc_ev = tokenize(tok, eval_data.texts, eval_data.pairs, a.max_length)
    enc_tr["_pad_id"] = enc_ev["_pad_id"] = tok.pad_token_id
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    if cfg.steps is not None:
        max_steps = cfg.steps
    elif cfg.epochs is not None:
        max_steps = math.ceil(cfg.epochs * steps_per_epoch)
    else:  # refused by TrainConfig.check
        raise VariscopeError("give a number of steps or of epochs")
    return _Plan(
        train_data,
        eval_data,
        enc_tr,
        enc_ev,
        task_metrics(a.task.name, len(train_data.label_names)),
        max_steps,
        cfg.eval_every or max(1, max_steps // 5),
        float(np.mean([len(x) for x in enc_tr["input_ids"]])),
    )


def _trainer(cfg: TrainConfig, model, target, plan: _Plan, monitor: RunMonitor, tmp: str):
    """A Hugging Face Trainer for ``plan`` with the live-metrics callback (and no printing ones)."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..models import split_dtype
    from .callbacks import LiveMetrics
    from .data import Encoded, collate, compute_metrics

    device = target.device
    weights, amp = split_dtype(target.dtype)
    compute = amp or weights  # the dtype the forward pass runs in (Trainer AMP on CUDA)
    cuda = device.startswith("cuda")

    def metrics_fn(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        return compute_metrics(np.argmax(logits, -1), p.label_ids, plan.metric_names)

    args = TrainingArguments(
        output_dir=tmp,
        max_steps=plan.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup_ratio * plan.max_steps),
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=plan.eval_every,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=device == "cpu",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        bf16=cuda and compute == "bfloat16",
        fp16=cuda and compute == "float16",
    )
    live = LiveMetrics(monitor, cfg.batch_size, EVAL_BATCH, len(plan.eval_data))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Encoded(plan.enc_tr, plan.train_data.labels),
        eval_dataset=Encoded(plan.enc_ev, plan.eval_data.labels),
        data_collator=collate,
        compute_metrics=metrics_fn,
        callbacks=[live],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, live


def _fit(trainer, monitor: RunMonitor) -> bool:
    """Run the training loop; True when it ended because of Stop (or an abandoned session)."""
    from .callbacks import EvalInterrupted

    try:
        trainer.train()
    except EvalInterrupted:  # Stop during a periodic evaluation
        return True
    return monitor.should_stop()


def _final_eval(trainer, live, monitor: RunMonitor, metric_names: list[str], stopped: bool) -> tuple[dict, bool]:
    """(held-out metrics of the model as it is now, stopped).

    Reuses a periodic evaluation of the last step. After Stop the partial model is
    evaluated with status "stopping", cut short by Skip; a finished run's final
    evaluation is cut short by Stop, and the run counts as stopped.
    """
    from .callbacks import EvalInterrupted

    done = [e for e in monitor.snapshot()["events"] if "eval" in e]
    if done and done[-1]["step"] == trainer.state.global_step:
        return {k: v for k, v in done[-1]["eval"].items() if k in metric_names}, stopped
    if stopped and monitor.should_skip():
        return {}, True
    if stopped:
        monitor.set(status="stopping")
    live.start_eval("final_eval", monitor.should_skip if stopped else monitor.should_stop)
    try:
        final = trainer.evaluate()
    except EvalInterrupted:
        return {}, True
    finally:
        monitor.update_progress(phase="train")
    return {k[5:]: float(v) for k, v in final.items() if k.startswith("eval_") and k[5:] in metric_names}, stopped


def _result(
    cfg: TrainConfig,
    model,
    plan: _Plan,
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
    from ..models import layer_list

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
    )


def _remeasure(base, model, tok, data, a, device) -> dict:
    """ν per layer (0..ℓ*) on the eval texts before and after training."""
    from ..hidden_states import extract_states
    from ..models import layer_list
    from ..variability import variability_curve

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
