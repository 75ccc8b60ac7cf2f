"""The plots of docs/reproduction.md, from the results dict of :func:`analysis.reproduce.run.run` alone."""

from __future__ import annotations

from pathlib import Path

from analysis.reproduce.verdicts import summarize


def write_plots(res: dict, img: Path) -> None:
    """repro_curves.png, repro_metric_vs_params.png and repro_robustness.png in ``img``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [(c["model"], c["task"]) for c in res["curves"]]
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
