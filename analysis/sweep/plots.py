"""The plots of docs/selectors.md: one per sweep record, the trained curve with its seeds' band."""

from __future__ import annotations

import re
from pathlib import Path


def plot_name(record: dict) -> str:
    """The file name of a record's plot: selectors-<model>-<task>.png with unsafe characters replaced."""
    dtype = record["settings"].get("dtype")  # a reduced-precision record beside the float32 one gets its own file
    name = f"selectors-{record['model']}-{record['task']}" + (f"-{dtype}" if dtype else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".png"


def write_plots(book: dict, img: Path) -> None:
    """One PNG per record (:func:`analysis.sweep.report.plot_name`) in ``img``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for r in book["sweeps"]:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        draw_record(ax, r)
        fig.tight_layout()
        fig.savefig(img / plot_name(r), dpi=110)
        plt.close(fig)


def draw_record(ax, r: dict) -> None:
    """The mean trained metric per layer, min–max over seeds, the tied set shaded, the oracle and ν's pick."""
    layers, mean = r["layers"], r["mean"]
    lo, hi = [min(p) for p in r["per_seed"]], [max(p) for p in r["per_seed"]]
    for layer in r["tied_layers"]:
        ax.axvspan(layer - 0.4, layer + 0.4, color="gold", alpha=0.25, lw=0)
    ax.fill_between(layers, lo, hi, alpha=0.25, label=f"min–max over {len(r['seeds'])} seed(s)")
    ax.plot(layers, mean, "o-", label=f"trained {r['metric']} (mean)")
    i = layers.index(r["oracle_layer"])
    ax.plot([r["oracle_layer"]], [mean[i]], "*", ms=16, c="gold", mec="black", label="oracle (tied set shaded)")
    nu = r["selectors"].get("nu_argmin") or {}
    if nu.get("layer") is not None:
        ax.axvline(nu["layer"], ls="--", c="gray", label=f"ν's pick (layer {nu['layer']})")
    ax.set_title(f"{r['model']} · {r['task']}", fontsize=10)
    ax.set_xlabel("classifier layer ℓ")
    ax.set_ylabel(f"held-out {r['metric']}")
    if len(layers) <= 18:  # every layer labelled while the labels still fit
        ax.set_xticks(layers)
    handles, labels = ax.get_legend_handles_labels()
    curve = _nu_curve(nu)
    if curve is not None:  # ν itself beside the truth it is scored against (records with per-layer scores)
        twin = ax.twinx()
        on = r.get("representation_default", "raw")
        (line,) = twin.plot(layers, curve, "s:", c="tab:red", ms=3, lw=1, label=f"ν, {on} states (right, log)")
        from matplotlib.ticker import FuncFormatter

        twin.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 6 rather than 2×10⁰
        twin.yaxis.set_major_formatter(plain)
        twin.yaxis.set_minor_formatter(plain)
        twin.set_ylabel("ν (lower: classes more separated)", color="tab:red", fontsize=8)
        twin.tick_params(axis="y", which="both", colors="tab:red", labelsize=7)
        handles, labels = [*handles, line], [*labels, line.get_label()]
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)


def _nu_curve(nu: dict) -> list[float] | None:
    """ν per layer of a record's ``nu_argmin`` scores (the score is −ν); None without every layer's."""
    scores = nu.get("scores")
    if not scores or any(s is None or -s <= 0 for s in scores):
        return None
    return [-s for s in scores]
