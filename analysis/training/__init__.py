"""Partial fine-tuning: a classifier on layer ℓ*, layers above ℓ* removed, only chosen layers tuned.

Modules, one idea each:

- :mod:`.selection` — :class:`Selection`, the strategies (:func:`select`);
- :mod:`.model` — the truncated classifier (:func:`build_classifier`) and LoRA targets;
- :mod:`.cost` — parameters and FLOPs (:func:`cost`, :func:`selection_cost`, :func:`cost_preview`);
- :mod:`.estimate` — the time of a run before it starts (:class:`Estimate`, :func:`estimate_configs`);
- :mod:`.monitor` — :class:`RunMonitor`, a run's live state and its Stop/Skip flags;
- :mod:`.callbacks` — the Trainer callback that feeds the monitor and honours Stop;
- :mod:`.data` — training/held-out split, batches, metrics;
- :mod:`.config` — :class:`TrainConfig`;
- :mod:`.prefix` — the frozen-prefix cache (states entering the lowest tuned block, computed once per text);
- :mod:`.vocab` — the task-sized vocabulary (only the task's embedding rows train; scattered back at the end);
- :mod:`.trainer` — the Hugging Face Trainer of a run (its plan, batch, evaluations);
- :mod:`analysis.distributed` (shared with ``curve --stream``) — several processes: ranks, rank 0's decisions;
- :mod:`.run` — :class:`RunResult`, :func:`train`, :func:`baseline_jobs`;
- :mod:`.export` — :func:`save_run`, in-memory artifacts, the LoraConfig snippet;
- :mod:`.worker` — :func:`start_in_thread`, the app's background worker.

Names are imported lazily, so ``from analysis.training import Selection, RunMonitor``
does not import torch or transformers.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "STRATEGIES": "selection",
    "Selection": "selection",
    "select": "selection",
    "baseline_jobs": "run",
    "VariscopeClassifier": "model",
    "build_classifier": "model",
    "freeze_unused": "model",
    "lora_targets": "model",
    "cost": "cost",
    "selection_cost": "cost",
    "cost_preview": "cost",
    "Estimate": "estimate",
    "estimate_configs": "estimate",
    "RunMonitor": "monitor",
    "LiveMetrics": "callbacks",
    "task_metrics": "data",
    "compute_metrics": "data",
    "TrainConfig": "config",
    "RunResult": "run",
    "TrainOutput": "run",
    "train": "run",
    "save_run": "export",
    "artifacts": "export",
    "lora_snippet": "export",
    "run_and_export": "worker",
    "start_in_thread": "worker",
}

__all__ = sorted(_WHERE)

# The module analysis.training.cost shares its name with its function: bound here (the module is light: numpy
# and the selection), or the submodule, once anything imports it, would shadow the function as this attribute.
from analysis.training.cost import cost as cost  # noqa: E402


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
