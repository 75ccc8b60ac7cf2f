"""Sweep records for tests, made by the sweep's own summarise() from invented per-seed results and scores."""

import numpy as np

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.sweep.config import SweepConfig
from analysis.sweep.run import summarise, with_train_args


def sweep_config(n_layers: int, seeds=(0, 1, 2), **kw) -> SweepConfig:
    return SweepConfig(layers=tuple(range(1, n_layers + 1)), seeds=tuple(seeds), **kw)


def make_record(cfg: AnalysisConfig, sc: SweepConfig, seed: int = 0) -> dict:
    """A record of ``cfg`` and ``sc``: a trained curve rising to a peak below the top, noisy per seed.

    ν is lowest at the top layer (so ν's argmin has a regret), the probe tracks the truth with noise.
    """
    rng = np.random.default_rng(seed)
    L = max(sc.layers)
    peak = max(1, (2 * L) // 3)
    truth = {l: 0.9 - 0.03 * abs(l - peak) for l in sc.layers}
    per_seed = {l: [float(truth[l] + rng.normal(0, 0.004)) for _ in sc.seeds] for l in sc.layers}
    nu = [float(2.0 - 0.1 * l) for l in range(L + 1)]
    scores = {
        "nu_argmin": [-v for v in nu],
        "nu_plateau": None,
        "probe": [0.5] + [float(truth[l] + rng.normal(0, 0.01)) for l in range(1, L + 1)],
        "knn": [float(rng.uniform(0.5, 0.8)) for _ in range(L + 1)],
        "rgn": None,
        "top": None,
    }
    lrs = [sc.lr_grid[l % len(sc.lr_grid)] for l in sc.layers]
    rec = summarise(cfg, sc, per_seed, lrs, [0.3] * len(sc.layers), 600, "accuracy", scores, nu)
    return with_train_args(rec, ["--model", cfg.model, "--task", cfg.task.label()], sc)


def record(model: str, task: str, n_layers: int, seeds=(0, 1, 2), seed: int = 0) -> dict:
    cfg = AnalysisConfig(model=model, task=TaskConfig(task), sampling=SampleConfig(n=1200))
    return make_record(cfg, sweep_config(n_layers, seeds), seed)
