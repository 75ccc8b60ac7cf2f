"""From settings to pooled states and a ν curve, through the disk cache.

``AnalysisConfig`` holds every setting that changes the pooled states; its
``cache_config()`` is the dict whose hash is the cache key. ``get_states``
returns cached states or computes them (one forward pass per batch);
``compute_curve`` adds ν per layer. The CLI, the app, the benchmarks and the
tests all go through these two functions.
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from .cache import DiskCache, make_key
from .errors import VariscopeError
from .hidden_states import POOLINGS, extract_states
from .models import ModelRef, load_model, resolve_device, resolve_dtype, resolve_model
from .tasks import SampleConfig, TaskConfig, TaskData, load_task, sample, task_fingerprint
from .variability import CurveResult, variability_curve

EXTRACTION_VERSION = 1


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything that decides the pooled states (and how to compute them)."""

    model: str = "minilm"
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SampleConfig = field(default_factory=SampleConfig)
    pooling: str = "mean"
    max_length: int = 128
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 32
    revision: str | None = None
    trust_remote_code: bool = False
    device_map: str | None = None  # "auto": spread a model too large for one GPU (accelerate)

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise VariscopeError(f"unknown pooling '{self.pooling}'; use one of {', '.join(POOLINGS)}")
        if self.max_length is None or self.max_length < 1:
            raise VariscopeError(f"max length must be at least 1 token, got {self.max_length}")
        if self.batch_size < 1:
            raise VariscopeError(f"batch size must be at least 1, got {self.batch_size}")


@dataclass
class StatesResult:
    """Pooled states of one sample plus where they came from.

    states : float32 (L+1, N, d); labels : int (N,); texts/pairs : N strings.
    """

    states: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    texts: list[str]
    pairs: list[str] | None
    key: str
    cache_hit: bool
    seconds: dict
    info: dict

    @property
    def n_layers(self) -> int:
        return self.states.shape[0] - 1


def cache_config(cfg: AnalysisConfig, ref: ModelRef, task_fp: str, dtype: str) -> dict:
    """The dict hashed into the states cache key (primitives only)."""
    return {"what": "states", "version": EXTRACTION_VERSION,
            "model": ref.fingerprint, "task": task_fp, "split": cfg.task.split,
            "columns": [cfg.task.text_col, cfg.task.text_pair_col, cfg.task.label_col] if cfg.task.data or
            cfg.task.name not in _fixed_column_tasks() else None,
            "hf_config": cfg.task.hf_config, "bins": cfg.task.bins,
            "sampling": asdict(cfg.sampling), "pooling": cfg.pooling,
            "max_length": cfg.max_length, "dtype": dtype}


def _fixed_column_tasks():
    from .tasks import GLUE, OFFLINE

    return set(OFFLINE) | set(GLUE)


def states_key(cfg: AnalysisConfig, cache: DiskCache | None = None, content: bytes | None = None) -> tuple[str, dict]:
    cfg.validate()
    ref = resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache.root if cache else None)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    conf = cache_config(cfg, ref, task_fingerprint(cfg.task, content), dtype)
    return make_key(conf), conf


@functools.lru_cache(maxsize=2)
def cached_model(ref: ModelRef, device: str, dtype: str, trust_remote_code: bool = False,
                 device_map: str | None = None):
    """In-process cache of loaded models for the CLI, benchmarks and tests."""
    return load_model(ref, device=device, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map)


def prepare_sample(cfg: AnalysisConfig, content: bytes | None = None) -> TaskData:
    """Load and sample the task; refuse samples on which ν is undefined (before any compute)."""
    from .variability import _class_index

    task = load_task(cfg.task, content)
    sub = sample(task, cfg.sampling)
    if len(sub) == 0:
        raise VariscopeError("the sample is empty")
    present = np.unique(sub.labels)
    if len(present) < len(sub.label_names):  # drop declared classes that the sample lacks
        remap = {c: i for i, c in enumerate(present)}
        sub.labels = np.array([remap[c] for c in sub.labels], dtype=np.int64)
        sub.label_names = [sub.label_names[c] for c in present]
    _class_index(sub.labels, sub.label_names)
    return sub


def get_states(cfg: AnalysisConfig, *, cache: DiskCache | None = None, use_cache: bool = True,
               content: bytes | None = None, progress: Callable[[int, int], None] | None = None,
               loader: Callable | None = None) -> StatesResult:
    """Pooled states for ``cfg``: from the disk cache, or computed and stored.

    ``content`` gives a data file's bytes (uploads); ``loader(ref, device,
    dtype, trust_remote_code)`` overrides model loading (the app passes its
    ``st.cache_resource`` loader); ``progress(done, total)`` sees every batch.
    """
    t0 = time.perf_counter()
    cache = cache or DiskCache()
    key, conf = states_key(cfg, cache, content)
    lock = cache.lock("states", key) if use_cache else _nolock()
    with lock:
        if use_cache:
            hit = cache.load("states", key, version=EXTRACTION_VERSION)
            if hit is not None:
                arrays, blobs, manifest = hit
                return StatesResult(arrays["states"], arrays["labels"], blobs["sample"]["label_names"],
                                    blobs["sample"]["texts"], blobs["sample"]["pairs"], key, True,
                                    {"total": time.perf_counter() - t0, "extract": 0.0, "load_model": 0.0},
                                    manifest["meta"].get("info", {}))
        sub = prepare_sample(cfg, content)
        ref = resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache.root)
        device = resolve_device(cfg.device)
        dtype = resolve_dtype(cfg.dtype, device)
        t1 = time.perf_counter()
        if cfg.device_map and loader is None:
            model, tok = cached_model(ref, device, dtype, cfg.trust_remote_code, cfg.device_map)
            device = str(model.get_input_embeddings().weight.device)  # inputs go where the embeddings are
        else:
            model, tok = (loader or cached_model)(ref, device, dtype, cfg.trust_remote_code)
        t2 = time.perf_counter()
        states = extract_states(model, tok, sub.texts, sub.pairs, pooling=cfg.pooling,
                                max_length=cfg.max_length, batch_size=cfg.batch_size,
                                device=device, progress=progress)
        t3 = time.perf_counter()
        info = dict(sub.info, device=device, dtype=dtype, model=cfg.model, task=cfg.task.label())
        if use_cache:
            cache.save("states", key, {"states": states, "labels": sub.labels},
                       blobs={"sample": {"texts": sub.texts, "pairs": sub.pairs, "label_names": sub.label_names}},
                       meta={"info": info, "describe": f"{cfg.model} · {cfg.task.label()} · n={len(sub)} · {cfg.pooling}"},
                       version=EXTRACTION_VERSION, config=conf)
        return StatesResult(states, sub.labels, sub.label_names, sub.texts, sub.pairs, key, False,
                            {"total": time.perf_counter() - t0, "extract": t3 - t2, "load_model": t2 - t1}, info)


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def compute_curve(cfg: AnalysisConfig, *, bootstrap: int = 0, weighting: str = "equal",
                  seed: int | None = None, **kwargs) -> tuple[CurveResult, StatesResult]:
    """ν per layer for ``cfg`` (states from :func:`get_states`)."""
    st = get_states(cfg, **kwargs)
    t = time.perf_counter()
    curve = variability_curve(st.states, st.labels, weighting=weighting, bootstrap=bootstrap,
                              seed=cfg.sampling.seed if seed is None else seed, label_names=st.label_names)
    st.seconds["variability"] = time.perf_counter() - t
    st.seconds["total"] += st.seconds["variability"]
    return curve, st


def curve_record(cfg: AnalysisConfig, curve: dict, n: int, recommended: int, rule: str) -> dict:
    """The JSON record of a curve (CLI ``--json`` and the app's download share these keys).

    ``curve`` is ``CurveResult.to_dict()``; ``recommended`` the layer ℓ* under ``rule``.
    """
    return {"model": cfg.model, "task": cfg.task.label(), "split": cfg.task.split, "pooling": cfg.pooling,
            "max_length": cfg.max_length, "n": int(n), "seed": cfg.sampling.seed, "layers": curve["layers"],
            "variability": curve["variability"], "band": curve["band"], "counts": curve["counts"],
            "recommended_layer": int(recommended), "rule": rule}
