"""Plotly figure builders of the pages: data in, figure out; no Streamlit calls here."""

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Axis ticks as a person reads them: ν to 3 significant digits (no trailing zeros), accuracy in percent.
NU_TICKS, ACCURACY_TICKS, METRIC_TICKS = ".3~g", ".0%", ".2~f"
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52"]


def curve_figure(
    curve: dict, best: int, rule: str, selected: int, comparisons: list[dict], label: str, log: bool = False
) -> go.Figure:
    """The ν-per-layer figure: bootstrap band, overlaid comparisons, the curve, ℓ* as a star, the selected layer."""
    nu, layers = curve["variability"], curve["layers"]
    counts = ", ".join(f"{k}: {v}" for k, v in curve["counts"].items())
    fig = go.Figure()
    if curve["band"]:
        fig.add_scatter(
            x=layers + layers[::-1],
            y=curve["band"]["high"] + curve["band"]["low"][::-1],
            fill="toself",
            fillcolor="rgba(99,110,250,0.18)",
            line=dict(width=0),
            hoverinfo="skip",
            name="5–95 % band",
        )
    for comp in comparisons:
        fig.add_scatter(
            x=comp["layers"],
            y=comp["variability"],
            mode="lines+markers",
            name=comp["label"],
            line=dict(dash="dot"),
            hovertemplate="layer %{x}<br>ν = %{y:.6g}<extra>%{fullData.name}</extra>",
        )
    fig.add_scatter(
        x=layers,
        y=nu,
        mode="lines+markers",
        name=label,
        marker=dict(size=10),
        line=dict(width=3),
        customdata=[[counts]] * len(layers),
        hovertemplate="layer %{x}<br>ν = %{y:.6g}<br>classes: %{customdata[0]}<extra></extra>",
    )
    fig.add_scatter(
        x=[best],
        y=[nu[best]],
        mode="markers",
        name=f"recommended ℓ* = {best} ({rule})",
        marker=dict(symbol="star", size=20, color="gold", line=dict(width=1, color="black")),
        hoverinfo="skip",
    )
    fig.add_vline(x=selected, line_dash="dash", line_color="gray", annotation_text=f"selected {selected}")
    fig.update_layout(
        height=440,
        xaxis_title="layer (0 = embeddings)",
        yaxis_title="variability ratio ν",
        yaxis_type="log" if log else "linear",
        yaxis_tickformat=NU_TICKS,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=-0.2),
        clickmode="event+select",
    )
    fig.update_xaxes(tickmode="linear", dtick=1)
    return fig


def projection_scatter(
    coords: np.ndarray, labels: np.ndarray, names: list[str], hover: np.ndarray, *, title: str = "", dim: int = 2
) -> go.Figure:
    """One layer's 2-D or 3-D projection, one trace per class; customdata = (row index, hover text)."""
    fig = go.Figure()
    for c, name in enumerate(names):
        m = labels == c
        idx = np.flatnonzero(m)
        kw = dict(
            mode="markers",
            name=name,
            customdata=np.stack([idx, hover[m]], 1),
            hovertemplate="%{customdata[1]}<extra>" + name + "</extra>",
            marker=dict(size=4 if dim == 3 else 6, opacity=0.75, color=PALETTE[c % len(PALETTE)]),
        )
        if coords.shape[1] == 3:
            fig.add_scatter3d(x=coords[m, 0], y=coords[m, 1], z=coords[m, 2], **kw)
        else:
            fig.add_scatter(x=coords[m, 0], y=coords[m, 1], **kw)
    fig.update_layout(
        height=560,
        title=title,
        margin=dict(l=10, r=10, t=40, b=10),
        dragmode="lasso",
        legend=dict(itemsizing="constant"),
    )
    return fig


def layers_grid(coords: dict, labels: np.ndarray, names: list[str], n_layers: int) -> go.Figure:
    """Every layer's 2-D projection side by side (at most 4 per row), one legend for all."""
    cols = min(4, n_layers + 1)
    rows = math.ceil((n_layers + 1) / cols)
    grid = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"layer {l}" for l in range(n_layers + 1)],
        horizontal_spacing=0.03,
        vertical_spacing=0.08,
    )
    for l in range(n_layers + 1):
        xy = coords[l]
        for c, name in enumerate(names):
            m = labels == c
            grid.add_scatter(
                x=xy[m, 0],
                y=xy[m, 1],
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=l == 0,
                marker=dict(size=3, color=PALETTE[c % len(PALETTE)]),
                hoverinfo="skip",
                row=l // cols + 1,
                col=l % cols + 1,
            )
    grid.update_xaxes(showticklabels=False)
    grid.update_yaxes(showticklabels=False)
    grid.update_layout(height=260 * rows, margin=dict(l=10, r=10, t=40, b=10))
    return grid


def toy_figure(toy: dict) -> go.Figure:
    """The Learn page's Gaussian toy: the points of each class and its mean as a cross."""
    fig = go.Figure()
    colors = ["#636EFA", "#EF553B", "#00CC96"]
    for c in range(len(toy["means"])):
        pts = toy["X"][toy["y"] == c]
        fig.add_scatter(
            x=pts[:, 0],
            y=pts[:, 1],
            mode="markers",
            name=f"class {c}",
            marker=dict(size=5, opacity=0.6, color=colors[c]),
        )
        fig.add_scatter(
            x=[toy["means"][c, 0]],
            y=[toy["means"][c, 1]],
            mode="markers",
            showlegend=False,
            marker=dict(size=16, symbol="x", color=colors[c], line=dict(width=2, color="black")),
        )
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=10, b=10), yaxis_scaleanchor="x")
    return fig


def teaching_figure(records: list[dict]) -> go.Figure:
    """ν per layer of several models on one task, side by side (``curve --json`` records), ℓ* starred."""
    titles = [r["model"] + (" · final-norm states" if r.get("representation") == "final-norm" else "") for r in records]
    fig = make_subplots(rows=1, cols=len(records), subplot_titles=titles)
    for i, r in enumerate(records, start=1):
        best = r["recommended_layer"]
        fig.add_scatter(x=r["layers"], y=r["variability"], mode="lines+markers", name=r["model"], row=1, col=i)
        fig.add_scatter(
            x=[best],
            y=[r["variability"][best]],
            mode="markers",
            name=f"ℓ* = {best} of {len(r['layers']) - 1}",
            marker=dict(symbol="star", size=18, color="gold", line=dict(width=1, color="black")),
            row=1,
            col=i,
        )
        fig.update_xaxes(title_text="layer (0 = embeddings)", row=1, col=i)
    fig.update_yaxes(type="log", tickformat=NU_TICKS)  # ν spans orders of magnitude across a raw model's layers
    fig.update_yaxes(title_text="ν (log scale)", row=1, col=1)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def training_history_figure(events: list[dict]) -> go.Figure:
    """A run's live chart: training loss per step, held-out metrics (right axis, 0–1) at each evaluation."""
    loss = [e for e in events if "loss" in e]
    evals = [e for e in events if "eval" in e and not e.get("final")]
    fig = go.Figure()
    fig.add_scatter(x=[e["step"] for e in loss], y=[e["loss"] for e in loss], name="train loss", mode="lines")
    for name in evals[0]["eval"] if evals else {}:
        fig.add_scatter(
            x=[e["step"] for e in evals],
            y=[e["eval"][name] for e in evals],
            name=f"held-out {name}",
            mode="lines+markers",
            yaxis="y2",
        )
    fig.update_layout(
        height=320,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis_title="step",
        yaxis=dict(title="loss", tickformat=NU_TICKS),
        yaxis2=dict(
            title="metric",
            overlaying="y",
            side="right",
            range=[0, 1],
            tickmode="linear",
            tick0=0,
            dtick=0.2,
            showgrid=False,
        ),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def variability_before_after_figure(ba: dict) -> go.Figure:
    """ν per kept layer on the held-out texts, before and after training."""
    fig = go.Figure()
    fig.add_scatter(x=ba["layers"], y=ba["before"], name="ν before training", mode="lines+markers")
    fig.add_scatter(x=ba["layers"], y=ba["after"], name="ν after training", mode="lines+markers")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="layer", yaxis_title="ν")
    fig.update_yaxes(tickformat=NU_TICKS)
    return fig


def training_comparison_figure(runs: list[tuple[str, dict]]) -> go.Figure:
    """Held-out metric against trainable parameters, one marker per (label, result); size grows with train time."""
    fig = go.Figure()
    for label, x in runs:
        fig.add_scatter(
            x=[x["trainable_params"]],
            y=[x["eval"][x["metric"]]],
            mode="markers+text",
            name=label,
            text=[f"{x['train_seconds']:.0f}s"],
            textposition="top center",
            marker=dict(size=12 + min(30, x["train_seconds"] / 5)),
        )
    fig.update_layout(
        height=300,
        xaxis_title="trainable parameters",
        yaxis_title="held-out metric",
        yaxis_tickformat=METRIC_TICKS,
        xaxis_type="log",
        margin=dict(l=10, r=10, t=10, b=10),
        showlegend=True,
    )
    return fig


def add_trained_curve(fig: go.Figure, sweep: dict) -> None:
    """A sweep's trained metric on the right axis: mean over seeds, a min–max band, the oracle and its tied set."""
    layers, mean, metric = sweep["layers"], sweep["mean"], sweep["metric"]
    lo, hi = [min(p) for p in sweep["per_seed"]], [max(p) for p in sweep["per_seed"]]
    for layer in sweep["tied_layers"]:
        fig.add_vrect(x0=layer - 0.4, x1=layer + 0.4, fillcolor="gold", opacity=0.15, line_width=0)
    fig.add_scatter(
        x=layers + layers[::-1],
        y=hi + lo[::-1],
        fill="toself",
        fillcolor="rgba(171,99,250,0.18)",
        line=dict(width=0),
        hoverinfo="skip",
        name=f"trained: min–max over {len(sweep['seeds'])} seed(s)",
        secondary_y=True,
    )
    fig.add_scatter(
        x=layers,
        y=mean,
        mode="lines+markers",
        name=f"trained {metric}, mean (right axis)",
        marker=dict(size=9, symbol="diamond"),
        line=dict(width=3, color=PALETTE[3]),
        hovertemplate="layer %{x}<br>%{y:.3f}<extra>trained " + metric + "</extra>",
        secondary_y=True,
    )
    i = layers.index(sweep["oracle_layer"])
    fig.add_scatter(
        x=[sweep["oracle_layer"]],
        y=[mean[i]],
        mode="markers",
        name=f"oracle layer {sweep['oracle_layer']} (tied: {', '.join(map(str, sweep['tied_layers']))})",
        marker=dict(symbol="star", size=18, color="gold", line=dict(width=1, color="black")),
        hoverinfo="skip",
        secondary_y=True,
    )


def layer_cards_figure(cards: dict, best: int, selected: int | None, sweep: dict | None = None) -> go.Figure:
    """ν (left axis) and the linear probe's and kNN's held-out accuracy (right axis) against the layer.

    ``sweep``: a sweep record (:func:`analysis.sweep.run.summarise`), whose trained metric joins the right axis.
    """
    layers = cards["layers"]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(
        x=layers,
        y=cards["variability"],
        mode="lines+markers",
        name="ν (left axis)",
        marker=dict(size=9),
        line=dict(width=3, color=PALETTE[0]),
        hovertemplate="layer %{x}<br>ν = %{y:.4g}<extra></extra>",
        secondary_y=False,
    )
    for key, name, dash, color in (
        ("probe_accuracy", "linear probe accuracy (right axis)", "solid", PALETTE[1]),
        ("knn_accuracy", "kNN accuracy (right axis)", "dot", PALETTE[2]),
    ):
        fig.add_scatter(
            x=layers,
            y=cards[key],
            mode="lines+markers",
            name=name,
            line=dict(dash=dash, color=color),
            hovertemplate="layer %{x}<br>%{y:.3f}<extra>" + name.split(" (")[0] + "</extra>",
            secondary_y=True,
        )
    if sweep is not None:
        add_trained_curve(fig, sweep)
    fig.add_vline(x=best, line_color="gold", line_width=3, annotation_text=f"ℓ* = {best}", annotation_position="top")
    if selected is not None:
        fig.add_vline(x=selected, line_dash="dash", line_color="gray", annotation_text=f"selected {selected}")
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25), hovermode="x unified"
    )
    fig.update_xaxes(title_text="layer (0 = embeddings)", tickmode="linear", dtick=1)
    fig.update_yaxes(title_text="variability ratio ν", tickformat=NU_TICKS, secondary_y=False)
    right = "held-out accuracy" if sweep is None else f"held-out accuracy · trained {sweep['metric']}"
    fig.update_yaxes(title_text=right, tickformat=ACCURACY_TICKS, secondary_y=True)
    return fig


def claims_figure(panels: list[tuple[str, list[dict], str, list[float]]]) -> go.Figure:
    """Forest plots of the reproduction's claims: per panel (title, counted settings, the difference's field, the
    reference lines), each setting's paired difference and 95 % interval, coloured by its outcome."""
    from analysis.reproduce.plots import OUTCOME_COLOURS

    colours = {k: v.removeprefix("tab:") for k, v in OUTCOME_COLOURS.items()}
    titles = [title if rows else f"{title}: no counted setting" for title, rows, *_ in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.25)
    for i, (_, rows, field, lines) in enumerate(panels, start=1):
        for x in rows:
            label = f"{x['model']} · {x['task']} · k={x['k']}"
            fig.add_scatter(
                x=[x[field]],
                y=[label],
                mode="markers",
                marker=dict(size=10, color=colours.get(x["outcome"], "gray")),
                error_x=dict(
                    type="data", symmetric=False, array=[x["high"] - x[field]], arrayminus=[x[field] - x["low"]]
                ),
                name=x["outcome"],
                showlegend=False,
                hovertemplate=f"{label}<br>{x['outcome']}: %{{x:+.4f}} "
                f"[{x['low']:+.4f}, {x['high']:+.4f}]<extra></extra>",
                row=1,
                col=i,
            )
        for v in lines:
            fig.add_vline(
                x=v, line_dash="dash" if v else "solid", line_width=1, row=1, col=i, exclude_empty_subplots=False
            )
        fig.update_xaxes(title_text="paired difference, 95 % interval", row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    n = max((len(p[1]) for p in panels), default=1)
    fig.update_layout(height=120 + 32 * n, margin=dict(l=10, r=10, t=40, b=10))
    return fig
