"""Layers: one card per layer — ν beside a linear probe, a nearest-neighbour score and the cost of stopping there.

"Train every layer" (pages/_sweep.py) adds the trained truth: the metric of a classifier trained at each layer.
"""

import streamlit as st

from analysis.cards.scores import agreement_words
from analysis.records import kept_notice
from analysis.store.jsonio import dumps, stamp
from analysis.stream.kept import kept_fields, total_texts
from pages._charts import layer_cards_figure
from pages._compute import curve_for, model_loader, page_states
from pages._state import ensure_app
from pages._sweep import picks_table, sweep_controls, sweep_record, sweep_settings

ensure_app()

ss = st.session_state
st.title(":material/view_module: Layer cards")
st.caption(
    "For every layer: ν, the held-out accuracy of a linear probe (logistic regression on standardised states, "
    "stratified folds), a leave-one-out kNN accuracy (cosine) and the cost of putting the classifier there. "
    "All from the cached pooled states: no new forward pass. Select a card to use its layer on the other pages."
)

cfg, res, _, best = page_states()
if (K := kept_fields(res).get("sample_size")) is not None:
    st.info(kept_notice("cards", K, total_texts(res)), icon=":material/stream:")


@st.cache_data(show_spinner=False, max_entries=32)
def cards_for(key: str, folds: int, k: int, _cfg, _res) -> dict:
    """The cards of the states under ``key`` (in-process cache; the disk cache sits below it)."""
    from analysis.cards.scores import CardsConfig
    from analysis.pipeline import concrete
    from analysis.records import cards_record
    from analysis.stream.kept import cards_of

    bar = st.progress(0.0, text="Computing the layer cards…")  # created here: replayed, then emptied, on a hit

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Probes and kNN: {done}/{total} layers")

    cards = cards_of(_cfg, CardsConfig(folds=folds, k=k), _res, progress=progress, loader=model_loader)
    bar.empty()
    return cards_record(concrete(_cfg), cards, total_texts(_res), n_kept=kept_fields(_res).get("sample_size"))


c1, c2, _ = st.columns([1, 1, 3])
folds = c1.selectbox("Probe folds", [3, 5, 10], index=1, key="cards_folds")
k = c2.selectbox("kNN neighbours k", [5, 10, 20], index=1, key="cards_k")
try:
    cards = cards_for(res.key, int(folds), int(k), cfg, res)
except Exception as e:  # VariscopeError (e.g. a class smaller than the folds) or an unexpected failure
    st.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
    st.stop()

L = len(cards["layers"]) - 1
# ℓ* shares of the session's bootstrap resamples (the Variability page's curve; cached across pages)
share = curve_for(res.key, int(ss.get("bootstrap") or 0), "equal", cfg.sampling.seed, res)["argmin_share"]
selected = ss.get("layer")
rho = cards["rank_agreement"]
(st.success if rho is not None and rho >= 0.5 else st.warning)(agreement_words(rho))
sc = sweep_settings(L)
record = sweep_record(cfg, sc)
sweep_controls(cfg, sc, record)
st.plotly_chart(layer_cards_figure(cards, best, selected, record), width="stretch", key="cards_chart")
if record is not None:
    picks_table(record)

PER_ROW = 4
for start in range(0, L + 1, PER_ROW):
    cols = st.columns(PER_ROW)
    for col, l in zip(cols, range(start, min(L + 1, start + PER_ROW)), strict=False):
        with col, st.container(border=True):
            tags = ([":orange-badge[ℓ* recommended]"] if l == best else []) + (
                [":blue-badge[selected]"] if l == selected else []
            )
            tags += [":green-badge[best probe]"] if l == cards["probe_best_layer"] else []
            st.markdown(f"**Layer {l}**" + (" · embeddings" if l == 0 else "") + "  \n" + (" ".join(tags) or "&nbsp;"))
            st.markdown(
                f"ν **{cards['variability'][l]:.3g}**"
                + (f" · ℓ* in **{share[l]:.0%}** of resamples" if share and l > 0 else "")
                + "  \n"
                f"probe **{cards['probe_accuracy'][l]:.1%}** · F1 {cards['probe_macro_f1'][l]:.2f}  \n"
                f"kNN **{cards['knn_accuracy'][l]:.1%}**  \n"
                f"cost **{cards['params_kept'][l] / 1e6:.1f}M** params · "
                f"{cards['flops_per_example'][l] / 1e9:.3g} GFLOPs",
                help=f"cost: parameters kept (embeddings, blocks 1..{l} and a head) and training FLOPs per example "
                f"when tuning block {l} and the head (the Training page's cost model)",
            )
            if st.button(
                "Selected" if l == selected else f"Select layer {l}",
                key=f"card_select_{l}",
                type="primary" if l == selected else "secondary",
                width="stretch",
            ):
                ss["layer"] = l
                ss.pop("w_layer", None)
                st.rerun()

with st.expander("Every selector's score per layer", expanded=False):
    from analysis.selectors import SELECTORS, per_layer_table

    rows, picks = per_layer_table(cards)
    st.caption(
        "Each column is one layer selector's score (↓: it picks the lowest, ↑: the highest); each picks: "
        + ", ".join(f"`{n}` **{l}**" for n, l in picks.items() if l is not None)
        + ". What each scores, and its source: "
        + "; ".join(f"`{n}`: {SELECTORS[n]}" for n in picks)
        + ". How they fare against trained layers: docs/selectors.md."
    )
    st.dataframe(rows, hide_index=True, width="stretch", key="selector_table")

st.download_button(
    "Download the cards (JSON)",
    dumps(stamp(cards, device=cards.get("device"), dtype=cards.get("dtype")), indent=2),
    file_name=f"cards-{cfg.model}-{cfg.task.label()}.json".replace("/", "_"),
    mime="application/json",
    key="cards_json",
)
