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
    """(training sample, held-out sample) of an AnalysisConfig ``a``; no held-out text is a training text.

    The held-out texts come from the task's test split (``eval_n`` of them). A data file, or a
    dataset without a test split, has none: then the held-out texts are a stratified sample of the
    source's rows that the training sample does not contain (fewer than ``eval_n`` when fewer are
    left), and only when that leaves a class out, a stratified fifth of the training sample is set
    apart. ``held.info["held_out"]`` says which happened and how many texts.
    """
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import task_kind
    from analysis.pipeline import prepare_sample

    train_data = prepare_sample(a)
    if task_kind(a.task) != "file" and a.task.split.lower() not in ("test", "validation", "eval", "dev"):
        eval_cfg = replace(a, task=replace(a.task, split="test"), sampling=SampleConfig(n=eval_n, seed=a.sampling.seed))
        try:
            test = prepare_sample(eval_cfg)
        except VariscopeError:
            test = None
        if test is not None and test.label_names == train_data.label_names:
            held = _drop_seen(test, train_data)
            if len(held):
                held.info["held_out"] = f"{len(held)} held-out texts from the test split"
                return train_data, held
    return _hold_out_rest(a, train_data, eval_n)


def _keys(d: TaskData) -> list[tuple[str, str | None]]:
    return list(zip(d.texts, d.pairs if d.pairs is not None else [None] * len(d), strict=True))


def _drop_seen(d: TaskData, train: TaskData) -> TaskData:
    """``d`` without the rows whose text (and pair) is also a row of ``train``."""
    seen = set(_keys(train))
    return d.subset([i for i, k in enumerate(_keys(d)) if k not in seen])


def _hold_out_rest(a: AnalysisConfig, train: TaskData, eval_n: int) -> tuple[TaskData, TaskData]:
    """A source without a test split: held-out texts from its rows outside the training sample."""
    from analysis.data.sampling import SampleConfig, sample
    from analysis.data.tasks import load_task

    rest = _drop_seen(load_task(a.task), train)
    index = {name: c for c, name in enumerate(train.label_names)}
    rest = rest.subset([i for i, y in enumerate(rest.labels.tolist()) if rest.label_names[y] in index])
    rest.labels = np.array([index[rest.label_names[y]] for y in rest.labels.tolist()], dtype=np.int64)
    rest.label_names = list(train.label_names)
    held = sample(rest, SampleConfig(n=eval_n, seed=a.sampling.seed + 1)) if len(rest) else rest
    if len(held) and np.all(np.bincount(held.labels, minlength=len(index)) > 0):
        asked = "" if len(held) >= eval_n else f" (of {eval_n} asked: fewer rows are left)"
        held.info["held_out"] = f"{len(held)} held-out texts{asked}, from rows not in the training sample"
        return train, held
    held = sample(train, SampleConfig(n=max(len(train) // 5, len(index) * 2), seed=a.sampling.seed + 1))
    kept = _drop_seen(train, held)
    held.info["held_out"] = (
        f"{len(held)} held-out texts set apart from the training sample (training on the other {len(kept)}): "
        "the source has too few rows outside it"
    )
    return kept, held


def split_validation(train_data: TaskData, seed: int = 0) -> tuple[TaskData, TaskData]:
    """(the rest, a stratified fifth) of a training sample: a validation split that never touches test texts."""
    from analysis.data.sampling import SampleConfig
    from analysis.data.sampling import sample as _sample

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
