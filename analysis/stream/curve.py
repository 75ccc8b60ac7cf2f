"""ν per layer in one streaming pass: statistics instead of states.

:func:`stream_curve` samples the task as :func:`analysis.pipeline.get_states`
does, runs the same batch loop (:func:`analysis.models.hidden_states.for_each_pooled`)
and feeds each batch's pooled states into :class:`analysis.stream.stats.LayerStats`
instead of keeping them: memory is (L+1)·d² float64 whatever the sample size.
With ``world_size > 1`` each process takes the rows ``i`` with
``i % world_size == rank`` (no row twice, none padded) and the statistics are
summed with one ``all_reduce``; every process gets the same ν
(and the same state sample, gathered).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analysis.data.streamed import open_sample
from analysis.errors import VariscopeError
from analysis.models.hidden_states import for_each_pooled
from analysis.models.load import resolve_device
from analysis.pipeline import AnalysisConfig, batch_for, load_for, resolve_target
from analysis.stream import memtrim
from analysis.stream.stats import LayerStats, StateSample, check_band_sample, merge_samples
from analysis.stream.twopass import Projections, choose_mode, default_budget
from analysis.variability import CurveResult, sample_band

#: States kept per layer by default (``curve --stream --keep``, the app, ``cards --stream``, the bench).
DEFAULT_KEEP = 2_000
#: Texts between two hand-backs of freed heap to the system (:func:`analysis.stream.memtrim.trim`) in a pass.
TRIM_ROWS = 128


@dataclass
class StreamResult:
    """A streamed curve and what it was computed from.

    curve : ν per layer and counts, and a bootstrap band when asked for (computed on the
    state sample, ``band_sample`` states, not on all ``n``);
    stats : the merged statistics (and the state sample, ``stats.sample``);
    n : texts in the whole sample; rows : texts this process ran;
    mode : "stream" (one pass, W per layer) or "two-pass" (:mod:`analysis.stream.twopass`).
    """

    curve: CurveResult
    stats: LayerStats
    n: int
    rows: int
    rank: int
    world_size: int
    seconds: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    mode: str = "stream"
    band_sample: int = 0

    def to_dict(self) -> dict:
        """The curve's dict plus ``mode``, ``n`` and ``world_size``."""
        return {**self.curve.to_dict(), "mode": self.mode, "n": self.n, "world_size": self.world_size}


def shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Row indices of one process: ``i % world_size == rank`` (disjoint, covering, no padding)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise VariscopeError(f"rank {rank} is outside a world of {world_size} processes")
    return np.arange(rank, n, world_size)


@dataclass
class StreamPass:
    """One process's share of a streamed pass: its statistics (not yet reduced) and the sample's facts.

    ``run(on_pooled, progress)`` runs another forward pass over the same rows (the second
    pass of the two-pass mode); ``labels`` are the classes of this process's rows in order.
    """

    stats: LayerStats
    label_names: list[str]
    n: int
    rows: int
    seconds: dict
    info: dict
    run: Callable | None = None
    labels: np.ndarray | None = None


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
    mode: str = "stream",
    memory_budget: int | None = None,
    band: bool = False,
) -> StreamPass:
    """Statistics of the rows of ``cfg``'s sample that fall to ``rank`` (:func:`shard`), in one pass.

    ``keep`` rows (seeded by the sampling seed) are kept per layer in ``stats.sample``.
    A data file or Hugging Face dataset is read in chunks (:func:`analysis.data.streamed.open_sample`).
    ``mode`` (:func:`analysis.stream.twopass.choose_mode`, with ``memory_budget`` bytes) decides at the
    first batch, when L+1 and d are known, whether the statistics keep W ("stream") or not ("two-pass").
    """
    cfg.validate()
    choose_mode(mode, 1, 1, 2, None)  # an unknown mode is refused before any work
    target = resolve_target(cfg, cache_root)
    source = open_sample(cfg, content)
    if world_size > len(source):
        raise VariscopeError(f"{world_size} processes for {len(source)} texts: every process needs at least one text")
    rows = shard(len(source), rank, world_size)
    sizes = np.bincount(source.labels, minlength=len(source.label_names))
    if band:  # the kept rows are known now: a sample too small for the band is refused before the forward pass
        check_band_sample(source.labels, source.label_names, keep, cfg.sampling.seed)
    t0 = time.perf_counter()
    model, tok, device = load_for(cfg, target, loader)
    t1 = time.perf_counter()

    def run(on_pooled: Callable, progress: Callable | None = None) -> None:
        texts, pairs = source.texts(rows)
        if not source.streamed:  # held anyway: one chunk, the same batches as the states path
            texts, pairs = list(texts), None if pairs is None else list(pairs)  # type: ignore[assignment]
        for_each_pooled(
            model,
            tok,
            texts,
            pairs,
            trimming(on_pooled),
            pooling=cfg.pooling,
            max_length=cfg.max_length,
            batch_size=batch_for(cfg, device),
            device=device,
            progress=progress,
            total=len(rows),
        )

    holder: dict[str, LayerStats] = {}

    def feed(index: np.ndarray, p: np.ndarray) -> None:
        if "stats" not in holder:
            used = choose_mode(mode, p.shape[0], p.shape[2], len(sizes), memory_budget)
            holder["stats"] = LayerStats(
                p.shape[0],
                p.shape[2],
                sizes,
                weighting=weighting,
                keep=keep,
                seed=cfg.sampling.seed,
                label_names=list(source.label_names),
                moments=used == "stream",
            )
        holder["stats"].update(p, source.labels[rows[index]], rows[index])

    run(feed, progress)
    seconds = {"load_model": t1 - t0, "extract": time.perf_counter() - t1}
    info = dict(source.info, device=device, dtype=target.dtype, model=cfg.model, task=cfg.task.label())
    labels = source.labels[rows]
    return StreamPass(holder["stats"], list(source.label_names), len(source), len(rows), seconds, info, run, labels)


def trimming(on_pooled: Callable[[np.ndarray, np.ndarray], None]) -> Callable[[np.ndarray, np.ndarray], None]:
    """``on_pooled``, then :func:`analysis.stream.memtrim.trim` after every :data:`TRIM_ROWS` texts.

    The stream holds only its statistics, but glibc keeps the heap that each batch's forward
    pass frees, spread over the threads' arenas, and the process grows with the batches (MiniLM,
    30,000 texts, batch 32: +357 to +429 MB peak as is; +246 MB trimming after every batch,
    +267 MB every 256 texts). One trim takes about 4 ms there.
    """
    seen = 0

    def f(index: np.ndarray, pooled: np.ndarray) -> None:
        nonlocal seen
        on_pooled(index, pooled)
        seen += len(index)
        if seen >= TRIM_ROWS:
            seen = 0
            memtrim.trim()

    return f


def stream_curve(
    cfg: AnalysisConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    mode: str = "stream",
    memory_budget: int | None = None,
    bootstrap: int = 0,
    **kwargs,
) -> StreamResult:
    """ν per layer of ``cfg`` without holding the states (see the module docstring).

    ``kwargs`` go to :func:`stream_stats`. ``mode``: "stream" (one pass), "two-pass"
    (:mod:`analysis.stream.twopass`, two forward passes, no d×d matrix) or "auto" (two-pass when
    W would not fit ``memory_budget`` bytes; default :func:`analysis.stream.twopass.default_budget`).
    ``bootstrap`` B > 0 adds a 5–95% band computed on the state sample (``keep`` states).
    With ``world_size > 1`` the default process group of ``torch.distributed`` must be
    initialised (:func:`init_distributed`); every process returns the same ν, and a failure
    in any process raises :class:`RankFailure` in all of them instead of a hang.
    """
    t0 = time.perf_counter()
    choose_mode(mode, 1, 1, 2, None)
    if mode == "auto" and memory_budget is None:
        memory_budget = default_budget()
    if mode == "auto" and world_size > 1:  # every process must choose the same mode
        memory_budget = int(_all_reduce(np.array([float(memory_budget or 0)]), "min")[0])
    sp = collective(
        lambda: stream_stats(
            cfg, rank=rank, world_size=world_size, mode=mode, memory_budget=memory_budget, band=bootstrap > 0, **kwargs
        ),
        world_size,
    )
    t1 = time.perf_counter()
    if world_size > 1:
        all_reduce_stats(sp.stats)
        if sp.stats.sample.keep:
            sp.stats.sample = gather_sample(sp.stats.sample)
    if sp.stats.moments:  # an error here (NaN states) is the same everywhere: still agreed, one line
        nu, used = collective(sp.stats.variability, world_size), "stream"
    else:
        nu, used = _second_pass(sp, world_size, kwargs.get("progress")), "two-pass"
    t2 = time.perf_counter()
    weighting = sp.stats.weighting
    band, k, facts = collective(lambda: stream_band(nu, sp.stats, bootstrap, cfg.sampling.seed), world_size)
    curve = CurveResult(
        layers=list(range(len(nu))),
        variability=nu,
        counts={name: int(k) for name, k in zip(sp.label_names, sp.stats.sizes, strict=True)},
        band=band,
        settings={
            "weighting": weighting,
            "bootstrap": int(bootstrap) if band else 0,
            "mode": used,
            "world_size": world_size,
            "band_sample": k,
            **facts,
        },
    )
    t3 = time.perf_counter()
    seconds = {**sp.seconds, "variability": t3 - t1, "total": t3 - t0}
    if used == "two-pass":
        seconds["second_pass"] = t2 - t1
    return StreamResult(curve, sp.stats, sp.n, sp.rows, rank, world_size, seconds, sp.info, used, k)


def _second_pass(sp: StreamPass, world_size: int, progress) -> list[float]:
    """Pass 2 of the two-pass mode over this process's rows; the squared projections summed over processes."""
    proj = collective(lambda: Projections(sp.stats), world_size)
    labels = sp.labels
    assert sp.run is not None and labels is not None

    def feed(index: np.ndarray, p: np.ndarray) -> None:
        proj.update(p, labels[index])

    collective(lambda: sp.run(feed, progress), world_size)  # type: ignore[misc]
    if world_size > 1:
        proj.load_flat(_all_reduce(proj.flat()))
    return collective(proj.variability, world_size)


def stream_band(nu: list[float], stats: LayerStats, bootstrap: int, seed: int) -> tuple[tuple | None, int, dict]:
    """(band around the exact ν from the state sample, its size K, the sample's own ν and band).

    The same band as the app's (:func:`analysis.variability.sample_band`); (None, K, {}) without ``bootstrap``.
    """
    s = stats.sample
    k = 0 if s.states is None else int(s.states.shape[1])
    if not bootstrap:
        return None, k, {}
    if s.states is None:
        raise VariscopeError("the bootstrap band of a streamed curve needs a state sample: keep some states (--keep)")
    missing = np.flatnonzero(np.bincount(s.labels, minlength=len(stats.sizes)) == 0)
    if len(missing):  # else the resamples would measure the other classes' ν
        c = int(missing[0])
        name = stats.label_names[c] if stats.label_names else str(c)
        raise VariscopeError(
            f"the bootstrap band uses the sample of {k} states: class '{name}' has none of them; keep more (--keep)"
        )
    try:
        band, facts = sample_band(
            nu,
            s.states,
            s.labels,
            bootstrap=bootstrap,
            weighting=stats.weighting,
            seed=seed,
            label_names=stats.label_names,
        )
    except VariscopeError as e:
        raise VariscopeError(f"the bootstrap band uses the sample of {k} states: {e}; keep more (--keep)") from None
    return band, k, facts


class RankFailure(VariscopeError):
    """A process of a torchrun world failed; raised in every process (``rank``: the first that failed)."""

    def __init__(self, rank: int, reason: str, *, everywhere: bool = False):
        super().__init__(reason if everywhere else f"rank {rank} failed: {reason}")  # the same in all: as one process
        self.rank = rank


def collective(fn: Callable, world_size: int):
    """``fn()``, then (with several processes) agree that every process succeeded before any all_reduce.

    An exception in one process is not raised at once (the others would wait for it forever in
    the next collective): every process joins one ``all_gather_object`` of ok/failed flags, and
    if any failed all of them raise the same :class:`RankFailure`.
    """
    if world_size <= 1:
        return fn()
    out, error = None, None
    try:
        out = fn()
    except Exception as e:
        error = e
    agree(error)
    return out


def agree(error: BaseException | None) -> None:
    """Exchange this process's ok/failed flag (and reason) with all the others; raise if any failed."""
    import torch.distributed as dist

    reason = None
    if error is not None:
        reason = error.message if isinstance(error, VariscopeError) else f"{type(error).__name__}: {error}"
        reason = (str(reason).splitlines() or [""])[0][:300]
    parts: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, reason)
    failed = [(r, str(why)) for r, why in enumerate(parts) if why is not None]
    if failed:
        r, why = failed[0]
        raise RankFailure(r, why, everywhere=len(failed) == len(parts) and all(w == why for _, w in failed))


def share(flag: bool, world_size: int) -> bool:
    """Rank 0's ``flag``, on every process (one ``broadcast_object_list``)."""
    if world_size <= 1:
        return flag
    import torch.distributed as dist

    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _all_reduce(v: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (or min) a float64 vector over every process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise VariscopeError("several processes need torch.distributed's process group: run under torchrun")
    buf = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
    if dist.get_backend() == "nccl":
        buf = buf.cuda()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return buf.cpu().numpy()


def all_reduce_stats(stats: LayerStats) -> None:
    """Sum the statistics of every process in place (one float64 ``all_reduce``; samples: :func:`gather_sample`)."""
    stats.load_flat(_all_reduce(stats.flat()))


def gather_sample(sample: StateSample) -> StateSample:
    """The state sample of the whole world, on every process (one ``all_gather_object``)."""
    import torch.distributed as dist

    parts: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, sample)
    return merge_samples([p for p in parts if isinstance(p, StateSample)])


def dist_timeout() -> int:
    """Seconds a process waits for the others in one collective: ``VARISCOPE_DIST_TIMEOUT``, default 3 hours."""
    import os

    v = os.environ.get("VARISCOPE_DIST_TIMEOUT", "")
    try:
        seconds = int(v) if v else 3 * 3600
    except ValueError:
        raise VariscopeError(f"VARISCOPE_DIST_TIMEOUT={v!r} is not a number of seconds") from None
    if seconds < 1:
        raise VariscopeError(f"VARISCOPE_DIST_TIMEOUT must be a positive number of seconds, got {seconds}")
    return seconds


def init_distributed(device: str = "auto", timeout_s: float | None = None) -> tuple[int, int]:
    """(rank, world_size) of this process; with ``WORLD_SIZE > 1`` (torchrun) joins the process group.

    gloo on CPU, nccl on CUDA (each process on GPU ``LOCAL_RANK``). One process: (0, 1), nothing started.
    ``timeout_s``: a collective that waits longer fails instead of hanging (a safety net: a failing
    process is normally reported through :func:`agree` at once). Default: ``VARISCOPE_DIST_TIMEOUT``
    seconds or 3 hours, as for training: the others wait while rank 0 alone prepares the model
    (a first conversion of a GGUF model takes minutes), longer than torch's 30 minutes would allow.
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
        seconds = dist_timeout() if timeout_s is None else timeout_s
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=seconds))
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
