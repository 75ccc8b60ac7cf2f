"""From settings to pooled states and a ν curve, through the disk cache.

``AnalysisConfig`` holds every setting that changes the pooled states;
``cache_config()`` derives the dict whose hash is the cache key from it. ``get_states``
returns cached states or computes them (one forward pass per batch);
``compute_curve`` adds ν per layer. The CLI, the app, the benchmarks and the
tests all go through these two functions.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig, TaskData, load_sample, task_fingerprint
from analysis.errors import VariscopeError
from analysis.models.hidden_states import POOLINGS, REPRESENTATION_CHOICES, extract_states
from analysis.models.load import ModelRef, has_final_norm, load_model, resolve_device, resolve_dtype, resolve_model
from analysis.store.cache import DiskCache, make_key
from analysis.variability import CurveResult, variability_curve

EXTRACTION_VERSION = 2  # 2: key derived from the config dataclasses


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything that decides the pooled states (and how to compute them)."""

    # the values of settings.DEFAULTS (settings builds this class, so it cannot be imported here; a test keeps the
    # two equal): a library caller gets the states the CLI and the pages get
    model: str = "minilm"
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SampleConfig = field(default_factory=SampleConfig)
    pooling: str = "mean"
    max_length: int = 128
    dtype: str = "auto"
    # "raw" or "final-norm" (decoders: the states the truncated classifier sees), or "auto" (final-norm where the
    # model has a final norm, raw elsewhere: :func:`concrete`); in the cache key, resolved, only when not "raw", so
    # every key made before it existed stays valid
    representation: str = "auto"
    # how the states are computed, not what they are: left out of the cache key
    device: str = field(default="auto", metadata={"cache_key": False})
    # None: BATCH_CPU texts per forward pass on a CPU, BATCH_GPU on a GPU (see batch_for)
    batch_size: int | None = field(default=None, metadata={"cache_key": False})
    revision: str | None = None
    trust_remote_code: bool = field(default=False, metadata={"cache_key": False})
    # "auto": spread a model too large for one GPU (accelerate)
    device_map: str | None = field(default=None, metadata={"cache_key": False})

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise VariscopeError(f"unknown pooling '{self.pooling}'; use one of {', '.join(POOLINGS)}")
        if self.representation not in REPRESENTATION_CHOICES:
            raise VariscopeError(
                f"unknown representation '{self.representation}'; use one of {', '.join(REPRESENTATION_CHOICES)}"
            )
        if self.max_length is None or self.max_length < 1:
            raise VariscopeError(f"max length must be at least 1 token, got {self.max_length}")
        if self.batch_size is not None and self.batch_size < 1:
            raise VariscopeError(f"batch size must be at least 1, got {self.batch_size}")


BATCH_CPU, BATCH_GPU = 32, 256  # texts per forward pass when none is given


def batch_for(cfg: AnalysisConfig, device: str) -> int:
    """The batch size of ``cfg`` on ``device``: its own, else 32 on a CPU and 256 on a GPU.

    On an H100 a 12-layer d=768 encoder pooled 3,500 texts/s at batch 32 and 12,500-16,300 at
    512 (docs/benchmarks-gpu.md); a batch that does not fit is halved and retried
    (:func:`analysis.models.hidden_states.forward_batches`). The batch size is not part of any cache key.
    """
    if cfg.batch_size is not None:
        return cfg.batch_size
    return BATCH_GPU if str(device).startswith("cuda") else BATCH_CPU


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


@dataclass(frozen=True)
class Target:
    """Where and how a config's model runs, resolved once.

    ref : the model's location and fingerprint; device : "cpu", "cuda", ...;
    dtype : a :func:`~analysis.models.load.resolve_dtype` result ("float32",
    "bfloat16", "autocast-bfloat16", ...).
    """

    ref: ModelRef
    device: str
    dtype: str


def resolve_target(cfg: AnalysisConfig, cache_root=None) -> Target:
    """Resolve the model, device and dtype of ``cfg`` (no weights are loaded)."""
    ref = resolve_model(cfg.model, revision=cfg.revision, cache_dir=cache_root)
    device = resolve_device(cfg.device)
    return Target(ref, device, resolve_dtype(cfg.dtype, device))


def concrete(cfg: AnalysisConfig, target: Target | None = None, cache_root=None) -> AnalysisConfig:
    """``cfg`` with representation "auto" resolved for its model: "final-norm" on a pre-norm decoder (what a
    classifier truncated at ℓ pools), "raw" elsewhere. Read from the architecture alone (no weights loaded);
    ``target`` (else resolved under ``cache_root``) says where the model is."""
    if cfg.representation != "auto":
        return cfg
    ref = (target or resolve_target(cfg, cache_root)).ref
    return replace(cfg, representation="final-norm" if has_final_norm(ref, cfg.trust_remote_code) else "raw")


def cache_config(cfg: AnalysisConfig, target: Target, task_fp: str) -> dict:
    """The dict hashed into the states cache key, derived from the config dataclasses.

    Every field of ``cfg`` (and of its task and sampling) is in it except those
    marked ``cache_key=False``; the model name becomes its weights' fingerprint,
    the task's name/file its data fingerprint and the dtype its resolved value.
    """
    cfg = concrete(cfg, target)  # "auto" and what it resolves to are one entry
    conf = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata.get("cache_key", True)}
    if conf["representation"] == "raw":
        del conf["representation"]
    task = asdict(cfg.task)
    del task["name"], task["data"]
    conf.update(
        what="states",
        version=EXTRACTION_VERSION,
        model=target.ref.fingerprint,
        dtype=target.dtype,
        task={**task, "data": task_fp},
        sampling=asdict(cfg.sampling),
    )
    return conf


def states_key(cfg: AnalysisConfig, target: Target, content: bytes | None = None) -> tuple[str, dict]:
    """(cache key, the dict it hashes) of the states of ``cfg`` on ``target``."""
    cfg.validate()
    conf = cache_config(cfg, target, task_fingerprint(cfg.task, content))
    return make_key(conf), conf


@functools.lru_cache(maxsize=2)
def cached_model(
    ref: ModelRef, device: str, dtype: str, trust_remote_code: bool = False, device_map: str | None = None
):
    """In-process cache of loaded models for the CLI, benchmarks and tests."""
    return load_model(ref, device=device, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map)


def load_for(cfg: AnalysisConfig, target: Target, loader: Callable | None = None) -> tuple:
    """(model, tokenizer, input device) of ``cfg`` on ``target``; ``loader`` as in :func:`get_states`."""
    ref, device, dtype = target.ref, target.device, target.dtype
    if cfg.device_map and loader is None:
        model, tok = cached_model(ref, device, dtype, cfg.trust_remote_code, cfg.device_map)
        return model, tok, str(model.get_input_embeddings().weight.device)  # inputs go where the embeddings are
    model, tok = (loader or cached_model)(ref, device, dtype, cfg.trust_remote_code)
    return model, tok, device


def prepare_sample(cfg: AnalysisConfig, content: bytes | None = None) -> TaskData:
    """Load and sample ``cfg``'s task (:func:`analysis.data.tasks.load_sample`)."""
    return load_sample(cfg.task, cfg.sampling, content)


def get_states(
    cfg: AnalysisConfig,
    *,
    cache: DiskCache | None = None,
    use_cache: bool = True,
    content: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    loader: Callable | None = None,
) -> StatesResult:
    """Pooled states for ``cfg``: from the disk cache, or computed and stored.

    ``content`` gives a data file's bytes (uploads); ``loader(ref, device,
    dtype, trust_remote_code)`` overrides model loading (the app passes its
    ``st.cache_resource`` loader); ``progress(done, total)`` sees every batch.
    """
    t0 = time.perf_counter()
    cache = cache or DiskCache()
    cfg.validate()
    target = resolve_target(cfg, cache.root)
    cfg = concrete(cfg, target)
    key, conf = states_key(cfg, target, content)
    lock = cache.lock("states", key) if use_cache else _nolock()
    with lock:
        if use_cache:
            hit = cache.load("states", key, version=EXTRACTION_VERSION)
            if hit is not None:
                arrays, blobs, manifest = hit
                return StatesResult(
                    arrays["states"],
                    arrays["labels"],
                    blobs["sample"]["label_names"],
                    blobs["sample"]["texts"],
                    blobs["sample"]["pairs"],
                    key,
                    True,
                    {"total": time.perf_counter() - t0, "extract": 0.0, "load_model": 0.0},
                    manifest["meta"].get("info", {}),
                )
        sub = prepare_sample(cfg, content)
        dtype = target.dtype
        t1 = time.perf_counter()
        model, tok, device = load_for(cfg, target, loader)
        t2 = time.perf_counter()
        states = extract_states(
            model,
            tok,
            sub.texts,
            sub.pairs,
            pooling=cfg.pooling,
            max_length=cfg.max_length,
            batch_size=batch_for(cfg, device),
            device=device,
            progress=progress,
            representation=cfg.representation,
        )
        t3 = time.perf_counter()
        info = dict(sub.info, device=device, dtype=dtype, model=cfg.model, task=cfg.task.label())
        if use_cache:
            cache.save(
                "states",
                key,
                {"states": states, "labels": sub.labels},
                blobs={"sample": {"texts": sub.texts, "pairs": sub.pairs, "label_names": sub.label_names}},
                meta={"info": info, "describe": f"{cfg.model} · {cfg.task.label()} · n={len(sub)} · {cfg.pooling}"},
                version=EXTRACTION_VERSION,
                config=conf,
            )
        return StatesResult(
            states,
            sub.labels,
            sub.label_names,
            sub.texts,
            sub.pairs,
            key,
            False,
            {"total": time.perf_counter() - t0, "extract": t3 - t2, "load_model": t2 - t1},
            info,
        )


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def compute_curve(
    cfg: AnalysisConfig, *, bootstrap: int = 0, weighting: str = "equal", seed: int | None = None, **kwargs
) -> tuple[CurveResult, StatesResult]:
    """ν per layer for ``cfg`` (states from :func:`get_states`)."""
    result = get_states(cfg, **kwargs)
    t = time.perf_counter()
    curve = variability_curve(
        result.states,
        result.labels,
        weighting=weighting,
        bootstrap=bootstrap,
        seed=cfg.sampling.seed if seed is None else seed,
        label_names=result.label_names,
    )
    result.seconds["variability"] = time.perf_counter() - t
    result.seconds["total"] += result.seconds["variability"]
    return curve, result
