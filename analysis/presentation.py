"""Plain data for the app's pages: labels, summaries, subset sizes and download records (no Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence


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
) -> dict:
    """The Variability page's JSON download: the CLI's ``curve --json`` record plus provenance keys."""
    from .pipeline import curve_record

    return {
        **curve_record(cfg, curve, n, recommended, rule),
        "tolerance": tolerance,
        "weighting": weighting,
        "cache_key": cache_key,
        "device": info.get("device"),
        "dtype": info.get("dtype"),
    }
