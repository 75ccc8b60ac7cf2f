"""A run's data: the training sample, its held-out set, batches for the Trainer and the task's metrics."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
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


class RankShards:
    """The training sampler of ``world`` processes: each process reads the same rows in every epoch.

    The Trainer's own sampler under DDP draws one permutation of all rows per epoch, and accelerate
    deals its consecutive per-process batches to the processes in turn (``BatchSamplerShard``: batch
    i to process i % world), so a process reads other rows in every epoch, and its frozen-prefix
    cache would have to hold every row. Here the rows are split once into ``world`` fixed shards
    (rows ``r::world`` of a permutation of all rows seeded by ``seed``). In epoch e each shard is
    permuted anew (seeded by seed, e and r) and cycled to ``steps × batch`` rows (shards differ by
    at most one row; a shorter one repeats its own first rows, so every process takes the same
    number of steps and reads only its own rows), and the order yielded deals them per step:
    shard 0's ``batch`` rows of step k, shard 1's, … . accelerate's dealing then hands process r
    exactly shard r, and one process reading the same order with the global batch
    ``world × batch`` takes the same examples at every step as the ``world`` processes.

    Against the one-process sampler, each step's global batch draws ``batch`` rows from every
    shard (a stratified draw from a random split instead of a uniform one) and an epoch reads
    every row once (plus the cycled rows). One process keeps the Trainer's own sampler, so its
    runs are what they were.
    """

    def __init__(self, n: int, world: int, batch: int, seed: int):
        if n < world:
            raise VariscopeError(f"{n} training texts cannot be shared by {world} processes")
        self.world, self.batch, self.seed, self.epoch = world, batch, seed, 0
        perm = np.random.default_rng(seed).permutation(n)
        self.shards = [np.sort(perm[r::world]) for r in range(world)]
        self.steps = -(-len(self.shards[0]) // batch)  # shard 0 is the longest

    def shard(self, rank: int) -> np.ndarray:
        """The sorted row ids process ``rank`` reads, in every epoch."""
        return self.shards[rank]

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's loader) before every epoch."""
        self.epoch = epoch

    def order(self, rank: int) -> np.ndarray:
        """Process ``rank``'s rows in the current epoch: ``steps × batch`` ids of its shard."""
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        return np.resize(rng.permutation(self.shards[rank]), self.steps * self.batch)

    def __len__(self) -> int:
        return self.steps * self.batch * self.world

    def __iter__(self):
        per = np.stack([self.order(r).reshape(self.steps, self.batch) for r in range(self.world)], axis=1)
        return iter(per.reshape(-1).tolist())  # (steps, world, batch): step by step, process by process


def eval_rows(n: int, world: int, rank: int, batch: int) -> np.ndarray:
    """Sorted ids of the held-out rows process ``rank`` reads in every evaluation of ``n`` texts.

    The Trainer evaluates several processes through a sequential loader of ``batch`` rows per
    process that accelerate shards (``BatchSamplerShard``: batches dealt in turn, the last ones
    completed with the first rows, whose duplicate predictions ``gather_for_metrics`` drops):
    the same rows at every evaluation, listed here by that same class.
    """
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    shard = BatchSamplerShard(BatchSampler(range(n), batch, drop_last=False), world, rank)
    return np.unique(np.fromiter(itertools.chain.from_iterable(shard), dtype=np.int64))


@dataclass
class RankRows:
    """The training and held-out rows that process ``rank`` of ``world`` reads (sorted ids), and every process's
    counts (``per_rank``: ``{"train": [n_0, …], "eval": [m_0, …]}``, for the run's JSON)."""

    rank: int
    world: int
    train: np.ndarray
    eval: np.ndarray
    per_rank: dict


def rank_rows(shards: RankShards, n_eval: int, rank: int, eval_batch: int) -> RankRows:
    """The rows of process ``rank`` under ``shards`` and the evaluation's sharding of ``n_eval`` held-out texts."""
    w = shards.world
    evals = [eval_rows(n_eval, w, r, eval_batch) for r in range(w)]
    counts = {"train": [len(shards.shard(r)) for r in range(w)], "eval": [len(e) for e in evals]}
    return RankRows(rank, w, shards.shard(rank), evals[rank], counts)


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
