"""``train_args``: the ``python -m analysis train`` arguments that repeat one layer's run of a sweep.

Built from the sweep's config, not from the command line that started it, so a sweep started from the app
or the library carries them too. The device and the dtype are written as they were resolved ("auto" on a
GPU is not "auto" on a CPU), so the command repeats the run where it was made.
"""

from __future__ import annotations

from analysis.pipeline import AnalysisConfig
from analysis.sweep.config import SweepConfig


def _num(x: float) -> str:
    return repr(float(x))  # every digit: it parses back to the same float


def config_flags(cfg: AnalysisConfig, device: str, dtype: str) -> list[str]:
    """The model, data, sampling and extraction flags of ``cfg`` as strings (``device``, ``dtype``: resolved)."""
    t, s = cfg.task, cfg.sampling
    out = ["--model", cfg.model, *(["--revision", cfg.revision] if cfg.revision else [])]
    out += ["--data", t.data] if t.data else ["--task", str(t.name)]
    optional = {"--text-pair-col": t.text_pair_col, "--hf-config": t.hf_config, "--bins": t.bins}
    out += ["--split", t.split, "--text-col", t.text_col, "--label-col", t.label_col]
    out += [x for flag, v in optional.items() if v is not None for x in (flag, str(v))]
    out += ["--n", str(s.n or 0), "--seed", str(s.seed)]  # --n 0: every text
    if s.per_class is not None:
        out += ["--per-class", str(s.per_class)]
    if s.imbalance is not None:
        out += ["--imbalance", ":".join(_num(r) for r in s.imbalance)]
    if s.fraction is not None:
        out += ["--fraction", _num(s.fraction)]
    out += ["--max-length", str(cfg.max_length), "--pooling", cfg.pooling, "--representation", cfg.representation]
    out += ["--device", device, "--dtype", dtype]
    if cfg.batch_size is not None:
        out += ["--batch-size", str(cfg.batch_size)]
    return out + (["--trust-remote-code"] if cfg.trust_remote_code else [])


def layer_args(flags: list[str], layer: int, lr: float, sc: SweepConfig) -> list[str]:
    """The ``train`` arguments of the run at ``layer`` with learning rate ``lr`` and the first seed of ``sc``."""
    tuned = ",".join(str(t) for t in range(max(1, layer - sc.k + 1), layer + 1))
    return [
        *flags,
        *("--classifier-layer", str(layer), "--tune-layers", tuned),
        *("--steps", str(sc.steps), "--lr", repr(lr), "--train-batch", str(sc.batch_size)),
        *("--eval-n", str(sc.eval_n), "--train-seed", str(sc.seeds[0])),
    ]


def with_train_args(record: dict, cfg: AnalysisConfig, sc: SweepConfig, device: str, dtype: str) -> dict:
    """``record`` with ``train_args``: per layer of ``record["layers"]``, the ``train`` arguments that repeat its
    run at the first seed of ``sc`` (the run whose final loss the record keeps)."""
    flags = config_flags(cfg, device, dtype)
    args = [layer_args(flags, layer, lr, sc) for layer, lr in zip(record["layers"], record["lr"], strict=True)]
    return {**record, "train_args": args}
