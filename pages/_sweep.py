"""The Layers page's "Train every layer": the sweep's settings, its background run with Stop, and its record.

A thin view over :mod:`analysis.sweep`: the settings are a :class:`SweepConfig` (checked by its own
``check``), the work is :func:`analysis.sweep.worker.start_sweep_in_thread`, and a finished sweep is
found again in the disk cache by :func:`analysis.sweep.run.cached_record`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.errors import VariscopeError
from analysis.selectors import SELECTORS
from analysis.sweep.config import LR_GRID, LR_STEPS, SweepConfig
from analysis.sweep.run import cached_record, record_key
from analysis.training import RunMonitor
from analysis.training.estimate import duration
from pages._compute import model_loader
from pages._state import session_alive_probe

DEFAULT = SweepConfig(layers=(1,))
GRID = "grid"


def sweep_settings(n_layers: int) -> SweepConfig | None:
    """The sweep's settings from the expander's widgets (every layer 1..L); None after a one-line error."""
    with st.expander("Train every layer: the trained truth for ν and every other selector", expanded=False):
        c1, c2, c3, c4 = st.columns(4)
        seeds = c1.number_input("Seeds", 1, 10, len(DEFAULT.seeds), key="sweep_seeds")
        steps = c2.number_input("Steps per run", 1, 100_000, DEFAULT.steps, 10, key="sweep_steps")
        eval_n = c3.number_input("Held-out texts", 2, 20_000, DEFAULT.eval_n, 50, key="sweep_eval_n")
        lr = c4.selectbox(
            "Learning rate",
            [GRID, *LR_GRID],
            format_func=lambda x: (
                f"per layer from {', '.join(f'{v:g}' for v in LR_GRID)}" if x == GRID else f"fixed {x:g}"
            ),
            key="sweep_lr",
            help=f"the grid: {LR_STEPS} steps each on a validation split of the training texts (seed 0)",
        )
        sc = SweepConfig(
            layers=tuple(range(1, n_layers + 1)),
            seeds=tuple(range(int(seeds))),
            steps=int(steps),
            eval_n=int(eval_n),
            lr_grid=LR_GRID if lr == GRID else (float(lr),),
        )
        try:  # the same check as python -m analysis sweep
            sc.check(n_layers)
        except VariscopeError as e:
            st.error(str(e))
            return None
        st.caption(
            f"Trains the classifier on every layer 1..{n_layers} (the layers above removed, that layer tuned), "
            f"for {len(sc.seeds)} seed(s): **{sc.runs} training runs, {sc.total_steps:,} steps** in all. "
            "Each finished run is cached, so a stopped sweep resumes where it stopped."
        )
    return sc


def sweep_record(cfg, sc: SweepConfig | None) -> dict | None:
    """The finished record of these settings: this session's sweep, else the disk cache (None: none yet)."""
    if sc is None:
        return None
    key = record_key(cfg, sc)
    job = st.session_state.get("sweep_job")
    if job and job["key"] == key and (snap := job["monitor"].snapshot())["status"] == "finished":
        return snap["result"]
    return cached_record(cfg, sc)


def sweep_controls(cfg, sc: SweepConfig | None, record: dict | None) -> None:
    """Train every layer / Stop, and the live progress of this session's sweep."""
    ss = st.session_state
    job = ss.get("sweep_job")
    running = bool(job and job["monitor"].running)
    if record is not None and not running:
        return
    if ss.get("upload"):
        st.caption("Train every layer needs a named task or a file on the server: `python -m analysis sweep --data`.")
        return
    if sc is not None and not running:
        _estimate_caption(cfg, sc)
    if st.button("Train every layer", key="sweep_start", disabled=sc is None or running, icon=":material/layers:"):
        from analysis.sweep.worker import start_sweep_in_thread

        monitor = RunMonitor(alive=session_alive_probe())  # the sweep stops once this browser session is gone
        ss["sweep_job"] = {"key": record_key(cfg, sc), "monitor": monitor}
        ss.get("sweep_estimates", {}).pop(record_key(cfg, sc), None)  # after a Stop, fewer runs are left to train
        start_sweep_in_thread(cfg, sc, monitor, loader=model_loader)
        st.rerun()
    if job:
        _live(running)


def _estimate_caption(cfg, sc: SweepConfig) -> None:
    """The sweep's estimated time before Start (the CLI's first line), measured once per settings and session."""
    from analysis.sweep.run import estimate_pending

    key = record_key(cfg, sc)
    memo = st.session_state.setdefault("sweep_estimates", {})
    if key not in memo:
        try:
            with st.spinner(f"Measuring how fast {cfg.model} trains on this machine…"):
                memo[key] = estimate_pending(cfg, sc, loader=model_loader)
        except VariscopeError as e:
            st.error(str(e))
            return
    est, _, todo = memo[key]
    if not todo:
        text = "every run is in the cache: only the selectors are scored"
    else:
        cached = f" ({sc.runs - todo} already in the cache)" if todo < sc.runs else ""
        how = "not known" if est is None else f"{est.text()}; training {duration(est.parts.get('train', 0.0))}"
        text = f"{todo} run{'s' if todo != 1 else ''} to train{cached}: {how}"
    st.caption(f":material/timer: Time for this sweep: {text}. The time left updates while it runs.")


def _live(running: bool) -> None:
    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        m = st.session_state["sweep_job"]["monitor"]
        m.heartbeat()
        snap = m.snapshot()
        if running and not m.running:
            st.rerun(scope="app")  # done: the chart and the picks appear
        p = snap["progress"]
        text = f"sweep — {snap['status']}: step {p['step']:,}/{p['max_steps']:,} · {duration(p['elapsed'])}"
        if p.get("eta") is not None and m.running:
            text += f" · about {duration(p['eta'])} left"
        elif p.get("estimate") is not None and m.running:
            text += f" · estimated {duration(p['estimate'])} in all"
        st.progress(min(p["step"] / p["max_steps"], 1.0) if p["max_steps"] else 0.0, text=text)
        lines = [e["line"] for e in snap["events"] if e.get("line")]
        if lines:  # the newest said line (an estimate event carries numbers, not a line)
            st.caption(lines[-1])
        if snap["status"] == "failed":
            st.error(f"failed: {snap['error']}")
        elif snap["status"] == "stopped":
            st.caption("Stopped. The finished runs are cached: Train every layer resumes from them.")
        if m.running and st.button("Stop", key="sweep_stop", icon=":material/stop:"):
            m.request_stop()

    live()


def picks_table(record: dict) -> None:
    """The oracle, its tied set and each selector's pick and regret, from the record."""
    i = record["layers"].index(record["oracle_layer"])
    st.markdown(
        f"**Trained truth**: the oracle layer is **{record['oracle_layer']}** ({record['metric']} "
        f"{record['mean'][i]:.4f}, mean of {len(record['seeds'])} seed(s)); tied with it: "
        f"{', '.join(map(str, record['tied_layers']))} ({record['tied_rule']})."
    )
    rows = [
        {
            "selector": name,
            "picks layer": s["layer"],
            f"trained {record['metric']} there": s["metric"],
            "regret": s["regret"],
            "in tied set": s["in_tied"],
            "Spearman with trained": s["spearman"],
            "what it scores": SELECTORS.get(name, ""),
        }
        for name, s in record["selectors"].items()
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        key="sweep_picks",
        column_config={
            f"trained {record['metric']} there": st.column_config.NumberColumn(format="%.4f"),
            "regret": st.column_config.NumberColumn(format="%.4f"),
            "Spearman with trained": st.column_config.NumberColumn(format="%.2f"),
        },
    )
