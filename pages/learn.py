"""Learn: the idea in plain words, the formula, and a toy to play with."""

import json
from pathlib import Path

import streamlit as st

from analysis.records import teaching_curves
from analysis.reproduce.plots import claim_rows
from analysis.reproduce.report import report_markdown, verdicts_markdown
from analysis.reproduce.run import revive
from analysis.reproduce.verdicts import MARGIN
from analysis.toy import gaussian_classes
from pages._charts import claims_figure, teaching_figure, toy_figure
from pages._state import ensure_app

ensure_app()

st.title(":material/school: Learn: what the variability ratio measures")
st.markdown("""
A pretrained language model turns a text into one vector per layer. If, at some layer, the texts of
each class already sit in **tight clusters far from each other**, a simple classifier on that layer
will do well — the layers above it add little for this task.

The **variability ratio** ν (Xie et al., 2022) puts a number on this: the spread *within* classes
divided by the spread *between* class means. **Low ν = well-separated classes.** Variscope computes ν
for every layer in one pass, recommends the layer ℓ* with the lowest ν for the classifier, and lets you
tune only a few layers at or below ℓ* while dropping the layers above it.
""")
f1, f2 = st.columns(2)
f1.latex(r"\Sigma_w=\frac1C\sum_y\frac1{|G_y|}\sum_{h\in G_y}(h-m_y)(h-m_y)^\top")
f2.latex(r"\Sigma_b=\frac1C\sum_y(m_y-m)(m_y-m)^\top")
st.latex(r"\nu=\frac1C\,\mathrm{tr}\!\left(\Sigma_w\Sigma_b^{+}\right)")
st.caption(
    "h: mean of a text's token states (no padding, no special tokens); m_y: class means; "
    "m: the mean of the class means; ⁺: pseudo-inverse."
)

st.subheader("Try it: two or three Gaussian classes")
c1, c2 = st.columns([1, 2])
with c1:
    k = st.radio("Classes", [2, 3], horizontal=True, key="toy_classes")
    spread = st.slider("Within-class spread", 0.1, 3.0, 1.0, 0.05, key="toy_spread")
    dist = st.slider("Distance between class means", 0.0, 8.0, 3.0, 0.1, key="toy_distance")
    sizes = [st.slider(f"Size of class {c}", 5, 400, 100, 5, key=f"toy_size_{c}") for c in range(k)]
    seed = st.number_input("Seed", 0, 10_000, 0, key="toy_seed")
toy = gaussian_classes(k, spread, dist, sizes, seed=int(seed))
with c2:
    st.metric("ν (variability ratio)", f"{toy['nu']:.4g}")
    fig = toy_figure(toy)
    st.plotly_chart(fig, width="stretch", key="toy_plot")
st.markdown(
    "Move the classes apart or shrink their spread and watch ν fall; unbalance the sizes and see "
    "that ν barely moves — every class counts equally, one of the paper's robustness claims."
)
st.markdown(
    ":material/description: Paper: [Hidden State Variability of Pretrained Language Models Can Guide Computation "
    "Reduction for Transfer Learning](https://arxiv.org/abs/2210.10041) (EMNLP Findings 2022)."
)

st.subheader("Sentence-embedding model or raw language model?")
curves = teaching_curves(Path(__file__).resolve().parent.parent / "docs" / "curves")
st.markdown("""
Where ℓ* falls depends on how the model was trained. **Sentence-embedding models** (`minilm`, `mpnet`) were
trained so that their *last* layer separates texts: their ν falls all the way to the top, and ℓ* is the top
layer. A **raw pretrained language model** (`gemma3-270m`, Gemma 3 270M base) was trained to predict the next
token: a *middle* layer already separates the classes best, and the layers above it specialise back towards
word prediction — that is where dropping layers pays off.
""")
if len(curves) == 2:
    st.plotly_chart(teaching_figure(curves), width="stretch", key="teaching_curves")
    st.caption(
        f"Both on {curves[0]['task']}, n = {curves[0]['n']}, max length {curves[0]['max_length']}: "
        + "; ".join(f"{c['model']} ℓ* = {c['recommended_layer']} of {len(c['layers']) - 1}" for c in curves)
        + ". From docs/curves/ (regenerate with `python -m analysis curve ... --json`, see README)."
    )
else:
    st.info("The side-by-side example lives in docs/curves/; see the README to regenerate it.")
st.markdown(
    "**Decoders, precisely.** Hugging Face returns hidden state 0 as the embedding output, the last one after the "
    "final norm and the ones between as the raw residual stream (States: raw). By default (States: auto) every "
    "layer of a decoder with a final norm is read through it, as a classifier on the model truncated at that "
    "layer sees it; the trained evidence of docs/selectors.md favours these states. Mean pooling drops padding "
    "on either side and the special tokens (BOS/EOS, from the tokenizer's special-tokens mask); `last` pooling "
    "takes the last real token whether padding is on the left or the right."
)

st.subheader("Do the paper's claims hold here?")
doc = Path(__file__).resolve().parent.parent / "docs" / "reproduction.json"
if doc.is_file():
    res = revive(json.loads(doc.read_text()))
    st.markdown(verdicts_markdown(res))
    panels = [
        ("variability − top-k (claim 1)", claim_rows(res, "claim1"), "mean", [0.0]),
        (f"variability − full (claim 2, margin −{MARGIN:g})", claim_rows(res, "claim2"), "gap", [0.0, -MARGIN]),
    ]
    if any(p[1] for p in panels):
        st.plotly_chart(claims_figure(panels), width="stretch", key="claims_chart")
    with st.expander("The whole report (docs/reproduction.md)"):
        st.markdown(report_markdown(res, "python -m analysis reproduce"))
    st.caption(
        "Claims 1 and 2 compare strategies by the paired difference across seeds (95 % interval; green: for the "
        "claim, red: against it, grey: neither); where ℓ* is the top layer claim 1 is void and claim 2 void for ν, "
        "and both are left out. "
        "Regenerate with `python -m analysis reproduce` (or `--quick`; `--model gemma3-270m` for the raw language "
        "model)."
    )
else:
    st.info("Run `python -m analysis reproduce --quick` to test the claims on the offline data.")
