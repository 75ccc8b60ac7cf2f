"""Settings → configs: one place where a flat dict of user settings becomes an AnalysisConfig
(:func:`from_settings`), the curve's options (:func:`curve_settings`), the app's streaming
threshold (:func:`stream_settings`) or checked training numbers (:func:`train_settings`).

The CLI passes ``vars(args)``, the app passes its session state (values from
the URL arrive as strings). Keys that are absent take the defaults below, which
argparse, the pages and the URL read from here (training defaults: ``analysis.training.config``).
Every value a user can type is checked here, once, with a one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.errors import VariscopeError
from analysis.recommend import DEFAULT_TOLERANCE, RULES
from analysis.store.cache import CACHE_BUDGET_BYTES  # noqa: F401  (defined beside the cache, which settings imports)

if TYPE_CHECKING:
    from analysis.pipeline import AnalysisConfig
    from analysis.training import Selection, TrainConfig

#: The settings shared by the CLI's data flags and the app, with their defaults.
DEFAULTS: dict[str, Any] = {
    "model": "minilm",
    "revision": None,
    "trust_remote_code": False,
    "task": None,
    "data": None,
    "split": "train",
    "text_col": "text",
    "text_pair_col": None,
    "label_col": "label",
    "hf_config": None,
    "bins": None,
    "n": 1000,
    "per_class": None,
    "seed": 0,
    "imbalance": None,
    "fraction": None,
    "max_length": 128,
    "pooling": "mean",
    # the curve's (and the cards') representation, and the one a sweep's `selectors` use; "final-norm": decoder states
    # through the final norm (hidden_states.py), the states a head on a truncated decoder is trained on; "auto":
    # final-norm where the model has a final norm, raw elsewhere. A sweep scores both; "auto" because trained truth
    # agrees better with final-norm states on both decoders measured (docs/selectors.md)
    "representation": "auto",
    "batch_size": None,  # 32 on a CPU, 256 on a GPU (pipeline.batch_for)
    "device": "auto",
    "dtype": "auto",
    "device_map": None,
}
DEFAULT_TASK = "rotten_tomatoes"
MAX_BINS = 1000  # quantile classes of a numeric label

#: Resamples of the bootstrap band and the ℓ* shares: the CLI's and the pages' default (its cost on the
#: default sample is in docs/benchmarks.md), and the most a user may ask for.
DEFAULT_BOOTSTRAP, MAX_BOOTSTRAP = 20, 1000
#: Above this many texts the app streams (exact ν of all, the states of a seeded sample only).
STREAM_ABOVE = 20_000
#: States a stream keeps in its seeded sample (bootstrap band, projections, cards).
DEFAULT_KEEP = 2_000
#: Most states the app keeps (UMAP and the leave-one-out kNN grow faster than linearly); fewer than
#: MIN_KEEP leave too few per class for a band.
MAX_KEEP, MIN_KEEP = 20_000, 10

#: The curve's options (CLI ``curve`` flags, the Variability page), with their defaults.
CURVE_DEFAULTS: dict[str, Any] = {
    "bootstrap": None,  # DEFAULT_BOOTSTRAP, or 0 for a stream that keeps no states
    "weighting": "equal",
    "rule": RULES[0],
    "tolerance": DEFAULT_TOLERANCE,
    "stream": False,
    "stream_mode": None,
    "keep": None,
    "memory_budget": None,
}


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _int(name: str, v, *, minimum: int | None = None, maximum: int | None = None, optional: bool = False) -> int | None:
    if _blank(v):
        if optional:
            return None
        raise VariscopeError(f"{name} needs a whole number")
    if isinstance(v, bool):
        raise VariscopeError(f"{name} must be a whole number, got {v!r}")
    try:
        f = float(v)
        i = int(f)
    except (TypeError, ValueError, OverflowError):
        raise VariscopeError(f"{name} must be a whole number, got {str(v)[:40]!r}") from None
    if f != i:
        raise VariscopeError(f"{name} must be a whole number, got {str(v)[:40]!r}")
    if minimum is not None and i < minimum:
        raise VariscopeError(f"{name} must be at least {minimum}, got {i}")
    if maximum is not None and i > maximum:
        raise VariscopeError(f"{name} must be at most {maximum}, got {str(v)[:40]}")
    return i


def _float(name: str, v, *, optional: bool = False) -> float | None:
    import math

    if _blank(v):
        if optional:
            return None
        raise VariscopeError(f"{name} needs a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise VariscopeError(f"{name} must be a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(f):
        raise VariscopeError(f"{name} must be a finite number, got {str(v)[:40]!r}")
    return f


def _str(v) -> str | None:
    return None if _blank(v) else str(v).strip()


def parse_imbalance(v) -> tuple[float, ...] | None:
    """'1:9' (or a sequence of numbers) → (1.0, 9.0); finite and positive."""
    import math

    if _blank(v):
        return None
    parts = v.split(":") if isinstance(v, str) else list(v)
    try:
        ratio = tuple(float(x) for x in parts)
    except (TypeError, ValueError):
        raise VariscopeError(f"imbalance must look like 1:9, got {str(v)[:40]!r}") from None
    if not ratio or not all(math.isfinite(r) and r > 0 for r in ratio):
        raise VariscopeError(f"imbalance ratios must be positive finite numbers, got {str(v)[:40]!r}")
    return ratio


def from_settings(settings: Mapping[str, Any]) -> AnalysisConfig:
    """An :class:`~analysis.pipeline.AnalysisConfig` from a flat dict of settings.

    ``n`` of 0 or None means all texts. ``task`` and ``data`` are exclusive;
    neither means the default task.
    """
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    s = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS}}
    data, task = _str(s["data"]), _str(s["task"])
    if data and task:
        raise VariscopeError("give either a task or a data file, not both")
    task_cfg = TaskConfig(
        name=None if data else (task or DEFAULT_TASK),
        data=data,
        split=_str(s["split"]) or "train",
        text_col=_str(s["text_col"]) or "text",
        text_pair_col=_str(s["text_pair_col"]),
        label_col=_str(s["label_col"]) or "label",
        hf_config=_str(s["hf_config"]),
        bins=_int("bins", s["bins"], minimum=2, maximum=MAX_BINS, optional=True),
    )
    n = _int("n", s["n"], minimum=0, optional=True)
    fraction = _float("fraction", s["fraction"], optional=True)
    if fraction is not None and not 0 < fraction <= 1:
        raise VariscopeError(f"fraction must be in (0, 1], got {fraction}")
    sampling_cfg = SampleConfig(
        n=n or None,
        per_class=_int("per-class cap", s["per_class"], minimum=1, optional=True),
        seed=_int("seed", s["seed"], minimum=0) or 0,
        imbalance=parse_imbalance(s["imbalance"]),
        fraction=fraction,
    )
    cfg = AnalysisConfig(
        model=_str(s["model"]) or DEFAULTS["model"],
        task=task_cfg,
        sampling=sampling_cfg,
        pooling=_str(s["pooling"]) or "mean",
        representation=_str(s["representation"]) or DEFAULTS["representation"],
        max_length=_int("max length", s["max_length"], minimum=1) or 1,
        dtype=_str(s["dtype"]) or "auto",
        device=_str(s["device"]) or "auto",
        batch_size=_int("batch size", s["batch_size"], minimum=1, optional=True),
        revision=_str(s["revision"]),
        trust_remote_code=bool(s["trust_remote_code"]),
        device_map=_str(s["device_map"]),
    )
    cfg.validate()
    return cfg


@dataclass(frozen=True)
class CurveSettings:
    """Checked options of a curve: band, weighting, recommendation rule and streaming."""

    bootstrap: int
    weighting: str
    rule: str
    tolerance: float
    stream: bool
    stream_mode: str | None
    keep: int | None
    memory_budget: float | None  # MB


def check_bootstrap(v) -> int:
    """Bootstrap resamples, 0..MAX_BOOTSTRAP (the one home of that limit); blank: DEFAULT_BOOTSTRAP."""
    b = _int("bootstrap resamples", v, minimum=0, optional=True)
    if b is not None and b > MAX_BOOTSTRAP:
        raise VariscopeError(f"bootstrap resamples must be between 0 and {MAX_BOOTSTRAP}, got {b}")
    return DEFAULT_BOOTSTRAP if b is None else b


def _choice(name: str, v, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise VariscopeError(f"{name} must be one of {', '.join(choices)}, got {str(v)[:40]!r}")
    return v


def curve_settings(settings: Mapping[str, Any]) -> CurveSettings:
    """:class:`CurveSettings` from a flat dict (CLI ``vars(args)`` or the Variability page's inputs).

    ``keep`` and ``memory_budget`` go with ``stream``; a streamed band needs kept states.
    """
    from analysis.stream.twopass import MODES
    from analysis.variability import WEIGHTINGS

    s = {**CURVE_DEFAULTS, **{k: v for k, v in settings.items() if k in CURVE_DEFAULTS and v is not None}}
    tolerance = _float("plateau tolerance", s["tolerance"]) or 0.0
    if tolerance < 0:
        raise VariscopeError(f"plateau tolerance must be a finite number ≥ 0, got {tolerance}")
    stream = bool(s["stream"])
    if not stream and (s["stream_mode"] is not None or s["keep"] is not None or s["memory_budget"] is not None):
        raise VariscopeError("--stream-mode, --keep and --memory-budget go with --stream")
    keep = _int("--keep", s["keep"], optional=True)
    if keep is not None and keep < 0:
        raise VariscopeError(f"--keep must be a number of states ≥ 0, got {keep}")
    bootstrap = 0 if stream and keep == 0 and _blank(s["bootstrap"]) else check_bootstrap(s["bootstrap"])
    if stream and bootstrap and keep == 0:
        raise VariscopeError("--bootstrap with --stream resamples the state sample: --keep must be above 0")
    budget = _float("--memory-budget", s["memory_budget"], optional=True)
    if budget is not None and budget <= 0:
        raise VariscopeError(f"--memory-budget must be a positive number of MB, got {budget}")
    mode = None if s["stream_mode"] is None else _choice("stream mode", s["stream_mode"], MODES)
    return CurveSettings(
        bootstrap=bootstrap,
        weighting=_choice("weighting", s["weighting"], WEIGHTINGS),
        rule=_choice("rule", s["rule"], RULES),
        tolerance=tolerance,
        stream=stream,
        stream_mode=mode,
        keep=keep,
        memory_budget=budget,
    )


def stream_settings(above, keep) -> tuple[int, int]:
    """The app's (stream above N texts, states kept K), checked: N ≥ 1, MIN_KEEP ≤ K ≤ MAX_KEEP."""
    n = _int("stream above (texts)", STREAM_ABOVE if _blank(above) else above, minimum=1) or STREAM_ABOVE
    k = _int("states kept", DEFAULT_KEEP if _blank(keep) else keep, minimum=MIN_KEEP, maximum=MAX_KEEP)
    return n, k or DEFAULT_KEEP


def check_upload(name: str, size: int) -> None:
    """An uploaded file's size against the data files' limit (the same one as ``--data``)."""
    from analysis.data.files import MAX_UPLOAD_BYTES, shown

    if size > MAX_UPLOAD_BYTES:
        raise VariscopeError(
            f"file '{shown(name)}' is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB"
        )


@dataclass(frozen=True)
class TrainSettings:
    """Checked training numbers; :meth:`config` makes the run's TrainConfig."""

    steps: int | None
    epochs: float | None
    lr: float
    train_batch: int  # examples per optimizer step, all processes together
    eval_n: int
    eval_every: int | None
    k: int
    lora_r: int
    classifier_layer: int | None
    train_seed: int | None = None

    def config(
        self,
        analysis: AnalysisConfig,
        selection: Selection,
        *,
        remeasure: bool = False,
        strategy: str | None = None,
        prefix_cache: bool | None = None,
        full_vocab: bool | None = None,
    ) -> TrainConfig:
        """``prefix_cache=None``, ``full_vocab=None``: TrainConfig's defaults (cache on, task-sized vocabulary)."""
        from analysis.training import TrainConfig

        return TrainConfig(
            analysis,
            selection,
            steps=self.steps,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.train_batch,
            eval_n=self.eval_n,
            eval_every=self.eval_every,
            seed=analysis.sampling.seed if self.train_seed is None else self.train_seed,
            remeasure=remeasure,
            strategy=strategy,
            **({} if prefix_cache is None else {"prefix_cache": prefix_cache}),
            **({} if full_vocab is None else {"full_vocab": full_vocab}),
        )


def _positive(name: str, v, *, optional: bool = False) -> float | None:
    f = _float(name, v, optional=optional)
    if f is not None and f <= 0:
        raise VariscopeError(f"{name} must be positive, got {f:g}")
    return f


def train_settings(settings: Mapping[str, Any]) -> TrainSettings:
    """:class:`TrainSettings` from a flat dict (CLI ``vars(args)`` or the Training page's inputs).

    Steps and epochs are exclusive; neither means the default steps. Every number is
    checked here, before any data or model is loaded, with a one-line error. ``train_batch``
    is the training batch; ``batch_size`` (the forward pass's) is :func:`from_settings`'s.
    """
    from analysis.training.config import DEFAULT_STEPS, TRAIN_DEFAULTS

    s = {**TRAIN_DEFAULTS, **{k: v for k, v in settings.items() if k in TRAIN_DEFAULTS and v is not None}}
    steps = _int("steps", s["steps"], minimum=1, optional=True)
    epochs = _positive("epochs", s["epochs"], optional=True)
    if steps is not None and epochs is not None:
        raise VariscopeError("give either a number of steps or of epochs, not both")
    k = _int("k (layers to tune)", s["k"]) or 0
    if k < 1:
        raise VariscopeError(f"k (layers to tune) must be ≥ 1, got {k}")
    return TrainSettings(
        steps=DEFAULT_STEPS if steps is None and epochs is None else steps,
        epochs=epochs,
        lr=_positive("learning rate", s["lr"]) or 0.0,
        train_batch=_int("training batch", s["train_batch"], minimum=1) or 1,
        eval_n=_int("held-out texts (eval-n)", s["eval_n"], minimum=2) or 2,
        eval_every=_int("eval-every", s["eval_every"], minimum=1, optional=True),
        k=k,
        lora_r=_int("LoRA rank", s["lora_r"], minimum=1) or 1,
        classifier_layer=_int("classifier layer", s["classifier_layer"], minimum=1, optional=True),
        train_seed=_int("training seed", s["train_seed"], minimum=0, optional=True),
    )
