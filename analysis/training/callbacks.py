"""The Trainer callback: live metrics into a :class:`RunMonitor`, and Stop within one step or eval batch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from transformers import TrainerCallback

from analysis.training.monitor import RunMonitor

_TIMING_KEYS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_loss")


class EvalInterrupted(Exception):
    """An evaluation cut short by Stop (or Skip); ``train`` catches it."""


class LiveMetrics(TrainerCallback):
    """Streams progress, losses and evaluations into ``monitor``; ends training when it asks.

    Training ends after the step in flight when ``monitor.should_stop()``; an
    evaluation ends after the batch in flight when ``interrupt()`` turns true
    (``monitor.should_stop`` during training, set by ``train`` for the final evaluation).
    """

    def __init__(self, monitor: RunMonitor, batch_size: int, eval_batch_size: int, eval_total: int):
        self.m = monitor
        self.bs = batch_size
        self.ebs = eval_batch_size
        self.eval_total = eval_total
        self.t0: float | None = None  # perf_counter at the start of training
        self.train_time = 0.0
        self._step_t: float | None = None  # perf_counter at the start of the step in flight
        self.steps = 0
        self.eval_batches = 0
        self.eval_phase = "eval"
        self.interrupt: Callable[[], bool] = monitor.should_stop
        self.diverged_at: int | None = None  # the step whose training or held-out loss was not finite

    def start_eval(self, phase: str, interrupt: Callable[[], bool]) -> None:
        """The next evaluation is ``phase`` ("eval", "final_eval") and ends early when ``interrupt()``."""
        self.eval_phase, self.interrupt, self.eval_batches = phase, interrupt, 0

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()
        self.m.set(status="running")

    def on_step_begin(self, args, state, control, **kw):
        self._step_t = time.perf_counter()
        if self.m.should_stop():
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kw):
        if self._step_t is not None:  # always set by on_step_begin
            self.train_time += time.perf_counter() - self._step_t
        self.steps += 1
        eta = (state.max_steps - state.global_step) * (self.train_time / self.steps)
        self.m.update_progress(
            step=state.global_step, max_steps=state.max_steps, elapsed=self.elapsed(), eta=eta, phase="train"
        )
        if self.m.should_stop():
            control.should_training_stop = True
            control.should_evaluate = False

    def on_prediction_step(self, args, state, control, **kw):
        self.eval_batches += 1
        self.m.update_progress(
            phase=self.eval_phase,
            eval_done=min(self.eval_batches * self.ebs, self.eval_total),
            eval_total=self.eval_total,
            elapsed=self.elapsed(),
        )
        if self.interrupt():
            raise EvalInterrupted()

    def on_evaluate(self, args, state, control, **kw):
        self.eval_batches = 0
        self.m.update_progress(phase="train")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 if self.t0 else 0.0

    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        entry = {"step": state.global_step, "elapsed": round(self.elapsed(), 3)}
        if "loss" in logs:
            entry.update(
                loss=float(logs["loss"]),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                examples_per_s=self.steps * self.bs / self.train_time if self.train_time else 0.0,
                eta=(state.max_steps - state.global_step) * (self.train_time / max(self.steps, 1)),
            )
        evals = {k[5:]: float(v) for k, v in logs.items() if k.startswith("eval_") and k not in _TIMING_KEYS}
        if evals:
            entry["eval"] = evals
            if "eval_loss" in logs:
                entry["eval_loss"] = float(logs["eval_loss"])
        if "loss" in entry or "eval" in entry:
            self.m.push(entry)
        losses = [float(logs[k]) for k in ("loss", "eval_loss") if k in logs]
        if self.diverged_at is None and not all(math.isfinite(x) for x in losses):
            self.diverged_at = state.global_step  # diverged: more steps cannot bring a NaN back
            control.should_training_stop = True
            control.should_evaluate = False
