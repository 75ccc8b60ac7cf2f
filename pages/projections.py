"""Projections: UMAP (PCA preview) of one layer's pooled states, and all layers side by side."""
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from analysis.errors import VariscopeError
from analysis.projection import ProjectionConfig, gpu_umap_available, project_layers
from pages._common import bound, ensure_app, page_states

ensure_app()

ss = st.session_state
st.title("🗺️ Projections")
st.caption("Each point is one text (its pooled hidden state at a layer), coloured by label. "
           "Separated colours = a layer that already tells the classes apart.")

cfg, res, _, _ = page_states()
L = res.n_layers

with st.expander("Projection settings", expanded=False):
    p1, p2, p3, p4, p5 = st.columns(5)
    method = p1.radio("Method", ["umap", "pca"], horizontal=True, key="proj_method")
    dim = p2.radio("Dimensions", [2, 3], horizontal=True, key="proj_dim")
    nn = p3.number_input("UMAP neighbours", 2, 200, 15, key="proj_nn")
    md = p4.number_input("UMAP min_dist", 0.0, 1.0, 0.1, 0.05, key="proj_md")
    metric = p5.selectbox("Metric", ["cosine", "euclidean", "manhattan", "correlation"], key="proj_metric")
    pseed = st.number_input("UMAP seed", 0, 10_000, 0, key="proj_seed")
    st.caption("UMAP runs on 50 PCA components. " + ("GPU UMAP (cuML) is active." if gpu_umap_available()
                                                     else "umap-learn on the CPU."))
pcfg = ProjectionConfig(method=method, dim=int(dim), n_neighbors=int(nn), min_dist=float(md), metric=metric,
                        seed=int(pseed))
layer = bound(st.slider, "Layer (shared with the other pages)", "layer", min_value=0, max_value=L)

names = res.label_names
hover = np.array([t[:140].replace("\n", " ") + ("…" if len(t) > 140 else "") for t in res.texts])
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52"]


def scatter(coords, *, title=""):
    fig = go.Figure()
    for c, name in enumerate(names):
        m = res.labels == c
        idx = np.flatnonzero(m)
        kw = dict(mode="markers", name=name, customdata=np.stack([idx, hover[m]], 1),
                  hovertemplate="%{customdata[1]}<extra>" + name + "</extra>",
                  marker=dict(size=4 if dim == 3 else 6, opacity=0.75, color=PALETTE[c % len(PALETTE)]))
        if coords.shape[1] == 3:
            fig.add_scatter3d(x=coords[m, 0], y=coords[m, 1], z=coords[m, 2], **kw)
        else:
            fig.add_scatter(x=coords[m, 0], y=coords[m, 1], **kw)
    fig.update_layout(height=560, title=title, margin=dict(l=10, r=10, t=40, b=10), dragmode="lasso",
                      legend=dict(itemsizing="constant"))
    return fig


main = st.empty()
preview = project_layers(res.states, [layer], ProjectionConfig(method="pca", dim=int(dim)))["coords"][layer]
if method == "umap":
    main.plotly_chart(scatter(preview, title=f"Layer {layer} — PCA preview (UMAP is running…)"),
                      width="stretch", key="proj_preview")
try:
    from analysis.cache import DiskCache

    first = "umap" not in ss.get("_jit_done", set())
    msg = ("Running UMAP (the first run in a fresh server compiles numba code: ~30 s)…" if first and method == "umap"
           else "Projecting…")
    with st.spinner(msg):
        out = project_layers(res.states, [layer], pcfg, states_key=res.key, cache=DiskCache())
    ss.setdefault("_jit_done", set()).add(method)
except VariscopeError as e:
    st.error(str(e))
    st.stop()
coords = out["coords"][layer]
title = f"Layer {layer} — {method.upper()}" + (" (cached)" if out["cache_hit"] else "")
main.empty()
event = st.plotly_chart(scatter(coords, title=title), width="stretch", on_select="rerun",
                        selection_mode=["lasso", "box", "points"], key="proj_main")
sel = event.selection.points if event and event.selection else []
if sel:
    ids = sorted({int(p["customdata"][0]) for p in sel if p.get("customdata")})
    st.subheader(f"{len(ids)} selected texts")
    st.dataframe(pd.DataFrame({"label": [names[res.labels[i]] for i in ids], "text": [res.texts[i] for i in ids]}),
                 hide_index=True, width="stretch")
else:
    st.caption("Tip: draw a lasso or a box on the chart to read the selected texts.")

st.subheader("All layers")
a1, a2 = st.columns(2)
show_all = a1.toggle("Show every layer side by side", key="proj_all", value=method == "pca")
align = a2.checkbox("Align orientations across layers (AlignedUMAP, slower)", key="proj_align",
                    disabled=method != "umap")
if show_all:
    bar = st.progress(0.0, text="Projecting every layer…")
    allp = project_layers(res.states, range(L + 1), ProjectionConfig(**{**pcfg.__dict__, "dim": 2}),
                          states_key=res.key, cache=DiskCache(), aligned=bool(align and method == "umap"),
                          progress=lambda d, t: bar.progress(d / t, text=f"Projected {d}/{t} layers"))
    bar.empty()
    cols = min(4, L + 1)
    rows = math.ceil((L + 1) / cols)
    grid = make_subplots(rows=rows, cols=cols, subplot_titles=[f"layer {l}" for l in range(L + 1)],
                         horizontal_spacing=0.03, vertical_spacing=0.08)
    for l in range(L + 1):
        xy = allp["coords"][l]
        for c, name in enumerate(names):
            m = res.labels == c
            grid.add_scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, legendgroup=name,
                             showlegend=l == 0, marker=dict(size=3, color=PALETTE[c % len(PALETTE)]),
                             hoverinfo="skip", row=l // cols + 1, col=l % cols + 1)
    grid.update_xaxes(showticklabels=False)
    grid.update_yaxes(showticklabels=False)
    grid.update_layout(height=260 * rows, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(grid, width="stretch", key="proj_grid")
