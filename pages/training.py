"""Training: tune only the chosen layers, watch it learn live, compare with the baselines."""
from dataclasses import replace

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.errors import VariscopeError
from analysis.selection import top_layers, tuned_layers
from analysis.training import RunMonitor, Selection, TrainConfig, selection_cost, start_in_thread
from pages._common import bound, ensure_app, model_loader, page_states

ensure_app()

ss = st.session_state
ss.setdefault("runs", [])
st.title("🏋️ Partial fine-tuning")
st.caption("Put the classifier on layer ℓ*, remove the layers above it, and train only a few layers at or "
           "below ℓ* — then compare with tuning the same number of top layers and with full fine-tuning.")

cfg, res, curve, best = page_states(min_layer=1)
L = res.n_layers

c1, c2 = st.columns([2, 1])
with c1:
    ell = bound(st.slider, "Classifier layer ℓ* (shared with the other pages)", "layer", min_value=1, max_value=L,
                help=f"Recommended by the variability curve: {best}")
    k_default = ss.get("train_k", 2)
    default = tuned_layers(ell, k_default)
    if ss.get("_tuned_for") != ell or "w_tuned" not in ss:
        ss["w_tuned"] = default
        ss["_tuned_for"] = ell
    tuned = st.pills("Layers to tune (layers above ℓ* are removed)", list(range(1, L + 1)), selection_mode="multi",
                     key="w_tuned", format_func=lambda l: f"{l}" + (" ✂" if l > ell else ""))
    tuned = sorted(tuned or [])
with c2:
    adapter = st.radio("Tune", ["weights", "LoRA adapters"], horizontal=True, key="train_adapter")
    steps = st.number_input("Steps", 1, 100_000, 150, 10, key="train_steps")
    lr = st.number_input("Learning rate", 1e-6, 1e-1, 1e-4, format="%.0e", key="train_lr")
    bs = st.number_input("Batch size", 1, 512, 16, key="train_bs")
    eval_n = st.number_input("Held-out texts (test split)", 20, 20_000, 300, 50, key="train_eval_n")

bad = [l for l in tuned if l > ell]
if not tuned:
    st.warning("Pick at least one layer to tune.")
elif bad:
    st.error(f"Tuned layer {bad[0]} is above the classifier layer {ell}; layers above ℓ* are removed.")
sel = Selection(ell, tuple(tuned), adapter="lora" if adapter.startswith("LoRA") else None) if tuned and not bad else None

if sel is not None:
    try:
        from analysis.models import resolve_device, resolve_dtype, resolve_model

        dev = resolve_device(cfg.device)
        base, tok = model_loader(resolve_model(cfg.model), dev, "float32" if dev == "cpu" else resolve_dtype(cfg.dtype, dev),
                                 cfg.trust_remote_code)
        cst = selection_cost(base, tok, res.texts, sel, len(res.label_names), cfg.max_length)
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Layers kept", f"{ell} of {L}")
        m2.metric("Trainable parameters", f"{cst['trainable_params'] / 1e6:.2f} M",
                  f"{cst['params_vs_full']:.0%} of full", delta_color="off", delta_arrow="off")
        m3.metric("Training FLOPs / example", f"{cst['flops_per_example'] / 1e9:.2f} G",
                  f"{cst['flops_vs_full']:.0%} of full", delta_color="off", delta_arrow="off")
        m4.metric("Train / held-out texts", f"{len(res.labels)} / {eval_n}")
    except VariscopeError as e:
        st.error(str(e))
        sel = None

remeasure = st.checkbox("Re-measure ν on the held-out texts after training (before/after curves)",
                        key="train_remeasure")
cmp1, cmp2 = st.columns(2)
with_top = cmp1.checkbox(f"Then compare with: the top {len(tuned) or 1} layer(s)", key="train_cmp_top")
with_full = cmp2.checkbox("Then compare with: full fine-tuning", key="train_cmp_full")

running = [r for r in ss["runs"] if r["monitor"].running]
b1, b2 = st.columns([1, 4])
if b1.button("Start", type="primary", key="train_start", disabled=sel is None or bool(running)):
    k = len(tuned)
    base_tc = TrainConfig(cfg, sel, steps=int(steps), lr=float(lr), batch_size=int(bs), eval_n=int(eval_n),
                          seed=cfg.sampling.seed, strategy="selected", remeasure=bool(remeasure))
    jobs = [base_tc]
    if with_top:
        jobs.append(replace(base_tc, selection=Selection(L, tuple(top_layers(L, k)), adapter=sel.adapter),
                            strategy="top"))
    if with_full:
        jobs.append(replace(base_tc, selection=Selection(L, tuple(range(1, L + 1)), tune_embeddings=True),
                            strategy="full"))
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    sid = get_script_run_ctx().session_id
    rt = Runtime.instance()
    # the run stops (and frees its model) once this browser session disconnects
    monitors = [RunMonitor(alive=lambda: rt.is_active_session(sid)) for _ in jobs]
    for j, m in zip(jobs, monitors):
        ss["runs"].append({"label": j.label(), "monitor": m})
    start_in_thread(jobs, monitors, loader=model_loader)
    st.rerun()
if running:
    b2.info("A run is in progress for this session; it must finish or be stopped before another starts.")


def _history_chart(snap):
    ev = snap["events"]
    loss = [e for e in ev if "loss" in e]
    evals = [e for e in ev if "eval" in e and not e.get("final")]
    fig = go.Figure()
    fig.add_scatter(x=[e["step"] for e in loss], y=[e["loss"] for e in loss], name="train loss", mode="lines")
    for name in (evals[0]["eval"] if evals else {}):
        fig.add_scatter(x=[e["step"] for e in evals], y=[e["eval"][name] for e in evals], name=f"held-out {name}",
                        mode="lines+markers", yaxis="y2")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="step",
                      yaxis=dict(title="loss"), yaxis2=dict(title="metric", overlaying="y", side="right", range=[0, 1], tickmode="linear",
                                  tick0=0, dtick=0.2, showgrid=False),
                      legend=dict(orientation="h", y=-0.25))
    return fig


@st.fragment(run_every=1.0 if running else None)
def live():
    runs = ss.get("runs", [])
    if not runs:
        st.info("No run yet. Pick ℓ* and the layers to tune, then press Start.")
        return
    for r in runs:
        r["monitor"].heartbeat()
    current = next((r for r in runs if r["monitor"].running), runs[-1])
    if running and not any(r["monitor"].running for r in runs):
        st.rerun(scope="app")  # the queue is done: refresh the Start button and the exports
    snap = current["monitor"].snapshot()
    p = snap["progress"]
    st.markdown(f"**{current['label']}** — {snap['status']}")
    if snap["status"] == "failed":
        st.error(snap["error"])
    frac = p["step"] / p["max_steps"] if p["max_steps"] else 0.0
    eta = f" · ETA {p['eta']:.0f}s" if p.get("eta") is not None and snap["status"] == "running" else ""
    st.progress(min(frac, 1.0), text=f"step {p['step']}/{p['max_steps'] or '?'} · {p['elapsed']:.0f}s{eta}")
    if current["monitor"].running and st.button("Stop", key="train_stop"):
        for r in runs:
            r["monitor"].request_stop()
    st.plotly_chart(_history_chart(snap), width="stretch", key="train_live_chart")
    ba = (snap["result"] or {}).get("variability_before_after")
    if ba:
        fig = go.Figure()
        fig.add_scatter(x=ba["layers"], y=ba["before"], name="ν before training", mode="lines+markers")
        fig.add_scatter(x=ba["layers"], y=ba["after"], name="ν after training", mode="lines+markers")
        fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="layer", yaxis_title="ν")
        st.plotly_chart(fig, width="stretch", key="train_nu_chart")
    rows = []
    for r in runs:
        s = r["monitor"].snapshot()
        res_ = s["result"] or {}
        rows.append({"run": r["label"], "status": s["status"],
                     "metric": f"{res_.get('metric', '')} {res_['eval'][res_['metric']]:.4f}" if res_.get("eval") else "",
                     "trainable params": res_.get("trainable_params"), "FLOPs vs full": res_.get("flops_vs_full"),
                     "train time (s)": res_.get("train_seconds"), "steps/s": res_.get("steps_per_second")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="train_table", column_config={
        "trainable params": st.column_config.NumberColumn(format="compact"),
        "FLOPs vs full": st.column_config.NumberColumn(format="percent"),
        "train time (s)": st.column_config.NumberColumn(format="%.1f"),
        "steps/s": st.column_config.NumberColumn(format="%.2f")})
    done = [r for r in runs if r["monitor"].snapshot()["result"]]
    if done:
        fig = go.Figure()
        for r in done:
            x = r["monitor"].snapshot()["result"]
            fig.add_scatter(x=[x["trainable_params"]], y=[x["eval"][x["metric"]]], mode="markers+text", name=r["label"],
                            text=[f"{x['train_seconds']:.0f}s"], textposition="top center",
                            marker=dict(size=12 + min(30, x["train_seconds"] / 5)))
        fig.update_layout(height=300, xaxis_title="trainable parameters", yaxis_title="held-out metric",
                          xaxis_type="log", margin=dict(l=10, r=10, t=10, b=10), showlegend=True)
        st.plotly_chart(fig, width="stretch", key="train_cmp_chart")


live()

finished = [r for r in ss["runs"] if r["monitor"].artifacts]
if finished:
    st.subheader("Export")
    pick = st.selectbox("Run", [r["label"] for r in finished], key="train_export_pick")
    art = next(r for r in finished if r["label"] == pick)["monitor"].artifacts
    e1, e2, e3 = st.columns(3)
    e1.download_button("Results (JSON)", art["json"], "run.json", "application/json")
    e2.download_button("Trainable weights (safetensors)", art["weights"], "trainable.safetensors")
    e3.download_button("PEFT LoraConfig (Python)", art["lora"], "lora_config.py", "text/x-python")
