"""ν per layer in one streaming pass: statistics instead of states.

:func:`stream_curve` samples the task as :func:`analysis.pipeline.get_states`
does, runs the same batch loop (:func:`analysis.models.hidden_states.for_each_pooled`)
and feeds each batch's pooled states into :class:`analysis.stream.stats.LayerStats`
instead of keeping them: memory is (L+1)·d² float64 whatever the sample size. The
statistics are summed on the model's device (a GPU's batches never cross to the CPU,
only the rows the state sample may keep); on MPS, which has no float64, on the CPU.
With ``world_size > 1`` each process takes the rows ``i`` with
``i % world_size == rank`` (no row twice, none padded) and the statistics are
summed with one ``all_reduce``; every process gets the same ν
(and the same kept rows, gathered).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analysis import settings
from analysis.data.streamed import open_sample
from analysis.distributed import all_gather, all_reduce, collective
from analysis.errors import VariscopeError
from analysis.models.hidden_states import for_each_pooled
from analysis.pipeline import AnalysisConfig, batch_for, concrete, load_for, resolve_target
from analysis.stream import memtrim
from analysis.stream.stats import KeptRows, LayerStats, check_band_sample, merge_kept
from analysis.stream.twopass import Projections, choose_mode, default_budget
from analysis.variability import SHARE_KEYS, CurveResult, kept_band

#: States kept per layer by default (``curve --stream --keep``, the app, ``cards --stream``, the bench).
DEFAULT_KEEP = settings.DEFAULT_KEEP
#: Texts between two hand-backs of freed heap to the system (:func:`analysis.stream.memtrim.trim`) in a pass.
TRIM_ROWS = 128


@dataclass
class StreamResult:
    """A streamed curve and what it was computed from.

    curve : ν per layer and counts, and a bootstrap band when asked for (computed on the
    kept states, ``n_kept`` of them, not on all ``n``);
    stats : the merged statistics (and the kept rows, ``stats.kept``);
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
    n_kept: int = 0

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

    ``keep`` rows (seeded by the sampling seed) are kept per layer in ``stats.kept``.
    A data file or Hugging Face dataset is read in chunks (:func:`analysis.data.streamed.open_sample`).
    ``mode`` (:func:`analysis.stream.twopass.choose_mode`, with ``memory_budget`` bytes) decides at the
    first batch, when L+1 and d are known, whether the statistics keep W ("stream") or not ("two-pass").
    """
    cfg.validate()
    choose_mode(mode, 1, 1, 2, None)  # an unknown mode is refused before any work
    cfg = concrete(cfg, target := resolve_target(cfg, cache_root))
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

    def run(on_pooled: Callable, progress: Callable | None = None, on_device: bool = False) -> None:
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
            representation=cfg.representation,
            max_length=cfg.max_length,
            batch_size=batch_for(cfg, device),
            device=device,
            progress=progress,
            total=len(rows),
            on_device=on_device,
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

    stats_on = statistics_device(device)  # before the pass: MPS says so at once
    run(feed, progress, on_device=True)
    seconds = {"load_model": t1 - t0, "extract": time.perf_counter() - t1}
    info = dict(source.info, device=device, dtype=target.dtype, model=cfg.model, task=cfg.task.label())
    info["statistics_on"] = stats_on
    labels = source.labels[rows]
    return StreamPass(holder["stats"], list(source.label_names), len(source), len(rows), seconds, info, run, labels)


def statistics_device(device: str) -> str:
    """Where the statistics of a pass on ``device`` are summed: there, but MPS (no float64) on the CPU, said once."""
    if str(device).startswith("mps"):
        warnings.warn("MPS has no float64: the streamed statistics are summed on the CPU", stacklevel=3)
        return "cpu"
    return str(device)


def trimming(on_pooled: Callable[[np.ndarray, np.ndarray], None]) -> Callable[[np.ndarray, np.ndarray], None]:
    """``on_pooled``, then :func:`analysis.stream.memtrim.trim` after every :data:`TRIM_ROWS` texts.

    The stream holds only its statistics, but glibc keeps the heap that each batch's forward
    pass frees, spread over the threads' arenas, and the process grows with the batches
    (:mod:`analysis.stream.memtrim`). A trim costs milliseconds, so it runs every few batches
    rather than after each one.
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
    ``bootstrap`` B > 0 adds a 5–95% band computed on the kept rows (``keep`` of them).
    With ``world_size > 1`` the default process group of ``torch.distributed`` must be
    initialised (:func:`analysis.distributed.join`); every process returns the same ν, and a failure
    in any process raises :class:`analysis.distributed.RankFailure` in all of them instead of a hang.
    """
    t0 = time.perf_counter()
    choose_mode(mode, 1, 1, 2, None)
    if mode == "auto" and memory_budget is None:
        memory_budget = default_budget()
    if mode == "auto" and world_size > 1:  # every process must choose the same mode
        memory_budget = int(all_reduce(np.array([float(memory_budget or 0)]), "min")[0])
    part = collective(
        lambda: stream_stats(
            cfg, rank=rank, world_size=world_size, mode=mode, memory_budget=memory_budget, band=bootstrap > 0, **kwargs
        ),
        world_size,
    )
    t1 = time.perf_counter()
    if world_size > 1:
        all_reduce_stats(part.stats)
        if part.stats.kept.keep:
            part.stats.kept = gather_kept(part.stats.kept)
    if part.stats.moments:  # an error here (NaN states) is the same everywhere: still agreed, one line
        nu, used = collective(part.stats.variability, world_size), "stream"
    else:
        nu, used = _second_pass(part, world_size, kwargs.get("progress")), "two-pass"
    t2 = time.perf_counter()
    weighting = part.stats.weighting
    band, k, facts = collective(lambda: stream_band(nu, part.stats, bootstrap, cfg.sampling.seed), world_size)
    shares = {key: facts.pop(key, None) for key in SHARE_KEYS}  # of the kept states' resamples
    curve = CurveResult(
        layers=list(range(len(nu))),
        variability=nu,
        counts={name: int(k) for name, k in zip(part.label_names, part.stats.sizes, strict=True)},
        band=band,
        settings={
            "weighting": weighting,
            "bootstrap": int(bootstrap) if band else 0,
            "mode": used,
            "world_size": world_size,
            "band_sample": k,
            **facts,
        },
        **shares,
    )
    t3 = time.perf_counter()
    seconds = {**part.seconds, "variability": t3 - t1, "total": t3 - t0}
    if used == "two-pass":
        seconds["second_pass"] = t2 - t1
    return StreamResult(curve, part.stats, part.n, part.rows, rank, world_size, seconds, part.info, used, k)


def _second_pass(part: StreamPass, world_size: int, progress) -> list[float]:
    """Pass 2 of the two-pass mode over this process's rows; the squared projections summed over processes."""
    proj = collective(lambda: Projections(part.stats), world_size)
    labels = part.labels
    assert part.run is not None and labels is not None

    def feed(index: np.ndarray, p: np.ndarray) -> None:
        proj.update(p, labels[index])

    collective(lambda: part.run(feed, progress), world_size)  # type: ignore[misc]
    if world_size > 1:
        proj.load_flat(all_reduce(proj.flat()))
    return collective(proj.variability, world_size)


def stream_band(nu: list[float], stats: LayerStats, bootstrap: int, seed: int) -> tuple[tuple | None, int, dict]:
    """(band around the exact ν from the kept rows, their number K, the kept rows' own ν and band).

    The same band as the app's (:func:`analysis.variability.kept_band`); (None, K, {}) without ``bootstrap``.
    """
    s = stats.kept
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
        band, facts = kept_band(
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


def all_reduce_stats(stats: LayerStats) -> None:
    """Sum the statistics of every process in place (one float64 ``all_reduce``; kept rows: :func:`gather_kept`)."""
    stats.load_flat(all_reduce(stats.flat()))


def gather_kept(kept: KeptRows) -> KeptRows:
    """The kept rows of the whole world, on every process (one ``all_gather_object``)."""
    return merge_kept([p for p in all_gather(kept) if isinstance(p, KeptRows)])
