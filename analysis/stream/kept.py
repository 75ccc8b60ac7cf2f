"""Samples too large to hold: ν exact from the streamed statistics, everything else on K kept rows.

Above :data:`STREAM_ABOVE` texts the app does not hold the pooled states of the whole sample
((L+1)·N·d float32). It streams them instead (:func:`analysis.stream.curve.stream_curve`): ν of
every layer comes exactly from running statistics over all N texts, and K =
:data:`~analysis.stream.curve.DEFAULT_KEEP` seeded rows of them keep their states (the same rows
at every layer): the kept rows. The bootstrap band, the projections and the layer cards then run
on those. ("Sample" means the N texts drawn for the task, :mod:`analysis.data.sampling`.)

:class:`KeptStates` is a :class:`~analysis.pipeline.StatesResult` whose ``states`` are the
kept rows (K, not N), with the exact curve, N and the rows' positions beside them, so every
consumer of states (projections, cards, the band) takes it unchanged. :func:`curve_of` and
:func:`cards_of` give one answer for both kinds: the exact ν, with the band or the probe scores
from whatever states there are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from analysis import settings
from analysis.cards.scores import CardsConfig, LayerCards, rank_agreement
from analysis.data.streamed import open_sample
from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig, StatesResult
from analysis.recommend import DEFAULT_TOLERANCE
from analysis.store.cache import DiskCache
from analysis.stream.curve import DEFAULT_KEEP, StreamResult, stream_curve
from analysis.stream.curvecache import StreamSettings, load_stream, save_stream, stream_key
from analysis.variability import SHARE_KEYS, CurveResult, kept_band, variability_curve

#: Samples of more texts than this are streamed by the app (exact ν, states of the kept rows only).
STREAM_ABOVE = settings.STREAM_ABOVE
#: Most rows a streamed run of the app keeps (UMAP and the leave-one-out kNN grow faster than linearly).
KEEP_MAX = settings.MAX_KEEP


@dataclass
class KeptStates(StatesResult):
    """The states of K kept rows of N texts, with ν of all N beside them.

    states : float32 (L+1, K, d), the kept rows' pooled states (sorted by ``index``);
    labels : int (K,) class indices into ``label_names`` (the classes of all N texts);
    texts / pairs : K strings, the kept rows' texts;
    index : int (K,), each row's position in the sample of N texts;
    curve : ν per layer of all N texts (exact, no band) and their class counts;
    n : N, the texts streamed. ``key`` identifies the streamed result with K kept rows, not the full states.
    """

    curve: CurveResult | None = None
    n: int = 0
    index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def n_kept(self) -> int:
        """K, the texts whose states are held."""
        return len(self.labels)


def total_texts(res: StatesResult) -> int:
    """N: the texts ν was computed from (all of them, also when only K kept rows' states are held)."""
    return res.n if isinstance(res, KeptStates) else len(res.labels)


def kept_fields(res: StatesResult) -> dict:
    """The JSON fields of kept states (``mode``, ``sample_size``: K); ``{}`` for in-memory states."""
    return {"mode": "stream", "sample_size": res.n_kept} if isinstance(res, KeptStates) else {}


def needs_streaming(cfg: AnalysisConfig, threshold: int = STREAM_ABOVE, content: bytes | None = None) -> bool:
    """Whether ``cfg``'s sample has more than ``threshold`` texts.

    An ``n`` at or below the threshold decides without loading the data (n caps the sample);
    otherwise the sample is counted (a data file or Hugging Face dataset: from its labels alone,
    :func:`analysis.data.streamed.open_sample`).
    """
    if threshold < 1:
        raise VariscopeError(f"the streaming threshold must be at least 1 text, got {threshold}")
    n = cfg.sampling.n
    if n is not None and 0 < n <= threshold:
        return False
    return len(open_sample(cfg, content)) > threshold


def stream_settings(keep: int) -> StreamSettings:
    """How the pages and ``cards --stream`` stream: the mode ``curve --stream`` picks by default, no band."""
    return StreamSettings(mode="auto", keep=int(keep), weighting="equal", bootstrap=0)


def kept_key(cfg: AnalysisConfig, keep: int, content: bytes | None = None, cache_root=None) -> str:
    """Key of the streamed result that keeps ``keep`` rows (its ``streams`` cache entry)."""
    return stream_key(cfg, stream_settings(keep), content=content, cache_root=cache_root)[0]


def _assemble(part: dict, texts: Sequence[str], pairs: Sequence[str] | None, label_names, key: str) -> KeptStates:
    """A :class:`KeptStates` from ``part``: index, states, labels, curve, n, info, seconds, cache_hit."""
    idx = np.asarray(part["index"], dtype=np.int64)
    if len(idx) == 0 or part["states"] is None:
        raise VariscopeError("the streamed result kept no rows: stream with keep > 0")
    if len(texts) != len(idx) or (pairs is not None and len(pairs) != len(idx)):
        raise VariscopeError(f"the kept states have {len(idx)} rows but {len(texts)} texts were given")
    n = int(part["n"])
    return KeptStates(
        states=np.asarray(part["states"], dtype=np.float32),
        labels=np.asarray(part["labels"], dtype=np.int64),
        label_names=list(label_names),
        texts=list(texts),
        pairs=None if pairs is None else list(pairs),
        key=key,
        cache_hit=bool(part["cache_hit"]),
        seconds=dict(part["seconds"]),
        info={**part["info"], "mode": "stream", "n": n, "sample_size": len(idx)},
        curve=part["curve"],
        n=n,
        index=idx,
    )


def _part(result: StreamResult) -> dict[str, Any]:
    s = result.stats.kept
    part: dict[str, Any] = {"index": s.index, "states": s.states, "labels": s.labels, "curve": result.curve}
    part.update(n=result.n, info=result.info, seconds=result.seconds, cache_hit=False)
    return part


def stream_kept(
    cfg: AnalysisConfig,
    *,
    keep: int = DEFAULT_KEEP,
    content: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    loader: Callable | None = None,
    cache: DiskCache | None = None,
    use_cache: bool = True,
) -> KeptStates:
    """Exact ν of all N texts of ``cfg`` and the states of ``keep`` seeded rows of them (one process).

    From the disk cache (kind ``streams``, the entry ``curve --stream --keep K`` also uses), or
    streamed once (:func:`~analysis.stream.curve.stream_curve`) and stored. The K texts are read
    again from the source. ``progress(done, total)`` sees every batch; ``loader`` as in
    :func:`~analysis.pipeline.get_states`.
    """
    if keep < 1:
        raise VariscopeError(f"keep needs at least 1 row, got {keep}")
    cache = cache or DiskCache()
    key, conf = stream_key(cfg, stream_settings(keep), content=content, cache_root=cache.root)
    hit = load_stream(cache, key) if use_cache else None
    if hit is not None and "sample_states" in hit["arrays"]:
        a = hit["arrays"]
        part: dict[str, Any] = {"index": a["sample_index"], "states": a["sample_states"], "labels": a["sample_labels"]}
        part.update(n=hit["n"], curve=hit["curve"], info=hit["info"], seconds={"total": 0.0}, cache_hit=True)
    else:
        res = stream_curve(
            cfg, keep=keep, content=content, progress=progress, loader=loader, cache_root=cache.root, mode="auto"
        )
        if use_cache:
            with cache.lock("streams", key):
                save_stream(cache, key, conf, res)
        part = _part(res)
    source = open_sample(cfg, content)  # the kept rows' texts, read again (the stream does not return them)
    texts, pairs = source.texts(np.asarray(part["index"], dtype=np.int64))
    return _assemble(part, list(texts), None if pairs is None else list(pairs), source.label_names, key)


def _band(
    res: KeptStates, bootstrap: int, weighting: str, seed: int, percentiles, tolerance: float
) -> tuple[tuple | None, dict]:
    """(band around the exact ν, what it came from): :func:`analysis.variability.kept_band` on the K texts.

    None when a class has fewer than 2 kept rows.
    """
    counts = np.bincount(res.labels, minlength=len(res.label_names))
    if bootstrap <= 0 or np.any(counts < 2) or res.curve is None:
        return None, {"band_skipped": "a class has fewer than 2 kept rows"} if bootstrap > 0 else {}
    return kept_band(
        res.curve.variability,
        res.states,
        res.labels,
        bootstrap=bootstrap,
        weighting=weighting,
        seed=seed,
        percentiles=percentiles,
        tolerance=tolerance,
    )


def curve_of(
    res: StatesResult,
    *,
    bootstrap: int = 0,
    weighting: str = "equal",
    seed: int = 0,
    percentiles: tuple[float, float] = (5.0, 95.0),
    tolerance: float = DEFAULT_TOLERANCE,
) -> CurveResult:
    """ν per layer of ``res``, with a bootstrap band and the ℓ* shares of ``bootstrap`` resamples.

    In-memory states: :func:`~analysis.variability.variability_curve` of them. A
    :class:`KeptStates`: ν and the class counts of all N texts (streamed, exact) and the band
    from resamples of the K kept rows: their relative spread, centred on the exact ν (see
    :func:`_band`; it describes K texts, so it is wider than the uncertainty of ν from all N;
    none when a class has fewer than 2 kept rows). ``settings`` keeps the kept rows' own ν and band.
    """
    if not isinstance(res, KeptStates):
        return variability_curve(
            res.states,
            res.labels,
            bootstrap=bootstrap,
            weighting=weighting,
            seed=seed,
            percentiles=percentiles,
            label_names=res.label_names,
            tolerance=tolerance,
        )
    if res.curve is None:
        raise VariscopeError("kept states need their streamed curve")
    streamed = res.curve.settings.get("weighting", "equal")
    if weighting != streamed:
        raise VariscopeError(f"ν was streamed with {streamed} class weights; it cannot be shown with {weighting}")
    band, facts = _band(res, int(bootstrap), weighting, seed, percentiles, tolerance)
    shares = {key: facts.pop(key, None) for key in SHARE_KEYS}  # of the kept states' resamples
    settings = {**res.curve.settings, "bootstrap": int(bootstrap), "n": res.n, "sample_size": res.n_kept}
    if bootstrap:
        settings.update(percentiles=list(percentiles), seed=seed, band_from="sample", **facts)
    return replace(res.curve, band=band, settings=settings, **shares)


def with_exact_nu(cards: LayerCards, res: KeptStates, cards_cfg: CardsConfig) -> LayerCards:
    """The cards of kept states with ν, its band (as in :func:`curve_of`) and the rank agreement of all N texts.

    The probe and kNN scores stay those of the K kept rows.
    """
    if res.curve is None:
        raise VariscopeError("kept states need their streamed curve")
    curve = curve_of(res, bootstrap=cards_cfg.bootstrap, weighting=cards_cfg.weighting, seed=cards_cfg.seed)
    nu = list(curve.variability)
    settings = {**cards.settings, "n": res.n, "sample_size": res.n_kept}
    return replace(
        cards,
        variability=nu,
        band=curve.band,
        rank_agreement=rank_agreement(nu, cards.probe_accuracy),
        settings=settings,
    )


def cards_of(cfg: AnalysisConfig, cards_cfg: CardsConfig, res: StatesResult, **kwargs) -> LayerCards:
    """The layer cards of ``res`` (:func:`~analysis.cards.compute.compute_cards`, ``kwargs`` passed on).

    A :class:`KeptStates` gives the probe and kNN scores of its K kept rows beside the exact ν of all N.
    """
    from analysis.cards.compute import compute_cards

    cards, _ = compute_cards(cfg, cards_cfg, states=res, **kwargs)
    return with_exact_nu(cards, res, cards_cfg) if isinstance(res, KeptStates) else cards
