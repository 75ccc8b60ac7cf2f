"""Plain data for the app's pages: labels, summaries, subset sizes and download records (no Streamlit)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from analysis.store.jsonio import numbers_back


def curve_label(model: str, task_label: str, n: int, pooling: str) -> str:
    """The legend label of a curve: ``model · task · n=… · pooling``."""
    return f"{model} · {task_label} · n={n} · {pooling}"


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
            "hidden size": r["hidden"],
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
    sample_size: int | None = None,
) -> dict:
    """The Variability page's JSON download: the CLI's ``curve --json`` record plus provenance keys.

    ``sample_size`` K: ν was streamed over all ``n`` texts and the band comes from a sample of K
    (``mode`` "stream", ``sample_size`` K in the record).
    """
    from analysis.pipeline import curve_record

    extra = {} if sample_size is None else {"sample_size": int(sample_size)}
    return {
        **curve_record(cfg, curve, n, recommended, rule, mode="states" if sample_size is None else "stream"),
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


def sample_notice(what: str, sample_size: int, n: int) -> str:
    """The plain sentence a page shows when only a seeded sample of K of N texts has its states held.

    ``what``: "curve" (ν itself), "band" (the bootstrap band), "projections" or "cards".
    """
    of = f"a seeded sample of {sample_size:,} of {n:,} texts"
    notes = {
        "curve": f"{n:,} texts are too many to hold their states, so they were streamed: ν is exact, "
        f"from all {n:,} texts (running statistics). The band, projections and layer cards use {of}.",
        "band": f"The bootstrap band's width comes from resamples of {of}, centred on the exact ν: it shows how "
        f"much ν of {sample_size:,} texts varies, so it is wider than the uncertainty of ν from all {n:,}.",
        "projections": f"Projections use {of} (the same texts at every layer).",
        "cards": f"The probe and kNN scores use {of}; ν is exact, from all {n:,} texts.",
    }
    if what not in notes:
        raise ValueError(f"unknown notice '{what}'; use one of {', '.join(notes)}")
    return notes[what]
