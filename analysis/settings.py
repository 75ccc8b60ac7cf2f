"""Settings → configs: one place where a flat dict of user settings becomes an AnalysisConfig
(:func:`from_settings`) or checked training numbers (:func:`train_settings`).

The CLI passes ``vars(args)``, the app passes its session state (values from
the URL arrive as strings). Keys that are absent take the defaults below.
Every value a user can type is checked here, once, with a one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.errors import VariscopeError

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
    "batch_size": None,  # 32 on a CPU, 256 on a GPU (pipeline.batch_for)
    "device": "auto",
    "dtype": "auto",
    "device_map": None,
}
DEFAULT_TASK = "rotten_tomatoes"
MAX_BINS = 1000  # quantile classes of a numeric label


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
    from analysis.data.tasks import SampleConfig, TaskConfig
    from analysis.pipeline import AnalysisConfig

    s = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS}}
    data, task = _str(s["data"]), _str(s["task"])
    if data and task:
        raise VariscopeError("give either a task or a data file, not both")
    tc = TaskConfig(
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
    sc = SampleConfig(
        n=n or None,
        per_class=_int("per-class cap", s["per_class"], minimum=1, optional=True),
        seed=_int("seed", s["seed"], minimum=0) or 0,
        imbalance=parse_imbalance(s["imbalance"]),
        fraction=fraction,
    )
    cfg = AnalysisConfig(
        model=_str(s["model"]) or DEFAULTS["model"],
        task=tc,
        sampling=sc,
        pooling=_str(s["pooling"]) or "mean",
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


#: The training settings (CLI ``train`` flags, the Training page's inputs), with their defaults.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": None,
    "epochs": None,
    "lr": 1e-4,
    "batch_size": 16,
    "eval_n": 500,
    "eval_every": None,
    "k": 2,
    "lora_r": 8,
    "classifier_layer": None,
}
DEFAULT_STEPS = 200


@dataclass(frozen=True)
class TrainSettings:
    """Checked training numbers; :meth:`config` makes the run's TrainConfig."""

    steps: int | None
    epochs: float | None
    lr: float
    batch_size: int
    eval_n: int
    eval_every: int | None
    k: int
    lora_r: int
    classifier_layer: int | None

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
            batch_size=self.batch_size,
            eval_n=self.eval_n,
            eval_every=self.eval_every,
            seed=analysis.sampling.seed,
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

    Steps and epochs are exclusive; neither means 200 steps. Every number is
    checked here, before any data or model is loaded, with a one-line error.
    """
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
        batch_size=_int("batch size", s["batch_size"], minimum=1) or 1,
        eval_n=_int("held-out texts (eval-n)", s["eval_n"], minimum=2) or 2,
        eval_every=_int("eval-every", s["eval_every"], minimum=1, optional=True),
        k=k,
        lora_r=_int("LoRA rank", s["lora_r"], minimum=1) or 1,
        classifier_layer=_int("classifier layer", s["classifier_layer"], minimum=1, optional=True),
    )
