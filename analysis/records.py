"""The JSON records the CLI and the app write (curves, cards), and the plain data of the app's pages: labels,
summaries, subset sizes (no Streamlit)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.store.jsonio import numbers_back

if TYPE_CHECKING:
    from analysis.cards.scores import LayerCards
    from analysis.pipeline import AnalysisConfig


def curve_label(model: str, task_label: str, n: int, pooling: str, representation: str = "raw") -> str:
    """The legend label of a curve: ``model · task · n=… · pooling`` (`` · final-norm`` for states through the
    final norm, so two representations of one model can be overlaid and told apart)."""
    return f"{model} · {task_label} · n={n} · {pooling}" + ("" if representation == "raw" else f" · {representation}")


def fraction_size(n: int, n_classes: int, fraction: float) -> int:
    """Sample size of a robustness subset: ``fraction`` of ``n``, at least 4 texts per class."""
    return max(4 * n_classes, int(n * fraction))


def hover_texts(texts: Sequence[str], limit: int = 140) -> list[str]:
    """One-line hover labels: newlines to spaces, cut at ``limit`` characters with an ellipsis."""
    return [t[:limit].replace("\n", " ") + ("…" if len(t) > limit else "") for t in texts]


def task_summary(task, n_preview: int = 8) -> dict:
    """Size, class counts, warnings and the first ``n_preview`` rows (texts shortened) of a ``TaskData``."""
    pairs = (task.pairs or [None] * len(task))[:n_preview]
    preview = [
        {"text": x[:200], **({"text_pair": p[:120]} if p is not None else {}), "label": task.label_names[y]}
        for x, p, y in zip(task.texts[:n_preview], pairs, task.labels[:n_preview], strict=True)
    ]
    return {"n": len(task), "counts": task.counts(), "warnings": task.info.get("warnings", []), "preview": preview}


def counts_text(counts: dict) -> str:
    """``{"a": 3, "b": 5}`` → ``"a (3), b (5)"``."""
    return ", ".join(f"{k} ({v})" for k, v in counts.items())


def registry_rows(reg: Sequence[dict]) -> list[dict]:
    """The offline model table of the Setup page, from ``registry.registry_status()``."""
    return [
        {
            "model": r["name"],
            "layers": r["layers"],
            "hidden size": r["hidden_size"],
            "parameters": f"{r['params'] / 1e6:.1f} M",
            "installed": "yes" if r["installed"] else f"no — {r['install']}",
        }
        for r in reg
    ]


def page_curve_record(
    cfg,
    curve: dict,
    n: int,
    recommended: int,
    rule: str,
    *,
    tolerance: float,
    weighting: str,
    cache_key: str,
    info: dict,
    n_kept: int | None = None,
) -> dict:
    """The Variability page's JSON download: the CLI's ``curve --json`` record plus provenance keys.

    ``n_kept`` K: ν was streamed over all ``n`` texts and the band comes from a sample of K
    (``mode`` "stream", ``sample_size`` K in the record).
    """

    extra = {} if n_kept is None else {"sample_size": int(n_kept)}
    return {
        **curve_record(cfg, curve, n, recommended, rule, mode="states" if n_kept is None else "stream"),
        **extra,
        "tolerance": tolerance,
        "weighting": weighting,
        "cache_key": cache_key,
        "device": info.get("device"),
        "dtype": info.get("dtype"),
    }


def top_layer_note(model: str, best: int, n_layers: int) -> str | None:
    """One line for a curve whose ℓ* is the top layer of a sentence-embedding model (else None)."""
    from analysis.models.registry import REGISTRY

    entry = REGISTRY.get(model)
    if best < n_layers or entry is None or entry.kind != "sentence-embedding":
        return None
    return (
        f"ℓ* at the top layer is expected of a sentence-embedding model such as {model}: it was trained so that "
        "its last layer separates texts best. To see a middle layer that already separates the classes, "
        "try the raw pretrained model gemma3-270m (make gemma)."
    )


TEACHING_MODELS = ("minilm", "gemma3-270m")


def teaching_curves(folder: str | Path, task: str = "rotten_tomatoes") -> list[dict]:
    """The ``curve --json`` records of the teaching example: a sentence-embedding and a raw model on one task.

    Reads ``folder/<model>-<task>.json`` (written by ``python -m analysis curve ... --json``) for each
    model of :data:`TEACHING_MODELS`; returns the ones present and well formed, in that order.
    """
    out = []
    for model in TEACHING_MODELS:
        p = Path(folder) / f"{model}-{task}.json"
        try:
            rec = numbers_back(json.loads(p.read_text()))  # a null in ν or its band: NaN (a gap in the plot)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and {"layers", "variability", "recommended_layer", "model"} <= set(rec):
            out.append(rec)
    return out


def kept_notice(what: str, n_kept: int, n: int) -> str:
    """The plain sentence a page shows when only a seeded sample of K of N texts has its states held.

    ``what``: "curve" (ν itself), "band" (the bootstrap band), "projections" or "cards".
    """
    which = f"a seeded sample of {n_kept:,} of {n:,} texts"
    notes = {
        "curve": f"{n:,} texts are too many to hold their states, so they were streamed: ν is exact, "
        f"from all {n:,} texts (running statistics). The band, projections and layer cards use {which}.",
        "band": f"The bootstrap band's width comes from resamples of {which}, centred on the exact ν: it shows how "
        f"much ν of {n_kept:,} texts varies, so it is wider than the uncertainty of ν from all {n:,}.",
        "projections": f"Projections use {which} (the same texts at every layer).",
        "cards": f"The probe and kNN scores use {which}; ν is exact, from all {n:,} texts.",
    }
    if what not in notes:
        raise ValueError(f"unknown notice '{what}'; use one of {', '.join(notes)}")
    return notes[what]


def share_line(share: list[float] | None, *, top: int = 3) -> str | None:
    """How sure ℓ* is, in words: "ℓ* = 15 in 41 % of resamples, 13 in 30 %, 17 in 22 %".

    ``share`` per layer (``CurveResult.argmin_share`` or ``plateau_share``); None without one.
    """
    if not share:
        return None
    ranked = sorted((i for i, s in enumerate(share) if s > 0), key=lambda i: (-share[i], i))[:top]
    parts = [f"{l} in {share[l]:.0%}".replace("%", " %") for l in ranked]
    return f"ℓ* = {parts[0]} of resamples" + "".join(f", {p}" for p in parts[1:])


def no_majority_line(share: list[float] | None, *, top: int = 3) -> str | None:
    """One line when no layer is ℓ* in a majority of resamples, else None.

    "layers 13, 15 and 17 are about equally separated by ν; the lowest is the cheapest".
    """
    if not share or max(share) > 0.5:
        return None
    ranked = sorted(sorted((i for i, s in enumerate(share) if s > 0), key=lambda i: (-share[i], i))[:top])
    if len(ranked) < 2:
        return None
    names = ", ".join(map(str, ranked[:-1])) + f" and {ranked[-1]}"
    return (
        f"No layer is ℓ* in most resamples: layers {names} are about equally separated by ν; "
        "the lowest is the cheapest."
    )


def spans_decade(nu: list[float], factor: float = 10.0) -> bool:
    """Whether ν spans more than ``factor`` × across layers: then a log axis shows where ℓ* is decided."""
    pos = [v for v in nu if v > 0 and v == v and v != float("inf")]
    return len(pos) > 1 and max(pos) > factor * min(pos)


def config_fields(cfg: AnalysisConfig, n: int) -> dict:
    """What a result was computed on: model, task, split, pooling, representation (resolved), max length,
    sample size and seed."""
    from analysis.pipeline import concrete

    # callers pass ``cfg`` resolved under their own cache (concrete(cfg, cache_root=...)); "auto" left here is
    # resolved under the default cache, where an offline model may not be converted yet
    rep = cfg.representation if cfg.representation != "auto" else concrete(cfg).representation
    return {
        "model": cfg.model,
        "task": cfg.task.label(),
        "split": cfg.task.split,
        "pooling": cfg.pooling,
        "representation": rep,
        "max_length": cfg.max_length,
        "n": int(n),
        "seed": cfg.sampling.seed,
    }


def curve_record(
    cfg: AnalysisConfig, curve: dict, n: int, recommended: int, rule: str, *, mode: str = "states", world_size: int = 1
) -> dict:
    """The JSON record of a curve (CLI ``--json`` and the app's download share these keys).

    ``curve`` is ``CurveResult.to_dict()`` (its ℓ* shares are None without bootstrap resamples);
    ``recommended`` the layer ℓ* under ``rule``; ``mode``
    "states" (ν from the stored states) or "stream" (from running statistics, over ``world_size`` processes).
    """
    return {
        **config_fields(cfg, n),
        "layers": curve["layers"],
        "variability": curve["variability"],
        "band": curve["band"],
        "argmin_share": curve.get("argmin_share"),
        "plateau_share": curve.get("plateau_share"),
        "counts": curve["counts"],
        "recommended_layer": int(recommended),
        "rule": rule,
        "mode": mode,
        "world_size": int(world_size),
    }


def cards_record(cfg: AnalysisConfig, cards: LayerCards, n: int, *, n_kept: int | None = None) -> dict:
    """The JSON record of the cards (CLI ``--json`` and the Layers page's download share it).

    Every per-layer list is indexed by layer (0 = embeddings); ``grad_norm`` only when computed.
    ``n_kept`` K: the probe and kNN ran on a seeded sample of K of the ``n`` texts and ν on
    all of them (streamed); the record then says ``"mode": "stream"`` and ``sample_size``.
    """
    out = {**config_fields(cfg, n), **cards.to_dict()}
    if cards.grad_norm is None:
        out.pop("grad_norm")
    if n_kept is not None:
        out.update(mode="stream", sample_size=int(n_kept))
    return out
