"""Sweep records for tests, made by the sweep's own summarise() from invented per-seed results and scores."""

from pathlib import Path

import numpy as np

from analysis.data.sampling import SampleConfig
from analysis.data.tasks import TaskConfig
from analysis.pipeline import AnalysisConfig
from analysis.sweep.config import SweepConfig
from analysis.sweep.run import summarise


def sweep_config(n_layers: int, seeds=(0, 1, 2), **kw) -> SweepConfig:
    return SweepConfig(layers=tuple(range(1, n_layers + 1)), seeds=tuple(seeds), **kw)


def make_record(cfg: AnalysisConfig, sc: SweepConfig, seed: int = 0, final_norm: bool = False) -> dict:
    """A record of ``cfg`` and ``sc``: a trained curve rising to a peak below the top, noisy per seed.

    ν is lowest at the top layer (so ν's argmin has a regret), the probe tracks the truth with noise.
    ``final_norm``: also scored through the final norm (a decoder), where ν is lowest at the peak.
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
    inputs = {cfg.representation: (scores, nu)}
    if final_norm:
        normed = [float(1.0 + 0.05 * abs(l - peak)) for l in range(L + 1)]
        probe = [0.5] + [float(truth[l] + rng.normal(0, 0.02)) for l in range(1, L + 1)]
        inputs["final-norm"] = ({**scores, "nu_argmin": [-v for v in normed], "probe": probe}, normed)
    return summarise(cfg, sc, per_seed, lrs, [0.3] * len(sc.layers), 600, "accuracy", inputs)


def record(model: str, task: str, n_layers: int, seeds=(0, 1, 2), seed: int = 0, final_norm: bool = False) -> dict:
    cfg = AnalysisConfig(model=model, task=TaskConfig(task), sampling=SampleConfig(n=1200), representation="raw")
    return make_record(cfg, sweep_config(n_layers, seeds), seed, final_norm)


#: the keys a record made before the sweep scored both representations lacks
NEW_KEYS = ("selectors_by_representation", "representation_default", "representation_note")


def old_format(rec: dict) -> dict:
    """``rec`` as the sweep wrote it before it scored both representations (docs/selectors.json's first records)."""
    return {k: v for k, v in rec.items() if k not in NEW_KEYS}


def write_three_class_csv(path: Path) -> Path:
    """A task the project has never seen: three classes of 20 short invented sentences each, as a CSV at ``path``."""
    words = {
        "weather": ["rain", "sunny", "storm", "cloudy", "snow"],
        "food": ["bread", "soup", "pasta", "apple", "cheese"],
        "sport": ["football", "tennis", "running", "swimming", "cycling"],
    }
    rows = ["text,label"]
    for label, ws in words.items():
        for i in range(20):
            rows.append(f"today it is about {ws[i % 5]} and more {ws[(i + 2) % 5]} number {i},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path
