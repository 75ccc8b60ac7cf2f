"""The app's background worker: runs queued configs one after another, then makes their exports."""

from __future__ import annotations

import gc
import sys
import threading

from analysis.training.monitor import RunMonitor
from analysis.training.run import TrainConfig


def run_and_export(cfg: TrainConfig, monitor: RunMonitor, **train_kw) -> None:
    """Train ``cfg`` and put its in-memory exports on ``monitor``; errors end as status "failed".

    The run is marked "finished"/"stopped" only once its exports exist: a failed export
    is a failed run, with a one-line reason in ``monitor.error``.
    """
    from analysis.training import export
    from analysis.training.run import train

    if monitor.should_stop():
        monitor.set(status="stopped")
        return
    try:
        out = train(cfg, monitor, finalize=False, **train_kw)
        monitor.update_progress(phase="export")
        monitor.artifacts = export.artifacts(out.result, out.model)
        monitor.finish(out.result.to_dict(), out.result.stopped)
    except Exception as e:  # the page shows "failed: <reason>"
        monitor.fail(e)
    finally:
        gc.collect()


def start_in_thread(cfgs: list[TrainConfig], monitors: list[RunMonitor], **kw) -> threading.Thread:
    """Run configs one after another in a daemon thread (the app's background worker)."""
    if len(cfgs) != len(monitors):
        raise ValueError(f"one monitor per config: got {len(cfgs)} configs and {len(monitors)} monitors")

    def work():
        for c, m in zip(cfgs, monitors, strict=True):
            run_and_export(c, m, **kw)
            snap = m.snapshot()
            why = f": {snap['error']}" if snap["status"] == "failed" else ""
            print(
                f"variscope: run '{c.label()}' {snap['status']} after {snap['progress']['step']} steps{why}"
                + (" (browser session closed)" if m.abandoned() else ""),
                file=sys.stderr,
                flush=True,
            )

    t = threading.Thread(target=work, daemon=True, name="variscope-train")
    t.start()
    return t
