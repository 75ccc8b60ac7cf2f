"""Training: tune only the chosen layers, watch it learn live, compare with the baselines."""

import pandas as pd
import streamlit as st

from analysis.errors import VariscopeError
from analysis.recommend import tuned_layers
from analysis.settings import train_settings
from analysis.stream.kept import total_texts
from analysis.training import RunMonitor, Selection, baseline_jobs, cost_preview, start_in_thread
from analysis.training.config import PAGE_TRAIN_DEFAULTS
from analysis.training.estimate import combine, duration, estimate_configs
from pages._charts import training_comparison_figure, training_history_figure, variability_before_after_figure
from pages._compute import model_loader, page_states
from pages._state import bound, ensure_app, session_alive_probe

ensure_app()

ss = st.session_state
ss.setdefault("runs", [])
st.title(":material/model_training: Partial fine-tuning")
st.caption(
    "Put the classifier on layer ℓ*, remove the layers above it, and train only a few layers at or "
    "below ℓ* — then compare with tuning the same number of top layers and with full fine-tuning."
)

cfg, res, curve, best = page_states(min_layer=1)
L = res.n_layers

c1, c2 = st.columns([2, 1])
with c1:
    ell = bound(
        st.slider,
        "Classifier layer ℓ* (shared with the other pages)",
        "layer",
        min_value=1,
        max_value=L,
        help=f"Recommended by the variability curve: {best}",
    )
    if ss.get("_tuned_for") != ell or "w_tuned" not in ss:
        ss["w_tuned"] = tuned_layers(ell, ss.get("train_k", PAGE_TRAIN_DEFAULTS["k"]))
        ss["_tuned_for"] = ell
    tuned = st.pills(
        "Layers to tune (layers above ℓ* are removed)",
        list(range(1, L + 1)),
        selection_mode="multi",
        key="w_tuned",
        format_func=lambda l: f"{l}" + (" :material/content_cut:" if l > ell else ""),
    )
    tuned = sorted(tuned or [])
with c2:
    adapter = st.radio("Tune", ["weights", "LoRA adapters"], horizontal=True, key="train_adapter")
    d = PAGE_TRAIN_DEFAULTS
    steps = st.number_input("Steps", 1, 100_000, d["steps"], 10, key="train_steps")
    lr = st.number_input("Learning rate", 1e-6, 1e-1, d["lr"], format="%.0e", key="train_lr")
    bs = st.number_input("Batch size", 1, 512, d["train_batch"], key="train_bs")
    eval_n = st.number_input("Held-out texts (test split)", 20, 20_000, d["eval_n"], 50, key="train_eval_n")

sel = None
if not tuned:
    st.warning("Pick at least one layer to tune.")
else:
    try:  # the same check as train --classifier-layer/--tune-layers
        sel = Selection(ell, tuple(tuned), adapter="lora" if adapter.startswith("LoRA") else None)
        sel.check(L)
    except VariscopeError as e:
        st.error(str(e))
        sel = None

if sel is not None:
    try:
        cst = cost_preview(cfg, sel, res.texts, len(res.label_names), loader=model_loader)
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Layers kept", f"{ell} of {L}")
        m2.metric(
            "Trainable parameters",
            f"{cst['trainable_params'] / 1e6:.2f} M",
            f"{cst['params_vs_full']:.0%} of full",
            delta_color="off",
            delta_arrow="off",
        )
        m3.metric(
            "Training FLOPs / example",
            f"{cst['flops_per_example'] / 1e9:.2f} G",
            f"{cst['flops_vs_full']:.0%} of full",
            delta_color="off",
            delta_arrow="off",
        )
        m4.metric("Train / held-out texts", f"{total_texts(res)} / {eval_n}")
    except VariscopeError as e:
        st.error(str(e))
        sel = None

remeasure = st.checkbox(
    "Re-measure ν on the held-out texts after training (before/after curves)", key="train_remeasure"
)
cmp1, cmp2 = st.columns(2)
with_top = cmp1.checkbox(f"Then compare with: the top {len(tuned) or 1} layer(s)", key="train_cmp_top")
with_full = cmp2.checkbox("Then compare with: full fine-tuning", key="train_cmp_full")
full_vocab = cmp2.checkbox(
    "… training the whole vocabulary (slower; by default only the rows of the task's tokens train)",
    key="train_full_vocab",
    disabled=not with_full,
)

try:  # the same checks as python -m analysis train, before a run can start
    ts = train_settings({"steps": steps, "lr": lr, "train_batch": bs, "eval_n": eval_n, "classifier_layer": ell})
except VariscopeError as e:
    st.error(str(e))
    ts = None

jobs = []
if sel is not None and ts is not None:
    base_tc = ts.config(cfg, sel, strategy="selected", remeasure=bool(remeasure), full_vocab=bool(full_vocab))
    jobs = baseline_jobs(base_tc, L, top=with_top, full=with_full)
    try:  # before Start, without starting anything: the cost model at this model's speed here
        with st.spinner(f"Measuring how fast {cfg.model} runs on this machine…"):
            ests = estimate_configs(jobs, res.texts, len(res.label_names), loader=model_loader)
        plan = combine(ests, ests[0].how)
        what = "this run" if len(ests) == 1 else f"these {len(ests)} runs"
        st.caption(
            f":material/timer: Time for {what}: {plan.text()}; training {duration(plan.parts['train'])}, "
            f"held-out evaluations {duration(plan.parts['eval'])}. The ETA updates while it runs."
        )
    except VariscopeError as e:
        st.error(str(e))

running = [r for r in ss["runs"] if r["monitor"].running]
b1, b2 = st.columns([1, 4])
start = b1.button("Start", type="primary", key="train_start", disabled=not jobs or bool(running))
if start and jobs and not running:
    alive = session_alive_probe()  # the run stops (and frees its model) once this browser session disconnects
    monitors = [RunMonitor(alive=alive) for _ in jobs]
    ss["runs"] += [{"label": j.label(), "monitor": m} for j, m in zip(jobs, monitors, strict=True)]
    start_in_thread(jobs, monitors, loader=model_loader)
    st.rerun()
if running:
    b2.info("A run is in progress for this session; it must finish or be stopped before another starts.")


def _status(current: dict, runs: list[dict]) -> dict:
    """Status line, progress bar and the Stop / Skip buttons of the current run; returns its snapshot."""
    m = current["monitor"]
    snap = m.snapshot()
    p = snap["progress"]
    label = current["label"].replace("*", r"\*")  # the * of ℓ* is not emphasis
    st.markdown(f"**{label}** — {snap['status']}")
    if snap["status"] == "failed":
        st.error(f"failed: {snap['error']}")
    frac = p["step"] / p["max_steps"] if p["max_steps"] else 0.0
    text = f"step {p['step']}/{p['max_steps'] or '?'} · {p['elapsed']:.0f}s"
    if snap["status"] == "stopping":
        text = f"stopping: evaluating the partial model, {p['eval_done']}/{p['eval_total']} · step {p['step']}"
    elif p.get("phase") in ("eval", "final_eval") and snap["status"] == "running":
        text += f" · evaluating {p['eval_done']}/{p['eval_total']}"
    elif p.get("eta") is not None and snap["status"] == "running":
        text += f" · ETA {p['eta']:.0f}s"
    st.progress(min(frac, 1.0), text=text)
    if snap["status"] == "stopped" and snap["stop_requested_at"] is not None:
        st.caption(f"stopped at step {p['step']} (Stop pressed at step {snap['stop_requested_at']})")
    if snap["status"] == "stopping":
        if st.button("Skip evaluation", key="train_skip", icon=":material/skip_next:"):
            m.request_skip()
    elif m.running and st.button("Stop", key="train_stop", icon=":material/stop:"):
        for r in runs:
            r["monitor"].request_stop()
    return snap


def _results_table(runs: list[dict]) -> None:
    rows = []
    for r in runs:
        s = r["monitor"].snapshot()
        res_ = s["result"] or {}
        value = (res_.get("eval") or {}).get(res_.get("metric"))
        rows.append(
            {
                "run": r["label"],
                "status": s["status"],
                "metric": f"{res_['metric']} {value:.4f}" if value is not None else "",
                "trainable params": res_.get("trainable_params"),
                "FLOPs vs full": res_.get("flops_vs_full"),
                "train time (s)": res_.get("train_seconds"),
                "steps/s": res_.get("steps_per_second"),
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        key="train_table",
        column_config={
            "trainable params": st.column_config.NumberColumn(format="compact"),
            "FLOPs vs full": st.column_config.NumberColumn(format="percent"),
            "train time (s)": st.column_config.NumberColumn(format="%.1f"),
            "steps/s": st.column_config.NumberColumn(format="%.2f"),
        },
    )


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
    snap = _status(current, runs)
    st.plotly_chart(training_history_figure(snap["events"]), width="stretch", key="train_live_chart")
    ba = (snap["result"] or {}).get("variability_before_after")
    if ba:
        st.plotly_chart(variability_before_after_figure(ba), width="stretch", key="train_nu_chart")
    _results_table(runs)
    done = [
        (r["label"], x)
        for r in runs
        if (x := r["monitor"].snapshot()["result"]) and x["eval"].get(x["metric"]) is not None
    ]
    if done:
        st.plotly_chart(training_comparison_figure(done), width="stretch", key="train_cmp_chart")


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
