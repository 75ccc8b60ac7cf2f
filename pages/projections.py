"""Projections: UMAP (PCA preview) of one layer's pooled states, and all layers side by side."""

import numpy as np
import pandas as pd
import streamlit as st

from analysis.errors import VariscopeError
from analysis.projection import ProjectionConfig, gpu_umap_available, project_layers
from analysis.records import hover_texts, kept_notice
from analysis.stream.kept import kept_fields, total_texts
from pages._charts import layers_grid, projection_scatter
from pages._compute import page_states
from pages._state import bound, ensure_app

ensure_app()

ss = st.session_state
st.title(":material/scatter_plot: Projections")
st.caption(
    "Each point is one text (its pooled hidden state at a layer), coloured by label. "
    "Separated colours = a layer that already tells the classes apart."
)

cfg, res, _, _ = page_states()
L = res.n_layers
if (K := kept_fields(res).get("sample_size")) is not None:
    st.info(kept_notice("projections", K, total_texts(res)), icon=":material/stream:")

with st.expander("Projection settings", expanded=False):
    p1, p2, p3, p4, p5 = st.columns(5)
    method = p1.radio("Method", ["umap", "pca"], horizontal=True, key="proj_method")
    dim = p2.radio("Dimensions", [2, 3], horizontal=True, key="proj_dim")
    nn = p3.number_input("UMAP neighbours", 2, 200, 15, key="proj_nn")
    md = p4.number_input("UMAP min_dist", 0.0, 1.0, 0.1, 0.05, key="proj_md")
    metric = p5.selectbox("Metric", ["cosine", "euclidean", "manhattan", "correlation"], key="proj_metric")
    pseed = st.number_input("UMAP seed", 0, 10_000, 0, key="proj_seed")
    st.caption(
        "UMAP runs on 50 PCA components. "
        + ("GPU UMAP (cuML) is active." if gpu_umap_available() else "umap-learn on the CPU.")
    )
pcfg = ProjectionConfig(
    method=method, dim=int(dim), n_neighbors=int(nn), min_dist=float(md), metric=metric, seed=int(pseed)
)
layer = bound(st.slider, "Layer (shared with the other pages)", "layer", min_value=0, max_value=L)

names = res.label_names
hover = np.array(hover_texts(res.texts))


def scatter(coords, *, title=""):
    return projection_scatter(coords, res.labels, names, hover, title=title, dim=int(dim))


main = st.empty()
preview = project_layers(res.states, [layer], ProjectionConfig(method="pca", dim=int(dim)))["coords"][layer]
if method == "umap":
    main.plotly_chart(
        scatter(preview, title=f"Layer {layer} — PCA preview (UMAP is running…)"), width="stretch", key="proj_preview"
    )
try:
    from analysis.store.cache import DiskCache

    first = "umap" not in ss.get("_jit_done", set())
    msg = (
        "Running UMAP (the first run in a fresh server compiles numba code: ~30 s)…"
        if first and method == "umap"
        else "Projecting…"
    )
    with st.spinner(msg):
        out = project_layers(res.states, [layer], pcfg, states_key=res.key, cache=DiskCache())
    ss.setdefault("_jit_done", set()).add(method)
except VariscopeError as e:
    st.error(str(e))
    st.stop()
coords = out["coords"][layer]
title = f"Layer {layer} — {method.upper()}" + (" (cached)" if out["cache_hit"] else "")
main.empty()
event = st.plotly_chart(
    scatter(coords, title=title),
    width="stretch",
    on_select="rerun",
    selection_mode=["lasso", "box", "points"],
    key="proj_main",
)
sel = event.selection.points if event and event.selection else []
if sel:
    ids = sorted({int(p["customdata"][0]) for p in sel if p.get("customdata")})
    st.subheader(f"{len(ids)} selected texts")
    st.dataframe(
        pd.DataFrame({"label": [names[res.labels[i]] for i in ids], "text": [res.texts[i] for i in ids]}),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("Tip: draw a lasso or a box on the chart to read the selected texts.")

st.subheader("All layers")
a1, a2 = st.columns(2)
show_all = a1.toggle("Show every layer side by side", key="proj_all", value=method == "pca")
align = a2.checkbox(
    "Align orientations across layers (AlignedUMAP, slower)", key="proj_align", disabled=method != "umap"
)
if show_all:
    bar = st.progress(0.0, text="Projecting every layer…")
    allp = project_layers(
        res.states,
        range(L + 1),
        ProjectionConfig(**{**pcfg.__dict__, "dim": 2}),
        states_key=res.key,
        cache=DiskCache(),
        aligned=bool(align and method == "umap"),
        progress=lambda d, t: bar.progress(d / t, text=f"Projected {d}/{t} layers"),
    )
    bar.empty()
    grid = layers_grid(allp["coords"], res.labels, names, L)
    st.plotly_chart(grid, width="stretch", key="proj_grid")
