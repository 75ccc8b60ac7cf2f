"""A run's data: the training sample, its held-out set, batches for the Trainer and the task's metrics."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from analysis.errors import VariscopeError
from analysis.models.batching import pad_rows

if TYPE_CHECKING:  # pragma: no cover
    from analysis.data.taskdata import TaskData
    from analysis.pipeline import AnalysisConfig


def split_train_eval(a: AnalysisConfig, eval_n: int) -> tuple[TaskData, TaskData]:
    """(training sample, held-out sample) of an AnalysisConfig ``a``.

    The held-out texts come from the task's test split (``eval_n`` of them);
    without a usable test split, a stratified fifth of the training sample is held out.
    """
    from analysis.data.tasks import SampleConfig
    from analysis.data.tasks import sample as _sample
    from analysis.pipeline import prepare_sample

    train_data = prepare_sample(a)
    eval_cfg = replace(a, task=replace(a.task, split="test"), sampling=SampleConfig(n=eval_n, seed=a.sampling.seed))
    try:
        eval_data = prepare_sample(eval_cfg)
    except VariscopeError:
        eval_data = None
    if eval_data is not None and len(eval_data) and eval_data.label_names == train_data.label_names:
        return train_data, eval_data
    held = _sample(
        train_data, SampleConfig(n=max(len(train_data) // 5, len(train_data.label_names) * 2), seed=a.sampling.seed + 1)
    )
    held_set = set(zip(held.texts, held.labels.tolist(), strict=True))
    pairs = zip(train_data.texts, train_data.labels.tolist(), strict=True)
    keep = [i for i, (t, y) in enumerate(pairs) if (t, y) not in held_set]
    return train_data.subset(keep), held


def split_validation(train_data: TaskData, seed: int = 0) -> tuple[TaskData, TaskData]:
    """(the rest, a stratified fifth) of a training sample: a validation split that never touches test texts."""
    from analysis.data.tasks import SampleConfig
    from analysis.data.tasks import sample as _sample

    n_val = max(len(train_data) // 5, len(train_data.label_names) * 2)
    held = _sample(train_data, SampleConfig(n=n_val, seed=seed))
    held_set = set(zip(held.texts, held.labels.tolist(), strict=True))
    pairs = zip(train_data.texts, train_data.labels.tolist(), strict=True)
    return train_data.subset([i for i, (t, y) in enumerate(pairs) if (t, y) not in held_set]), held


class Encoded:
    """Tokenized texts and labels as a map-style dataset of indices (batches are padded by :func:`collate`)."""

    def __init__(self, enc, labels, prefix=None):
        self.enc, self.labels, self.prefix = enc, labels, prefix

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"i": i, "enc": self.enc, "label": int(self.labels[i]), "prefix": self.prefix}


def collate(features):
    """Pad a list of examples with the same padding as the analysis (batching.pad_rows).

    With a prefix cache (``Encoded(..., prefix=PrefixStates)``) the batch also carries
    ``prefix_states`` (B, T, d), zero-padded like the tokens.
    """
    import torch

    enc = features[0]["enc"]
    idx = np.array([f["i"] for f in features])
    b = pad_rows(enc, idx, enc["_pad_id"])
    out = {**b.tensors, "labels": torch.tensor([f["label"] for f in features], dtype=torch.long)}
    prefix = features[0].get("prefix")
    if prefix is not None:
        out["prefix_states"] = prefix.batch(idx, int(out["input_ids"].shape[1]))
    return out


def task_metrics(task_name: str | None, num_labels: int) -> list[str]:
    """Metric names: accuracy by default; GLUE's own; macro-F1 for imbalanced offline tasks."""
    from analysis.data.tasks import GLUE_METRIC

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
