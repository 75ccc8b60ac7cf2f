"""Variability: ν per layer, the recommended layer, comparisons and robustness."""

from dataclasses import replace

import streamlit as st

from analysis.errors import VariscopeError
from analysis.pipeline import concrete
from analysis.recommend import RULES, recommend_layer
from analysis.records import (
    curve_label,
    fraction_size,
    kept_notice,
    no_majority_line,
    page_curve_record,
    share_line,
    spans_decade,
    top_layer_note,
)
from analysis.settings import MAX_BOOTSTRAP, curve_settings, parse_imbalance
from analysis.store.jsonio import dumps, stamp
from analysis.stream.kept import kept_fields, total_texts
from analysis.sweep.evidence import evidence_line, shipped_book
from analysis.sweep.report import summary_lines
from analysis.variability import curve_csv
from pages._charts import curve_figure
from pages._compute import curve_for, get_states_ui, page_states
from pages._state import bound, ensure_app

ensure_app()

ss = st.session_state
st.title(":material/show_chart: Variability per layer")
st.caption(
    "ν = within-class spread ÷ between-class spread of each layer's pooled states. "
    "Low ν: the classes are already well separated there."
)

cfg, res, base, _ = page_states()
N, K = total_texts(res), kept_fields(res).get("sample_size")  # K: only a seeded sample's states are held
if K is not None:
    st.info(kept_notice("curve", K, N), icon=":material/stream:")

c1, c2, c3, c4 = st.columns([1.2, 1, 1, 1])
rule = bound(
    c1.radio,
    "Recommendation rule",
    "rule",
    options=RULES,
    horizontal=True,
    help="argmin: the layer of lowest ν (the paper). plateau: the lowest layer within a tolerance "
    "of the minimum — fewer layers kept, less compute.",
)
tol = bound(
    c2.number_input,
    "Plateau tolerance (%)",
    "tolerance",
    min_value=0.0,
    max_value=500.0,
    step=5.0,
    disabled=rule != "plateau",
)
log = c3.toggle("Log scale", value=spans_decade(base["variability"]), key="log_scale")
boot = bound(c4.number_input, "Bootstrap resamples", "bootstrap", min_value=0, max_value=MAX_BOOTSTRAP, step=50)
try:  # the same checks as curve --bootstrap/--rule/--tolerance
    opts = curve_settings({"bootstrap": boot, "rule": rule, "tolerance": tol})
except VariscopeError as e:
    st.error(str(e))
    st.stop()
rule, tol, boot = opts.rule, opts.tolerance, opts.bootstrap

curve = curve_for(res.key, int(boot), "equal", cfg.sampling.seed, res, tol)
nu, layers = curve["variability"], curve["layers"]
best = recommend_layer(nu, rule=rule, tolerance=tol)
L = len(layers) - 1
if ss.get("_rule_seen") != (rule, tol):  # a new rule moves the selection to its recommendation
    if ss.get("_rule_seen") is not None:
        ss["layer"] = best
    ss["_rule_seen"] = (rule, tol)

cfg = concrete(cfg)  # "auto" resolved: the legend, the evidence line and the download name the states shown
label = curve_label(cfg.model, cfg.task.label(), N, cfg.pooling, cfg.representation)
fig = curve_figure(curve, best, rule, ss["layer"], ss["comparisons"], label, log)
event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points", key="curve_chart")
picked = [p for p in (event.selection.points if event and event.selection else []) if "x" in p]
if picked and int(picked[0]["x"]) != ss["layer"]:
    ss["layer"] = int(picked[0]["x"])
    ss.pop("w_layer", None)
    st.rerun()
if K is not None and boot:
    st.caption(kept_notice("band", K, N) if curve["band"] else "No band: a class has fewer than 2 sampled texts.")

s1, s2 = st.columns([3, 2])
with s1:
    bound(st.slider, "Selected layer (shared with the other pages)", "layer", min_value=0, max_value=L)
with s2:
    st.metric(f"Recommended classifier layer ℓ* ({rule})", best, help=f"ν = {nu[best]:.4g}")
    share = curve["argmin_share"] if rule == "argmin" else curve["plateau_share"]
    if (line := share_line(share)) is not None:
        st.caption(line + (f" (of the {K:,} kept texts)" if K is not None else ""))
    if (line := no_majority_line(share)) is not None:
        st.info(line, icon=":material/balance:")
    try:  # what the shipped sweeps (docs/selectors.json) say about this model family; silent without evidence
        from analysis.pipeline import concrete

        # "auto" named as what it is for this model (final-norm on a pre-norm decoder), as the records name it
        evidence = evidence_line(cfg.model, rule, representation=concrete(cfg).representation)
    except VariscopeError as e:
        evidence = None
        st.error(str(e))
    if evidence is not None:
        st.caption(evidence)
        with st.popover("docs/selectors.md", icon=":material/table:"):
            st.markdown("\n".join(summary_lines(shipped_book() or {"sweeps": []})))
    st.caption(
        f"Drop layers {best + 1}..{L}, tune a few layers at or below {best}."
        if best < L
        else "The top layer is best: keep the whole model for this task."
    )
note = top_layer_note(cfg.model, best, L)
if note:
    st.info(note, icon=":material/lightbulb:")

tab_cmp, tab_rob, tab_dl = st.tabs(["Compare", "Robustness", "Download"])
with tab_cmp:
    st.caption(
        "Overlay curves of other models, tasks, poolings or sample sizes: add the current one, "
        "change the setup, and add again."
    )
    if st.button("Add the current curve to the comparison", key="add_cmp") and all(
        c["label"] != label for c in ss["comparisons"]
    ):
        ss["comparisons"].append({"label": label, "layers": layers, "variability": nu})
        st.rerun()
    if ss["comparisons"]:
        drop = st.multiselect("Remove", [c["label"] for c in ss["comparisons"]], key="cmp_remove")
        if drop and st.button("Remove selected", key="cmp_remove_btn"):
            ss["comparisons"] = [c for c in ss["comparisons"] if c["label"] not in drop]
            st.rerun()
with tab_rob:
    st.caption(
        "The paper claims ν is robust to data scarcity and class imbalance. Recompute on a fraction "
        "of this sample or on an imbalanced subset and overlay the result."
    )

    def overlay(sub, name):
        r = get_states_ui(sub, label=name)
        if r is not None:
            c = curve_for(r.key, 0, "equal", cfg.sampling.seed, r)
            ss["comparisons"].append(
                {"label": f"{name} (n={total_texts(r)})", "layers": c["layers"], "variability": c["variability"]}
            )
            st.rerun()

    r1, r2 = st.columns(2)
    frac = r1.select_slider("Fraction of the data", [0.05, 0.1, 0.25, 0.5], value=0.25, key="rob_frac")
    if r1.button("Overlay this fraction", key="rob_frac_btn"):
        n_sub = fraction_size(N, len(res.label_names), frac)
        overlay(replace(cfg, sampling=replace(cfg.sampling, n=n_sub)), f"{int(frac * 100)} % of the data")
    ratio = r2.select_slider("Imbalance (first class : others)", ["1:1", "1:3", "1:9"], value="1:3", key="rob_imb")
    if r2.button("Overlay this imbalance", key="rob_imb_btn"):
        imb = parse_imbalance(ratio)
        overlay(replace(cfg, sampling=replace(cfg.sampling, imbalance=imb)), f"imbalance {ratio}")
with tab_dl:
    payload = page_curve_record(
        cfg, curve, N, best, rule, tolerance=tol, weighting="equal", cache_key=res.key, info=res.info, n_kept=K
    )
    d1, d2, d3 = st.columns(3)
    d1.download_button("Curve as CSV", curve_csv(curve), "variability.csv", "text/csv")
    d2.download_button(
        "Curve as JSON",
        dumps(stamp(payload, device=payload.get("device"), dtype=payload.get("dtype")), indent=2),
        "variability.json",
        "application/json",
    )
    d3.download_button("Figure as HTML", fig.to_html(include_plotlyjs="cdn"), "variability.html", "text/html")
    st.caption("PNG: use the camera icon in the chart's toolbar.")
how = f"Streamed {N:,} texts, states of {K:,} kept" if K is not None else None
how = how or ("Loaded from the disk cache" if res.cache_hit else "Computed")
st.caption(f"{how} · cache key {res.key[:12]} · device {res.info.get('device', '?')}")
