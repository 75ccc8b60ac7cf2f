"""The Hugging Face Trainer of a run: its plan (data, steps), its arguments, the loop and the evaluations.

With several processes (``torchrun``, ``accelerate launch``) the Trainer runs
DDP: ``--batch-size`` stays the *global* batch (each process takes
``batch_size / world_size`` examples per step, so the run takes the same
number of optimizer steps of the same size as one process). Each process
trains on a fixed shard of the training texts (:class:`.data.RankShards`)
and evaluates a fixed share of the held-out texts, gathered without the
padding of the last batch (``Accelerator.gather_for_metrics``):
``Evaluation.count`` says how many predictions the metric saw. Fixed rows
let each process's frozen-prefix cache hold only its own (``Plan.rows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analysis.data.taskdata import TaskData
from analysis.errors import VariscopeError
from analysis.training.config import TrainConfig, default_eval_every
from analysis.training.data import RankRows, RankShards
from analysis.training.monitor import RunMonitor

EVAL_BATCH = 64


@dataclass
class Plan:
    """Everything the Trainer needs besides the model, derived from the config and the data."""

    train_data: TaskData
    eval_data: TaskData
    enc_tr: dict
    enc_ev: dict
    metric_names: list[str]
    max_steps: int
    eval_every: int
    seq_len: float
    batch_size: int  # examples per optimizer step, all processes together
    world_size: int = 1
    counts: list[int] = field(default_factory=list)  # predictions seen by each evaluation, in order
    prefix_tr: object = None  # PrefixStates of the training texts when the prefix cache is attached
    prefix_ev: object = None
    shards: RankShards | None = None  # the training sampler of several processes (one process: the Trainer's)
    rows: RankRows | None = None  # the rows this process reads, with several processes (one process: all)

    @property
    def per_device_batch(self) -> int:
        return self.batch_size // self.world_size


def make_plan(cfg: TrainConfig, tok, world_size: int = 1, rank: int = 0) -> Plan:
    """Data, tokens, steps of ``cfg``; ``world_size`` processes share each step's ``cfg.batch_size`` examples
    (this one is process ``rank``)."""
    from analysis.models.batching import tokenize
    from analysis.training.data import rank_rows, split_train_eval, split_validation, task_metrics

    if cfg.batch_size % world_size:
        raise VariscopeError(
            f"the training batch {cfg.batch_size} is the batch of all {world_size} processes together "
            f"and must be a multiple of {world_size}"
        )
    a = cfg.analysis
    train_data, eval_data = split_train_eval(a, cfg.eval_n)
    if cfg.validation:
        train_data, eval_data = split_validation(train_data)
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
    plan = Plan(
        train_data,
        eval_data,
        enc_tr,
        enc_ev,
        task_metrics(a.task.name, len(train_data.label_names)),
        max_steps,
        cfg.eval_every or default_eval_every(max_steps),
        float(np.mean([len(x) for x in enc_tr["input_ids"]])),
        world_size=world_size,
        batch_size=cfg.batch_size,
    )
    if world_size > 1:
        plan.shards = RankShards(len(train_data), world_size, plan.per_device_batch, cfg.seed)
        plan.rows = rank_rows(plan.shards, len(eval_data), rank, EVAL_BATCH)
    return plan


def probe_batch(plan: Plan, device: str, n: int = 2) -> dict:
    """The first ``n`` training examples of this process as a padded batch on ``device`` (for
    :func:`.model.freeze_unused`)."""
    from analysis.training.data import Encoded, collate

    encoded = Encoded(plan.enc_tr, plan.train_data.labels, plan.prefix_tr)
    ids = range(len(encoded)) if plan.rows is None else plan.rows.train.tolist()
    b = collate([encoded[i] for i in ids[:n]])
    return {k: v.to(device) for k, v in b.items()}


def make_trainer(cfg: TrainConfig, model, target, plan: Plan, monitor: RunMonitor, tmp: str):
    """A Hugging Face Trainer for ``plan`` with the live-metrics callback (and no printing ones)."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from analysis.models.load import split_dtype
    from analysis.training.callbacks import LiveMetrics
    from analysis.training.data import Encoded, collate, compute_metrics

    device = target.device
    weights, amp = split_dtype(target.dtype)
    compute = amp or weights  # the dtype the forward pass runs in (Trainer AMP on CUDA; bf16 autocast on the CPU)
    cuda = device.startswith("cuda")
    mixed = cuda or (device == "cpu" and amp is not None)  # the CPU trains float32 weights unless autocast was asked

    def metrics_fn(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        plan.counts.append(int(len(p.label_ids)))
        return compute_metrics(np.argmax(logits, -1), p.label_ids, plan.metric_names)

    args = TrainingArguments(
        output_dir=tmp,
        max_steps=plan.max_steps,
        per_device_train_batch_size=plan.per_device_batch,
        per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup_ratio * plan.max_steps),
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must reach LiveMetrics (divergence), not be averaged away
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
        bf16=mixed and compute == "bfloat16",
        fp16=cuda and compute == "float16",
        # every trainable parameter takes part in the loss (model.freeze_unused): DDP needs no
        # search for unused ones (an extra pass over the graph each step, and a warning)
        ddp_find_unused_parameters=False,
        log_level_replica="error",  # processes other than rank 0 print errors only
    )

    class ShardedTrainer(Trainer):
        """The Trainer with the fixed training shards of several processes (:class:`.data.RankShards`)."""

        def _get_train_sampler(self, train_dataset=None):
            return plan.shards if plan.shards is not None else super()._get_train_sampler(train_dataset)

    live = LiveMetrics(monitor, cfg.batch_size, EVAL_BATCH * plan.world_size, len(plan.eval_data))
    trainer = ShardedTrainer(
        model=model,
        args=args,
        train_dataset=Encoded(plan.enc_tr, plan.train_data.labels, plan.prefix_tr),
        eval_dataset=Encoded(plan.enc_ev, plan.eval_data.labels, plan.prefix_ev),
        data_collator=collate,
        compute_metrics=metrics_fn,
        callbacks=[live],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, live


def fit(trainer, monitor: RunMonitor) -> bool:
    """Run the training loop; True when it ended because of Stop (or an abandoned session)."""
    from analysis.training.callbacks import EvalInterrupted

    try:
        trainer.train()
    except EvalInterrupted:  # Stop during a periodic evaluation
        return True
    return monitor.should_stop()


def final_eval(trainer, live, monitor: RunMonitor, metric_names: list[str], stopped: bool) -> tuple[dict, bool]:
    """(held-out metrics of the model as it is now, stopped).

    Reuses a periodic evaluation of the last step. After Stop the partial model is
    evaluated with status "stopping", cut short by Skip; a finished run's final
    evaluation is cut short by Stop, and the run counts as stopped.
    """
    from analysis.training.callbacks import EvalInterrupted

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
