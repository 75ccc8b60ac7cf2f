"""A run's live state, shared between the training thread and whoever watches it (page, CLI)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypedDict, Unpack

from analysis.store.jsonio import SCHEMA_VERSION, dumps

RUNNING = ("pending", "running", "stopping")


class TrainingProgress(TypedDict, total=False):
    """``RunMonitor.progress`` (which always holds every key) and the keywords of ``update_progress``."""

    step: int
    max_steps: int
    elapsed: float
    eta: float | None
    estimate: float | None  # seconds the run was estimated to take before it started
    phase: str  # "train", "eval", "final_eval", "export"
    eval_done: int
    eval_total: int


class RunMonitor:
    """Thread-safe store of a run's live metrics, status and stop flags.

    status: "pending" → "running" → ("stopping" →) "finished" | "stopped" | "failed".
    "stopping": Stop was pressed; training ended and the partial model is being
    evaluated (``progress["eval_done"]/["eval_total"]``) unless ``request_skip()``.
    A run stops itself when ``alive()`` turns false (the app passes "is this
    browser session still connected?") or when no ``heartbeat()`` came for
    ``abandon_after`` seconds; an abandoned run skips its final evaluation.
    """

    def __init__(
        self, log_path: str | None = None, abandon_after: float | None = None, alive: Callable[[], bool] | None = None
    ):
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self.status = "pending"
        self.error: str | None = None
        self.result: dict | None = None
        self.stop_event = threading.Event()
        self.skip_event = threading.Event()
        self.stop_requested_at: int | None = None  # the step counter when Stop arrived
        self.log_path = log_path
        self.abandon_after = abandon_after
        self.alive = alive  # e.g. "is the browser session still connected?"
        self._seen = time.time()
        self.progress: TrainingProgress = {
            "step": 0,
            "max_steps": 0,
            "elapsed": 0.0,
            "eta": None,
            "estimate": None,
            "phase": "train",
            "eval_done": 0,
            "eval_total": 0,
        }
        self.artifacts: dict | None = None

    def push(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)
            if self.log_path:
                with open(self.log_path, "a") as f:  # every line says its layout: a log may gather several runs
                    f.write(dumps({"schema_version": SCHEMA_VERSION, **event}) + "\n")

    def set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def update_progress(self, **kw: Unpack[TrainingProgress]) -> None:
        with self._lock:
            self.progress = {**self.progress, **kw}

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "events": list(self.events),
                "status": self.status,
                "error": self.error,
                "result": self.result,
                "progress": dict(self.progress),
                "stop_requested_at": self.stop_requested_at,
            }

    def request_stop(self) -> None:
        """End training within one step (or one batch of an evaluation in flight)."""
        with self._lock:
            if self.stop_requested_at is None:
                self.stop_requested_at = int(self.progress["step"])
        self.stop_event.set()

    def request_skip(self) -> None:
        """Stop, and skip the evaluation of the partial model (within one batch)."""
        self.request_stop()
        self.skip_event.set()

    def should_stop(self) -> bool:
        return self.stop_event.is_set() or self.abandoned()

    def should_skip(self) -> bool:
        return self.skip_event.is_set() or self.abandoned()

    def finish(self, result: dict, stopped: bool) -> None:
        """The run ended: its result (a plain dict) and "stopped" or "finished"."""
        self.set(result=result, status="stopped" if stopped else "finished")

    def fail(self, error: BaseException | str) -> None:
        """The run (or its export) failed: status "failed" with a one-line reason."""
        if isinstance(error, BaseException):
            from analysis.errors import VariscopeError

            error = str(error) if isinstance(error, VariscopeError) else f"{type(error).__name__}: {error}"
        self.set(status="failed", error=" ".join(str(error).split()) or "unknown error")

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
        return self.status in RUNNING
