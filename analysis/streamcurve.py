"""ν per layer in one streaming pass: statistics instead of states.

:func:`stream_curve` samples the task as :func:`analysis.pipeline.get_states`
does, runs the same batch loop (:func:`analysis.hidden_states.for_each_pooled`)
and feeds each batch's pooled states into :class:`analysis.streaming.LayerStats`
instead of keeping them: memory is (L+1)·d² float64 whatever the sample size.
With ``world_size > 1`` each process takes the rows ``i`` with
``i % world_size == rank`` (no row twice, none padded) and the statistics are
summed with one ``all_reduce``; every process gets the same ν
(and the same state sample, gathered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import VariscopeError
from .hidden_states import for_each_pooled
from .models import resolve_device
from .pipeline import AnalysisConfig, load_for, prepare_sample, resolve_target
from .streaming import LayerStats, StateSample, merge_samples
from .variability import CurveResult


@dataclass
class StreamResult:
    """A streamed curve and what it was computed from.

    curve : ν per layer and counts (no bootstrap band: that needs the states);
    stats : the merged statistics (and the state sample, ``stats.sample``);
    n : texts in the whole sample; rows : texts this process ran.
    """

    curve: CurveResult
    stats: LayerStats
    n: int
    rows: int
    rank: int
    world_size: int
    seconds: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The curve's dict plus ``mode`` ("stream"), ``n`` and ``world_size``."""
        return {**self.curve.to_dict(), "mode": "stream", "n": self.n, "world_size": self.world_size}


def shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Row indices of one process: ``i % world_size == rank`` (disjoint, covering, no padding)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise VariscopeError(f"rank {rank} is outside a world of {world_size} processes")
    return np.arange(rank, n, world_size)


@dataclass
class StreamPass:
    """One process's share of a streamed pass: its statistics (not yet reduced) and the sample's facts."""

    stats: LayerStats
    label_names: list[str]
    n: int
    rows: int
    seconds: dict
    info: dict


def stream_stats(
    cfg: AnalysisConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    weighting: str = "equal",
    keep: int = 0,
    content: bytes | None = None,
    loader: Callable | None = None,
    cache_root=None,
) -> StreamPass:
    """Statistics of the rows of ``cfg``'s sample that fall to ``rank`` (:func:`shard`), in one pass.

    ``keep`` rows (seeded by the sampling seed) are kept per layer in ``stats.sample``.
    """
    cfg.validate()
    target = resolve_target(cfg, cache_root)
    sub = prepare_sample(cfg, content)
    if world_size > len(sub):
        raise VariscopeError(f"{world_size} processes for {len(sub)} texts: every process needs at least one text")
    rows = shard(len(sub), rank, world_size)
    sizes = np.bincount(sub.labels, minlength=len(sub.label_names))
    t0 = time.perf_counter()
    model, tok, device = load_for(cfg, target, loader)
    t1 = time.perf_counter()
    texts = [sub.texts[i] for i in rows]
    pairs = None if sub.pairs is None else [sub.pairs[i] for i in rows]
    holder: dict[str, LayerStats] = {}

    def feed(index: np.ndarray, p: np.ndarray) -> None:
        if "stats" not in holder:
            holder["stats"] = LayerStats(
                p.shape[0], p.shape[2], sizes, weighting=weighting, keep=keep, seed=cfg.sampling.seed
            )
        holder["stats"].update(p, sub.labels[rows[index]], rows[index])

    for_each_pooled(
        model,
        tok,
        texts,
        pairs,
        feed,
        pooling=cfg.pooling,
        max_length=cfg.max_length,
        batch_size=cfg.batch_size,
        device=device,
        progress=progress,
    )
    seconds = {"load_model": t1 - t0, "extract": time.perf_counter() - t1}
    info = dict(sub.info, device=device, dtype=target.dtype, model=cfg.model, task=cfg.task.label())
    return StreamPass(holder["stats"], list(sub.label_names), len(sub), len(rows), seconds, info)


def stream_curve(cfg: AnalysisConfig, *, rank: int = 0, world_size: int = 1, **kwargs) -> StreamResult:
    """ν per layer of ``cfg`` without holding the states (see the module docstring).

    ``kwargs`` go to :func:`stream_stats`. With ``world_size > 1`` the default
    process group of ``torch.distributed`` must be initialised
    (:func:`init_distributed`); every process returns the same ν.
    """
    t0 = time.perf_counter()
    sp = stream_stats(cfg, rank=rank, world_size=world_size, **kwargs)
    t1 = time.perf_counter()
    if world_size > 1:
        all_reduce_stats(sp.stats)
        if sp.stats.sample.keep:
            sp.stats.sample = gather_sample(sp.stats.sample)
    nu = sp.stats.variability()
    weighting = sp.stats.weighting
    curve = CurveResult(
        layers=list(range(len(nu))),
        variability=nu,
        counts={name: int(k) for name, k in zip(sp.label_names, sp.stats.sizes, strict=True)},
        settings={"weighting": weighting, "bootstrap": 0, "mode": "stream", "world_size": world_size},
    )
    t2 = time.perf_counter()
    seconds = {**sp.seconds, "variability": t2 - t1, "total": t2 - t0}
    return StreamResult(curve, sp.stats, sp.n, sp.rows, rank, world_size, seconds, sp.info)


def all_reduce_stats(stats: LayerStats) -> None:
    """Sum the statistics of every process in place (one float64 ``all_reduce``; samples: :func:`gather_sample`)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise VariscopeError("several processes need torch.distributed's process group: run under torchrun")
    buf = torch.from_numpy(stats.flat())
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    stats.load_flat(buf.cpu().numpy())


def gather_sample(sample: StateSample) -> StateSample:
    """The state sample of the whole world, on every process (one ``all_gather_object``)."""
    import torch.distributed as dist

    parts: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, sample)
    return merge_samples([p for p in parts if isinstance(p, StateSample)])


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """(rank, world_size) of this process; with ``WORLD_SIZE > 1`` (torchrun) joins the process group.

    gloo on CPU, nccl on CUDA (each process on GPU ``LOCAL_RANK``). One process: (0, 1), nothing started.
    """
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    cuda = resolve_device(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def close_distributed(*, wait: bool = True) -> None:
    """Leave the process group, if this process joined one.

    ``wait``: first a barrier, so that no process tears gloo down while another
    still uses it (without it a process sometimes aborts at exit, "terminate
    called without an active exception"). Pass False after an error, when the
    others may never arrive.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
