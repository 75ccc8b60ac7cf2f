"""The app's background sweep: :func:`analysis.sweep.run.run_sweep` in a thread, watched through a RunMonitor.

The same monitor and Stop as the Training page's worker (:mod:`analysis.training.worker`):
``progress`` counts the sweep's training steps, Stop ends the run in flight within one step
(finished runs stay cached, so pressing "Train every layer" again resumes), and the finished
record is the monitor's ``result``.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable

from analysis.pipeline import AnalysisConfig
from analysis.store.cache import DiskCache
from analysis.sweep.config import SweepConfig
from analysis.training.monitor import RunMonitor


def run_sweep_job(
    cfg: AnalysisConfig, sc: SweepConfig, monitor: RunMonitor, *, cache: DiskCache | None = None, loader=None
) -> None:
    """Run the sweep; status "finished" with the record as ``monitor.result``, "stopped", or "failed"."""
    from analysis.sweep.run import SweepStopped, run_sweep
    from analysis.sweep.selectors import selector_inputs_by_representation

    cache = cache or DiskCache()
    monitor.set(status="running")
    monitor.update_progress(step=0, max_steps=sc.total_steps, phase="train")

    def progress(done: int, total: int, elapsed: float, eta: float | None) -> None:
        monitor.update_progress(step=done, max_steps=total, elapsed=elapsed, eta=eta)

    try:
        record = run_sweep(
            cfg,
            sc,
            cache=cache,
            say=lambda line: monitor.push({"line": line}),
            selector_table=lambda: selector_inputs_by_representation(cfg, cache, loader=loader),
            progress=progress,
            on_estimate=lambda est: announce(monitor, est),
            should_stop=monitor.should_stop,
            loader=loader,
        )
        monitor.finish(record, stopped=False)
    except SweepStopped:
        monitor.set(status="stopped")
    except Exception as e:  # the page shows "failed: <reason>"
        monitor.fail(e)
    finally:
        gc.collect()


def announce(monitor: RunMonitor, est) -> None:
    """The sweep's estimate before its first run, as ``train`` gives a run's: the monitor's event and progress."""
    monitor.push({"estimate": est.to_dict()})
    monitor.update_progress(estimate=est.seconds)


def start_sweep_in_thread(cfg: AnalysisConfig, sc: SweepConfig, monitor: RunMonitor, **kw) -> threading.Thread:
    """Run the sweep in a daemon thread (the app's background worker); keywords go to :func:`run_sweep_job`."""

    def work(report: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> None:
        run_sweep_job(cfg, sc, monitor, **kw)
        snap = monitor.snapshot()
        why = f": {snap['error']}" if snap["status"] == "failed" else ""
        report(f"variscope: sweep of {cfg.model} {snap['status']} after {snap['progress']['step']} steps{why}")

    t = threading.Thread(target=work, daemon=True, name="variscope-sweep")
    t.start()
    return t
