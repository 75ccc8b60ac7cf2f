"""What a reproduction runs: :class:`ReproConfig` and its presets (the default, ``QUICK`` and ``GEMMA``)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ReproConfig:
    models: tuple[str, ...] = ("minilm",)
    tasks: tuple[str, ...] = ("rotten_tomatoes", "bbc_news", "reuters_r8")
    ks: tuple[int, ...] = (1, 2, 3)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 16
    n_train: int = 1200
    eval_n: int = 600
    max_length: int = 64
    pooling: str = "mean"
    analysis_n: int = 2000
    bootstrap: int = 50
    fractions: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05)
    imbalances: tuple[int, ...] = (1, 3, 9)
    draws: int = 5  # claim 3: independent samples per fraction and imbalance (analysis.reproduce.robustness)
    device: str = "auto"
    dtype: str = "auto"  # every ν curve and training run of the reproduction (auto: float32 on a CPU)
    plan: tuple[tuple, ...] | None = None  # (model, tasks[, ks]) entries; default models × tasks × ks
    skip_full: tuple[str, ...] = ()  # models without the (costly) full fine-tuning baseline
    # "Still to run" asks full fine-tuning on this many of the tasks (0: on every task); runs ignore it
    full_min_tasks: int = 0
    lr_grid: tuple[float, ...] = ()  # learning rates tried per strategy on validation (empty: ``lr`` for all)
    lr_steps: int | None = None  # steps of each validation run (None: ``steps``)
    lr_seed: int = 0  # the training sample and seed of the validation runs
    val_fraction: float = 0.2  # share of that training sample held back for validation
    lr_extend: int = 2  # extra rates tried beyond an edge of ``lr_grid`` when the best rate sits on that edge
    prefix_cache: bool = True  # the runs' frozen-prefix cache (analysis.training.prefix)
    full_vocab: bool = False  # full fine-tuning trains the whole embedding matrix (analysis.training.vocab)

    def pairs(self) -> list[tuple[str, str]]:
        if self.plan:
            return [(e[0], t) for e in self.plan for t in e[1]]
        return [(m, t) for m in self.models for t in self.tasks]

    def ks_for(self, model: str) -> tuple[int, ...]:
        for e in self.plan or ():
            if e[0] == model and len(e) > 2 and e[2]:
                return tuple(e[2])
        return self.ks


QUICK = ReproConfig(
    tasks=("rotten_tomatoes",),
    ks=(1, 2),
    seeds=(0,),
    steps=60,
    n_train=600,
    eval_n=300,
    max_length=64,
    analysis_n=600,
    bootstrap=20,
)
# The raw language model: its ℓ* lies below the top layer, so claim 1 (tuning below the top) can be tested.
GEMMA = ReproConfig(
    models=("gemma3-270m",),
    tasks=("rotten_tomatoes", "bbc_news", "reuters_r8"),
    ks=(1, 2, 3),
    seeds=(0, 1, 2),
    steps=300,
    lr=3e-4,
    lr_grid=(1e-4, 3e-4, 1e-3),
    batch_size=16,
    n_train=1200,
    eval_n=600,
    max_length=128,
    analysis_n=1000,
    bootstrap=20,
    full_min_tasks=2,
)


def config_from_settings(settings: dict) -> ReproConfig:
    """The ReproConfig of a results dict's "settings" (lists back to tuples; unknown keys ignored)."""

    def tup(x):
        return tuple(tup(y) for y in x) if isinstance(x, list) else x

    names = {f.name for f in fields(ReproConfig)}
    return ReproConfig(**{k: tup(v) for k, v in settings.items() if k in names})


def planned_pairs(part: dict) -> list[tuple[str, str]]:
    """The (model, task) pairs the invocation that wrote ``part`` ran (from its settings), whatever later parts
    have since taken over; empty for settings that do not name them."""
    s = part.get("settings") or {}
    if "tasks" in s and ("models" in s or s.get("plan")):
        return [(m, t) for m, t in config_from_settings(s).pairs() if m in part["models"]]
    return []


def part_pairs(part: dict, res: dict | None = None) -> list[tuple[str, str]]:
    """The (model, task) pairs a part's records cover: its "pairs"; for a part written before parts had them, the
    pairs its settings planned for its models, or (settings without models and tasks) those of ``res``'s curves
    of its models."""
    if part.get("pairs") is not None:
        return [(m, t) for m, t in part["pairs"]]
    if planned := planned_pairs(part):
        return planned
    curves = (res or {}).get("curves", [])
    return list(dict.fromkeys((c["model"], c["task"]) for c in curves if c["model"] in part["models"]))
