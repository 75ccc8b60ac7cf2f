"""Partial fine-tuning: a classifier on layer ℓ*, layers above ℓ* removed, only chosen layers tuned.

``build_classifier`` truncates a copy of the encoder to its first ℓ* blocks,
freezes everything but the tuned blocks (or adds LoRA adapters to them only)
and puts a RoBERTa-style head on the pooled state of layer ℓ*. ``train``
runs Hugging Face's ``Trainer`` with a callback that streams live metrics into
a thread-safe :class:`RunMonitor` and stops within one step when asked. Full
fine-tuning and "top-k layers" are the same code with other selections.
"""
from __future__ import annotations

import copy
import gc
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import VariscopeError
from .hidden_states import POOLINGS, _pad, pool, tokenize

STRATEGIES = ("variability", "top", "full")


@dataclass(frozen=True)
class Selection:
    """Which layers to keep and tune.

    classifier_layer : ℓ*, 1..L; blocks above it are removed.
    tuned_layers : blocks (1-based, each ≤ ℓ*) whose weights train.
    tune_embeddings : also train the embeddings (full fine-tuning).
    adapter : None (tune the blocks' weights) or "lora" (adapters on those blocks only).
    """

    classifier_layer: int
    tuned_layers: tuple[int, ...]
    tune_embeddings: bool = False
    adapter: str | None = None
    lora_r: int = 8

    def check(self, n_layers: int) -> None:
        if not 1 <= self.classifier_layer <= n_layers:
            raise VariscopeError(f"classifier layer {self.classifier_layer} is out of range: "
                                 f"this model has layers 1..{n_layers}")
        bad = [l for l in self.tuned_layers if not 1 <= l <= n_layers]
        if bad:
            raise VariscopeError(f"tuned layer {bad[0]} is out of range: this model has layers 1..{n_layers}")
        above = [l for l in self.tuned_layers if l > self.classifier_layer]
        if above:
            raise VariscopeError(f"tuned layer {above[0]} is above the classifier layer {self.classifier_layer}; "
                                 f"layers above ℓ* are removed")
        if self.adapter not in (None, "lora"):
            raise VariscopeError(f"unknown adapter '{self.adapter}'; use lora or none")


def select(strategy: str, n_layers: int, k: int, curve: list[float] | None = None) -> Selection:
    """The paper's strategies: 'variability' (k layers ending at argmin ν), 'top' (top k), 'full'."""
    from .selection import recommend_layer, tuned_layers

    if strategy == "full":
        return Selection(n_layers, tuple(range(1, n_layers + 1)), tune_embeddings=True)
    if strategy == "top":
        return Selection(n_layers, tuple(tuned_layers(n_layers, k)))
    if strategy == "variability":
        if curve is None:
            raise VariscopeError("the variability strategy needs a ν curve")
        best = recommend_layer(curve)
        return Selection(best, tuple(tuned_layers(best, k)))
    raise VariscopeError(f"unknown strategy '{strategy}'; use one of {', '.join(STRATEGIES)}")


def _module_class():
    import torch
    from torch import nn

    class VariscopeClassifier(nn.Module):
        """Encoder truncated to ℓ* blocks + dropout→Linear(d,d)→tanh→dropout→Linear(d,C) on the pooled state."""

        def __init__(self, encoder, num_labels: int, pooling: str, dropout: float = 0.1):
            super().__init__()
            self.encoder = encoder
            d = encoder.config.hidden_size
            self.pooling = pooling
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, d), nn.Tanh(), nn.Dropout(dropout),
                                      nn.Linear(d, num_labels))
            self.num_labels = num_labels

        def forward(self, input_ids, attention_mask, special_tokens_mask=None, token_type_ids=None, labels=None):
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            h = self.encoder(**kw, return_dict=True).last_hidden_state
            if special_tokens_mask is None:
                special_tokens_mask = torch.zeros_like(attention_mask)
            pooled = pool((h,), attention_mask, special_tokens_mask, self.pooling)[0].to(h.dtype)
            logits = self.head(pooled.to(self.head[1].weight.dtype))
            out = {"logits": logits}
            if labels is not None:
                out = {"loss": nn.functional.cross_entropy(logits.float(), labels), **out}
            return out

    return VariscopeClassifier


def build_classifier(base_model, selection: Selection, num_labels: int, pooling: str = "mean"):
    """A new trainable model for ``selection`` (the base model is not modified)."""
    from .models import layer_list, truncate_model

    if pooling not in POOLINGS:
        raise VariscopeError(f"unknown pooling '{pooling}'")
    L = len(layer_list(base_model)[1])
    selection.check(L)
    enc = truncate_model(copy.deepcopy(base_model), selection.classifier_layer)
    enc.config.output_hidden_states = False
    for p in enc.parameters():
        p.requires_grad_(False)
    name, blocks = layer_list(enc)
    if selection.adapter == "lora":
        from peft import LoraConfig, get_peft_model

        targets = _lora_targets(blocks[0])
        cfg = LoraConfig(r=selection.lora_r, lora_alpha=2 * selection.lora_r, lora_dropout=0.05,
                         target_modules=targets, layers_to_transform=[l - 1 for l in selection.tuned_layers],
                         layers_pattern=name.rsplit(".", 1)[-1], bias="none")
        enc = get_peft_model(enc, cfg)
    else:
        for l in selection.tuned_layers:
            for p in blocks[l - 1].parameters():
                p.requires_grad_(True)
        if selection.tune_embeddings:
            for p in enc.get_input_embeddings().parameters():
                p.requires_grad_(True)
            emb = getattr(enc, "embeddings", None)
            if emb is not None:
                for p in emb.parameters():
                    p.requires_grad_(True)
    model = _module_class()(enc, num_labels, pooling)
    return model


def _lora_targets(block) -> list[str]:
    from torch import nn

    names = {n.rsplit(".", 1)[-1] for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    for pair in (["query", "value"], ["q_proj", "v_proj"], ["q", "v"], ["q_lin", "v_lin"], ["query_proj", "value_proj"]):
        if set(pair) <= names:
            return pair
    for one in ("c_attn", "Wqkv", "qkv_proj", "query_key_value"):
        if one in names:
            return [one]
    raise VariscopeError(f"cannot find attention projections for LoRA in {type(block).__name__}")


def lora_snippet(selection: Selection, block_targets: list[str], layers_pattern: str) -> str:
    """A PEFT LoraConfig for the same layers, as Python source."""
    return (f"from peft import LoraConfig\n\nconfig = LoraConfig(\n    r={selection.lora_r},\n"
            f"    lora_alpha={2 * selection.lora_r},\n    lora_dropout=0.05,\n    target_modules={block_targets!r},\n"
            f"    layers_to_transform={[l - 1 for l in selection.tuned_layers]!r},  # 0-based blocks\n"
            f"    layers_pattern={layers_pattern!r},\n    bias=\"none\",\n)\n"
            f"# classifier on layer {selection.classifier_layer}; drop blocks above it before get_peft_model\n")


# ------------------------------------------------------------------ cost
def cost(base_model, selection: Selection, seq_len: float, num_labels: int) -> dict:
    """Parameters and training FLOPs per example for a selection, and the same for full fine-tuning.

    Per block: forward ≈ 2·P·T + 4·T²·d (weights and attention), backward through a block for
    activations ≈ its forward, weight gradients ≈ 2·P·T for tuned blocks (2·P_lora·T for LoRA).
    Gradients flow from the head down to the lowest tuned block only.
    """
    from .models import layer_list

    _, blocks = layer_list(base_model)
    d = base_model.config.hidden_size
    T = float(seq_len)
    P = [sum(p.numel() for p in b.parameters()) for b in blocks]
    fwd = [2 * p * T + 4 * T * T * d for p in P]
    head_p = d * d + d + d * num_labels + num_labels
    emb_p = sum(p.numel() for p in base_model.get_input_embeddings().parameters())
    total_base = sum(p.numel() for p in base_model.parameters())

    def flops(sel: Selection) -> float:
        keep = sel.classifier_layer
        lo = 1 if sel.tune_embeddings else (min(sel.tuned_layers) if sel.tuned_layers else keep + 1)
        f = sum(fwd[:keep]) + 2 * head_p
        f += sum(fwd[lo - 1:keep])  # activation gradients
        if sel.adapter == "lora":
            f += sum(2 * _lora_params(d, sel.lora_r) * T for _ in sel.tuned_layers)
        else:
            f += sum(2 * P[l - 1] * T for l in sel.tuned_layers)
        f += 4 * head_p
        return f

    def trainable(sel: Selection) -> int:
        if sel.adapter == "lora":
            return head_p + len(sel.tuned_layers) * _lora_params(d, sel.lora_r)
        return head_p + sum(P[l - 1] for l in sel.tuned_layers) + (emb_p if sel.tune_embeddings else 0)

    L = len(blocks)
    full = Selection(L, tuple(range(1, L + 1)), tune_embeddings=True)
    kept_params = total_base - sum(P[selection.classifier_layer:]) + head_p
    return {"trainable_params": trainable(selection), "total_params": kept_params,
            "full_trainable_params": trainable(full), "full_total_params": total_base + head_p,
            "flops_per_example": flops(selection), "full_flops_per_example": flops(full),
            "flops_vs_full": flops(selection) / flops(full),
            "params_vs_full": trainable(selection) / trainable(full),
            "seq_len": T, "layers_kept": selection.classifier_layer}


def selection_cost(model, tokenizer, texts, selection: Selection, num_labels: int, max_length: int) -> dict:
    """:func:`cost` with the mean token length of ``texts`` (at most 2000 of them)."""
    enc = tokenize(tokenizer, list(texts)[:2000], None, max_length)
    return cost(model, selection, float(np.mean([len(x) for x in enc["input_ids"]])), num_labels)


def _lora_params(d: int, r: int) -> int:
    return 2 * (2 * d * r)  # query and value: A (d×r) + B (r×d) each


# ------------------------------------------------------------------ live metrics
class RunMonitor:
    """Thread-safe store of a run's live metrics, status and stop flag.

    status: "pending" → "running" → "finished" | "stopped" | "failed".
    A run stops itself when ``alive()`` turns false (the app passes "is this
    browser session still connected?") or when no ``heartbeat()`` came for
    ``abandon_after`` seconds.
    """

    def __init__(self, log_path: str | None = None, abandon_after: float | None = None,
                 alive: Callable[[], bool] | None = None):
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self.status = "pending"
        self.error: str | None = None
        self.result: dict | None = None
        self.stop_event = threading.Event()
        self.log_path = log_path
        self.abandon_after = abandon_after
        self.alive = alive  # e.g. "is the browser session still connected?"
        self._seen = time.time()
        self.progress = {"step": 0, "max_steps": 0, "elapsed": 0.0, "eta": None}
        self.artifacts: dict | None = None

    def push(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(event) + "\n")

    def set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def snapshot(self) -> dict:
        with self._lock:
            return {"events": list(self.events), "status": self.status, "error": self.error,
                    "result": self.result, "progress": dict(self.progress)}

    def request_stop(self) -> None:
        self.stop_event.set()

    def heartbeat(self) -> None:
        self._seen = time.time()

    def abandoned(self) -> bool:
        if self.alive is not None:
            try:
                if not self.alive():
                    return True
            except Exception:
                pass
        return self.abandon_after is not None and time.time() - self._seen > self.abandon_after

    @property
    def running(self) -> bool:
        return self.status in ("pending", "running")


def _callback_class():
    from transformers import TrainerCallback

    class LiveMetrics(TrainerCallback):
        def __init__(self, monitor: RunMonitor, batch_size: int):
            self.m = monitor
            self.bs = batch_size
            self.t0 = None
            self.train_time = 0.0
            self._step_t = None
            self.steps = 0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.m.set(status="running")

        def on_step_begin(self, args, state, control, **kw):
            self._step_t = time.perf_counter()
            if self.m.stop_event.is_set() or self.m.abandoned():
                control.should_training_stop = True

        def on_step_end(self, args, state, control, **kw):
            self.train_time += time.perf_counter() - self._step_t
            self.steps += 1
            el = time.perf_counter() - self.t0
            eta = (state.max_steps - state.global_step) * (self.train_time / self.steps)
            self.m.set(progress={"step": state.global_step, "max_steps": state.max_steps, "elapsed": el, "eta": eta})
            if self.m.stop_event.is_set() or self.m.abandoned():
                control.should_training_stop = True
                control.should_evaluate = False

        def on_log(self, args, state, control, logs=None, **kw):
            logs = dict(logs or {})
            el = time.perf_counter() - self.t0 if self.t0 else 0.0
            ev = {"step": state.global_step, "elapsed": round(el, 3)}
            if "loss" in logs:
                ev.update(loss=float(logs["loss"]), learning_rate=float(logs.get("learning_rate", 0.0)),
                          examples_per_s=self.steps * self.bs / self.train_time if self.train_time else 0.0,
                          eta=(state.max_steps - state.global_step) * (self.train_time / max(self.steps, 1)))
            evals = {k[5:]: float(v) for k, v in logs.items() if k.startswith("eval_") and k not in
                     ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_loss")}
            if evals:
                ev["eval"] = evals
                if "eval_loss" in logs:
                    ev["eval_loss"] = float(logs["eval_loss"])
            if "loss" in ev or "eval" in ev:
                self.m.push(ev)

    return LiveMetrics


# ------------------------------------------------------------------ data and metrics
class _Encoded:
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"i": i, "enc": self.enc, "label": int(self.labels[i])}


def _collate(features):
    """Pad a list of examples with the same padding as the analysis (hidden_states._pad)."""
    import torch

    enc = features[0]["enc"]
    idx = np.array([f["i"] for f in features])
    b = _pad(enc, idx, enc["_pad_id"])
    return {**b.tensors, "labels": torch.tensor([f["label"] for f in features], dtype=torch.long)}


def task_metrics(task_name: str | None, num_labels: int) -> list[str]:
    """Metric names: accuracy by default; GLUE's own; macro-F1 for imbalanced offline tasks."""
    from .tasks import GLUE_METRIC

    if task_name in GLUE_METRIC:
        return GLUE_METRIC[task_name]
    if task_name in ("reuters_r8",):
        return ["macro_f1", "accuracy"]
    return ["accuracy", "macro_f1"]


def compute_metrics(pred, labels, names: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    out = {}
    for n in names:
        if n == "accuracy":
            out[n] = float(accuracy_score(labels, pred))
        elif n == "macro_f1":
            out[n] = float(f1_score(labels, pred, average="macro"))
        elif n == "f1":
            out[n] = float(f1_score(labels, pred, average="binary" if len(set(labels)) <= 2 else "macro"))
        elif n == "mcc":
            out[n] = float(matthews_corrcoef(labels, pred))
    return out


# ------------------------------------------------------------------ the run
@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``analysis`` gives model, task and sampling of the training data."""

    analysis: object  # AnalysisConfig
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
        return (f"{kind}: ℓ*={s.classifier_layer}, tune {','.join(map(str, s.tuned_layers))}"
                + (" (LoRA)" if s.adapter else ""))


def train(cfg: TrainConfig, monitor: RunMonitor | None = None, *, loader: Callable | None = None,
          progress: Callable[[str], None] | None = None) -> dict:
    """Train ``cfg`` and return its results; live metrics go to ``monitor``."""
    import torch
    import transformers
    from transformers import Trainer, TrainingArguments

    from .models import layer_list, resolve_device, resolve_dtype, resolve_model, split_dtype
    from .pipeline import cached_model, prepare_sample
    from .tasks import SampleConfig

    monitor = monitor or RunMonitor()
    a = cfg.analysis
    t_start = time.perf_counter()
    try:
        a.validate()
        if cfg.steps is None and cfg.epochs is None:
            raise VariscopeError("give a number of steps or of epochs")
        if cfg.steps is not None and cfg.steps < 1:
            raise VariscopeError(f"steps must be at least 1, got {cfg.steps}")
        if cfg.lr <= 0:
            raise VariscopeError(f"learning rate must be positive, got {cfg.lr}")
        if cfg.batch_size < 1:
            raise VariscopeError(f"batch size must be at least 1, got {cfg.batch_size}")
        train_data = prepare_sample(a)
        eval_cfg = replace(a, task=replace(a.task, split="test"),
                           sampling=SampleConfig(n=cfg.eval_n, seed=a.sampling.seed))
        try:
            eval_data = prepare_sample(eval_cfg)
        except VariscopeError:
            eval_data = None
        if eval_data is None or len(eval_data) == 0 or eval_data.label_names != train_data.label_names:
            # no usable test split: hold out a stratified fifth of the training sample
            from .tasks import sample as _sample

            held = _sample(train_data, SampleConfig(n=max(len(train_data) // 5, len(train_data.label_names) * 2),
                                                    seed=a.sampling.seed + 1))
            held_set = set(map(tuple, zip(held.texts, held.labels.tolist())))
            keep = [i for i, (t, y) in enumerate(zip(train_data.texts, train_data.labels.tolist())) if (t, y) not in held_set]
            eval_data, train_data = held, train_data.subset(keep)
        ref = resolve_model(a.model, revision=a.revision)
        device = resolve_device(a.device)
        dtype = resolve_dtype(a.dtype, device)
        weights, amp = split_dtype(dtype)
        compute = amp or weights  # the dtype the forward pass runs in (Trainer AMP on CUDA)
        base, tok = (loader or cached_model)(ref, device, "float32" if device == "cpu" else dtype, a.trust_remote_code)
        L = len(layer_list(base)[1])
        cfg.selection.check(L)
        transformers.set_seed(cfg.seed)
        model = build_classifier(base, cfg.selection, len(train_data.label_names), a.pooling)
        enc_tr = tokenize(tok, train_data.texts, train_data.pairs, a.max_length)
        enc_ev = tokenize(tok, eval_data.texts, eval_data.pairs, a.max_length)
        enc_tr["_pad_id"] = enc_ev["_pad_id"] = tok.pad_token_id
        seq_len = float(np.mean([len(x) for x in enc_tr["input_ids"]]))
        costs = cost(base, cfg.selection, seq_len, len(train_data.label_names))
        metric_names = task_metrics(a.task.name, len(train_data.label_names))
        steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
        max_steps = cfg.steps if cfg.steps is not None else math.ceil(cfg.epochs * steps_per_epoch)
        eval_every = cfg.eval_every or max(1, max_steps // 5)
        if progress:
            progress(f"training {cfg.label()} for {max_steps} steps")

        def metrics_fn(p):
            logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
            return compute_metrics(np.argmax(logits, -1), p.label_ids, metric_names)

        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=tmp, max_steps=max_steps, per_device_train_batch_size=cfg.batch_size,
                per_device_eval_batch_size=64, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                warmup_steps=int(cfg.warmup_ratio * max_steps), lr_scheduler_type="linear",
                logging_strategy="steps", logging_steps=1, eval_strategy="steps", eval_steps=eval_every,
                save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
                use_cpu=device == "cpu", disable_tqdm=True, remove_unused_columns=False,
                dataloader_num_workers=0, dataloader_pin_memory=device.startswith("cuda"),
                bf16=device.startswith("cuda") and compute == "bfloat16",
                fp16=device.startswith("cuda") and compute == "float16")
            live = _callback_class()(monitor, cfg.batch_size)
            trainer = Trainer(model=model, args=args, train_dataset=_Encoded(enc_tr, train_data.labels),
                              eval_dataset=_Encoded(enc_ev, eval_data.labels), data_collator=_collate,
                              compute_metrics=metrics_fn, callbacks=[live])
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad} \
                if os.environ.get("VARISCOPE_CHECK_FROZEN") else None
            trainer.train()
            stopped = monitor.stop_event.is_set() or monitor.abandoned()
            done = [e for e in monitor.snapshot()["events"] if "eval" in e]
            if done and done[-1]["step"] == trainer.state.global_step:
                ev = {k: v for k, v in done[-1]["eval"].items() if k in metric_names}
            else:
                final = trainer.evaluate()
                ev = {k[5:]: float(v) for k, v in final.items() if k.startswith("eval_") and k[5:] in metric_names}
        monitor.push({"step": trainer.state.global_step, "elapsed": round(time.perf_counter() - t_start, 3),
                      "eval": ev, "final": True})
        history = [e for e in monitor.snapshot()["events"] if "loss" in e]
        result = {
            "label": cfg.label(), "strategy": cfg.strategy, "model": a.model, "task": a.task.label(),
            "classifier_layer": cfg.selection.classifier_layer, "tuned_layers": list(cfg.selection.tuned_layers),
            "adapter": cfg.selection.adapter, "tune_embeddings": cfg.selection.tune_embeddings,
            "layers_kept": len(layer_list(model.encoder)[1]), "n_layers": L,
            "trainable_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "total_params": int(sum(p.numel() for p in model.parameters())),
            **{k: costs[k] for k in ("full_trainable_params", "flops_per_example", "full_flops_per_example",
                                     "flops_vs_full", "seq_len")},
            "history": [{"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")} for e in history],
            "evals": [e for e in monitor.snapshot()["events"] if "eval" in e and not e.get("final")],
            "eval": ev, "metric": metric_names[0], "steps": int(trainer.state.global_step), "max_steps": max_steps,
            "seconds": round(time.perf_counter() - t_start, 3), "train_seconds": round(live.train_time, 3),
            "steps_per_second": live.steps / live.train_time if live.train_time else 0.0,
            "stopped": bool(stopped), "seed": cfg.seed, "lr": cfg.lr, "batch_size": cfg.batch_size,
            "n_train": len(train_data), "n_eval": len(eval_data), "device": device,
        }
        if before is not None:
            after = dict(model.named_parameters())
            result["frozen_unchanged"] = all(torch.equal(before[n], after[n]) for n in before)
        if cfg.remeasure:
            result["variability_before_after"] = _remeasure(base, model, tok, eval_data, a, device)
        result["_model"] = model  # removed by callers that do not need it
        monitor.set(result={k: v for k, v in result.items() if k != "_model"},
                    status="stopped" if stopped else "finished")
        return result
    except VariscopeError as e:
        monitor.set(status="failed", error=str(e))
        raise
    except Exception as e:  # keep the app alive; the message is shown on the page
        monitor.set(status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _remeasure(base, model, tok, data, a, device) -> dict:
    """ν per layer (0..ℓ*) on the eval texts before and after training."""
    from .hidden_states import extract_states
    from .models import layer_list
    from .variability import variability_curve

    enc = model.encoder
    enc.eval()
    k = len(layer_list(enc)[1])
    b = extract_states(base, tok, data.texts, data.pairs, pooling=a.pooling, max_length=a.max_length, device=device)[:k + 1]
    t = extract_states(enc, tok, data.texts, data.pairs, pooling=a.pooling, max_length=a.max_length, device=device)
    return {"layers": list(range(k + 1)),
            "before": variability_curve(b, data.labels).variability,
            "after": variability_curve(t, data.labels).variability}


def save_run(result: dict, out_dir: str) -> list[str]:
    """Trainable weights (safetensors), the results JSON and a PEFT LoraConfig snippet."""
    from safetensors.torch import save_file

    from .models import layer_list

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = result.get("_model")
    files = []
    if model is not None:
        tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(out / "trainable.safetensors"))
        files.append(str(out / "trainable.safetensors"))
        name, blocks = layer_list(model.encoder)
        sel = Selection(result["classifier_layer"], tuple(result["tuned_layers"]))
        (out / "lora_config.py").write_text(lora_snippet(sel, _lora_targets(blocks[0]), name.rsplit(".", 1)[-1]))
        files.append(str(out / "lora_config.py"))
    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    (out / "result.json").write_text(json.dumps(clean, indent=2))
    files.append(str(out / "result.json"))
    return files


def _artifacts(result: dict) -> dict:
    """In-memory exports of a finished run: weights (safetensors bytes), JSON, LoraConfig snippet."""
    from safetensors.torch import save as st_save

    from .models import layer_list

    model = result["_model"]
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    name, blocks = layer_list(model.encoder)
    sel = Selection(result["classifier_layer"], tuple(result["tuned_layers"]))
    return {"weights": st_save(tensors),
            "json": json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2),
            "lora": lora_snippet(sel, _lora_targets(blocks[0]), name.rsplit(".", 1)[-1])}


def start_in_thread(cfgs: list[TrainConfig], monitors: list[RunMonitor], **kw) -> threading.Thread:
    """Run configs one after another in a daemon thread (the app's background worker)."""

    def work():
        for c, m in zip(cfgs, monitors):
            if m.stop_event.is_set() or m.abandoned():
                m.set(status="stopped")
                continue
            try:
                r = train(c, m, **kw)
                m.artifacts = _artifacts(r)
                r.pop("_model", None)
                del r
            except Exception:
                pass  # status and error are in the monitor
            finally:
                gc.collect()
                snap = m.snapshot()
                print(f"variscope: run '{c.label()}' {snap['status']} after {snap['progress']['step']} steps"
                      + (" (browser session closed)" if m.abandoned() else ""), file=sys.stderr, flush=True)

    t = threading.Thread(target=work, daemon=True, name="variscope-train")
    t.start()
    return t
