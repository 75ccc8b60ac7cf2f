"""Streamed curves in the disk cache: the merged statistics' result, never the states.

An entry (kind ``streams``) holds ν per layer, the class sums and counts, the kept
rows' states (when kept) as ``.npy`` arrays and the curve's record as JSON: nothing is
pickled. Its key is the states key of the config (:func:`analysis.pipeline.cache_config`,
from the config dataclasses) plus :class:`StreamSettings`. The number of processes is
not in the key: it changes ν only in the float32 rounding of the states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.data.tasks import task_fingerprint
from analysis.pipeline import AnalysisConfig, cache_config, resolve_target
from analysis.store.cache import DiskCache, make_key
from analysis.stream.curve import StreamResult
from analysis.variability import SHARE_KEYS, CurveResult

STREAM_VERSION = 1


@dataclass(frozen=True)
class StreamSettings:
    """How a streamed curve is computed beyond the states' config: all of it is in the key."""

    mode: str = "auto"
    keep: int = 0
    weighting: str = "equal"
    bootstrap: int = 0


def stream_key(cfg: AnalysisConfig, how: StreamSettings, *, content: bytes | None = None, cache_root=None):
    """(cache key, the dict it hashes) of the streamed curve of ``cfg`` computed as ``how`` says."""
    cfg.validate()
    conf = cache_config(cfg, resolve_target(cfg, cache_root), task_fingerprint(cfg.task, content))
    conf.update(what="stream-curve", version=STREAM_VERSION, stream=asdict(how))
    return make_key(conf), conf


def save_stream(cache: DiskCache, key: str, conf: dict, res: StreamResult) -> None:
    """Store a streamed curve (atomically: a whole entry or none)."""
    arrays = {
        "variability": np.asarray(res.curve.variability, dtype=np.float64),
        "sums": res.stats.sums,
        "counts": res.stats.counts,
    }
    s = res.stats.kept
    if s.states is not None:
        arrays.update(sample_states=s.states, sample_index=s.index, sample_labels=s.labels)
    record = {
        "curve": res.curve.to_dict(),
        "n": res.n,
        "mode": res.mode,
        "world_size": res.world_size,
        "band_sample": res.n_kept,
        "info": res.info,
    }
    describe = f"{res.info.get('model')} · {res.info.get('task')} · n={res.n} · {res.mode}"
    cache.save(
        "streams",
        key,
        arrays,
        blobs={"result": record},
        meta={"describe": describe},
        version=STREAM_VERSION,
        config=conf,
    )


def load_stream(cache: DiskCache, key: str) -> dict | None:
    """The stored record (``curve`` as a :class:`CurveResult`, ``n``, ``mode``, ...) and arrays, or None."""
    hit = cache.load("streams", key, version=STREAM_VERSION)
    if hit is None:
        return None
    arrays, blobs, _manifest = hit
    rec = dict(blobs["result"])
    c = rec["curve"]
    band = c.get("band")
    rec["curve"] = CurveResult(
        layers=c["layers"],
        variability=c["variability"],
        counts=c["counts"],
        band=None if band is None else (band["low"], band["high"]),
        settings=c.get("settings", {}),
        **{key: c.get(key) for key in SHARE_KEYS},
    )
    rec["arrays"] = arrays
    return rec
