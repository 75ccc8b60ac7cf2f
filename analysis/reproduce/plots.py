"""The plots of docs/reproduction.md, from the results dict of :func:`analysis.reproduce.run.run` alone."""

from __future__ import annotations

from pathlib import Path

from analysis.reproduce.verdicts import MARGIN, NOT_COUNTED, summarize

#: a setting's colour by its outcome: for the claim (green), against it (red), neither (grey)
OUTCOME_COLOURS = {
    "better": "tab:green",
    "match": "tab:green",
    "worse": "tab:red",
    "worse beyond the margin": "tab:red",
}


def write_plots(res: dict, img: Path) -> None:
    """repro_claims.png, repro_curves.png, repro_metric_vs_params.png and repro_robustness.png in ``img``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [(c["model"], c["task"]) for c in res["curves"]]
    _plot_claims(res, img / "repro_claims.png")
    for name, draw, height in (
        ("repro_curves.png", _plot_curves, 3.2),
        ("repro_metric_vs_params.png", _plot_metric_vs_params, 3.4),
        ("repro_robustness.png", _plot_robustness, 3.2),
    ):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), height), squeeze=False)
        draw(res, tasks, axes[0])
        fig.tight_layout()
        fig.savefig(img / name, dpi=110)
        plt.close(fig)


def _plot_curves(res: dict, tasks, axes) -> None:
    for ax, c in zip(axes, res["curves"], strict=True):  # one panel per curve
        ax.plot(c["layers"], c["variability"], "o-", label="ν")
        if c["band"]:
            ax.fill_between(c["layers"], c["band"]["low"], c["band"]["high"], alpha=0.25, label="5–95 % bootstrap")
        ax.axvline(c["best_layer"], ls="--", c="gray")
        ax.set_title(f"{c['model']} · {c['task']}", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("ν")
    axes[0].legend(fontsize=8)


def _plot_metric_vs_params(res: dict, tasks, axes) -> None:
    rows = summarize(res)
    marks = {"variability": "o", "top": "s", "full": "*"}
    for ax, (model, task) in zip(axes, tasks, strict=True):
        for r in rows:
            if (r["model"], r["task"]) != (model, task):
                continue
            ax.errorbar(
                r["trainable_params"],
                r["mean"],
                yerr=r["sd"],
                fmt=marks[r["strategy"]],
                ms=8,
                label=f"{r['strategy']} k={r['k']}" if r["k"] else r["strategy"],
                alpha=0.8,
            )
        ax.set_xscale("log")
        ax.set_title(f"{model} · {task}", fontsize=10)
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(next((r["metric"] for r in rows if r["task"] == task), "metric"))
    axes[-1].legend(fontsize=7, loc="lower right")


def _plot_robustness(res: dict, tasks, axes) -> None:
    for ax, (model, task) in zip(axes, tasks, strict=True):
        for x in res["robustness"]:
            if (x["model"], x["task"]) != (model, task):
                continue
            lab = f"{x['value'] * 100:g}%" if x["kind"] == "fraction" else x["value"]
            nu = _mean_curve(x)
            ax.plot(
                range(len(nu)),
                nu,
                "-" if x["kind"] == "fraction" else "--",
                marker=".",
                label=str(lab),
                alpha=0.8,
            )
        ax.set_title(f"{model} · {task}", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("ν (mean over draws)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _mean_curve(x: dict) -> list[float]:
    """A claim-3 record's curve: the mean over its draws (an older record's single curve)."""
    if "draws" not in x:
        return x["variability"]
    curves = [d["variability"] for d in x["draws"]]
    return [sum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))]


def claim_rows(res: dict, claim: str) -> list[dict]:
    """The counted settings of claim 1 or 2 ("claim1", "claim2") with an interval: what repro_claims.png draws."""
    rows = res.get("verdicts", {}).get(f"{claim}_detail", [])
    return [x for x in rows if x["outcome"] not in NOT_COUNTED and x.get("low") is not None]


def _plot_claims(res: dict, path: Path) -> None:
    """Claims 1 and 2 as forest plots: each counted setting's paired difference and 95 % interval."""
    import matplotlib.pyplot as plt

    panels = [
        ("claim1", "variability − top-k", "mean", [0.0]),
        ("claim2", f"variability − full (margin −{MARGIN:g})", "gap", [0.0, -MARGIN]),
    ]
    height = max(2.4, 0.32 * max(len(claim_rows(res, c)) for c, *_ in panels) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(11, height), squeeze=False)
    for ax, (claim, title, field, lines) in zip(axes[0], panels, strict=True):
        rows = claim_rows(res, claim)
        for y, x in enumerate(rows):
            colour = OUTCOME_COLOURS.get(x["outcome"], "tab:gray")
            ax.plot([x["low"], x["high"]], [y, y], "-", c=colour, lw=2)
            ax.plot([x[field]], [y], "o", c=colour)
        for v in lines:
            ax.axvline(v, ls="--" if v else "-", c="black", lw=0.8)
        ax.set_yticks(range(len(rows)), [f"{x['model']} · {x['task']} · k={x['k']}" for x in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title if rows else f"{title}: no counted setting", fontsize=10)
        ax.set_xlabel("paired difference, 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
