"""Home: what Variscope does and where to start."""

from pathlib import Path

import streamlit as st

from analysis.records import teaching_curves
from pages._charts import teaching_figure
from pages._state import ensure_app

ensure_app()

st.title(":material/biotech: Variscope")
st.markdown("""
**Which layers of a pretrained language model are already specialised for your task — and which few
should you tune?**

Variscope pools every layer's hidden states in **one forward pass**, computes the **variability ratio ν**
per layer (Xie et al., EMNLP Findings 2022: low ν = classes already well separated), recommends the
classifier layer ℓ*, and lets you fine-tune only a few layers at or below it — dropping the layers above.
Everything runs offline on the shipped default (MiniLM-L6 on Rotten Tomatoes snippets) and is cached on disk.
""")
c1, c2, c3, c4, c5 = st.columns(5)
with c1:
    st.page_link("pages/setup.py", label="1 · Setup", icon=":material/tune:")
    st.caption("Model, task, sample size, pooling. Compute.")
with c2:
    st.page_link("pages/variability.py", label="2 · Variability", icon=":material/show_chart:")
    st.caption("ν per layer, the recommended ℓ*, comparisons, robustness.")
with c3:
    st.page_link("pages/layers.py", label="3 · Layers", icon=":material/view_module:")
    st.caption("One card per layer: ν, probe and kNN accuracy, cost.")
with c4:
    st.page_link("pages/projections.py", label="4 · Projections", icon=":material/scatter_plot:")
    st.caption("UMAP/PCA of each layer, coloured by label.")
with c5:
    st.page_link("pages/training.py", label="5 · Training", icon=":material/model_training:")
    st.caption("Tune only the chosen layers; compare with top-k and full fine-tuning.")
curves = teaching_curves(Path(__file__).resolve().parent.parent / "docs" / "curves")
if len(curves) == 2:
    st.subheader("What it shows: where a model's classes are already separated")
    st.plotly_chart(teaching_figure(curves), width="stretch", key="home_teaching_curves")
    st.caption(
        "A sentence-embedding model (left) separates best at its top layer; a raw (only pretrained) language model "
        "(right) already does at a middle layer, so the layers above it can be dropped. Same task, same texts."
        + (
            " The decoder's states are read through its final norm, as a classifier on the truncated model sees them."
            if curves[1].get("representation") == "final-norm"
            else ""
        )
    )
st.page_link("pages/learn.py", label="New to the idea? Start with Learn", icon=":material/school:")
st.caption("Every view is a link: the URL carries model, task, n, seed, pooling, max length and layer.")
