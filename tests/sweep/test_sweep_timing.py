"""The sweep's estimate comes before its first run; the time left counts trained steps only (cached runs excluded)."""

import pytest

import analysis.sweep.run as sweep_run
from analysis.data.sampling import SampleConfig
from analysis.pipeline import AnalysisConfig
from analysis.store.cache import DiskCache
from analysis.sweep.config import SweepConfig
from analysis.sweep.run import RUN_VERSION, pending_runs, run_config, run_key, run_sweep
from analysis.sweep.timing import time_left
from analysis.training.estimate import Estimate

RESULT = {"metric": "accuracy", "value": 0.5, "loss": 0.7, "n_eval": 12, "steps_per_second": None}


def test_time_left_is_the_trained_rate_times_the_steps_left():
    assert time_left(30, trained_steps=10, trained_seconds=20.0) == pytest.approx(60.0)
    assert time_left(30, trained_steps=0, trained_seconds=0.0) is None  # only cached runs so far: unknown
    assert time_left(30, trained_steps=0, trained_seconds=0.0, fallback_per_step=1.5) == pytest.approx(45.0)
    assert time_left(0, trained_steps=0, trained_seconds=0.0) == 0.0


def _sweep(tmp_path, monkeypatch, estimate, layers=(1, 2, 3), cached=(1,)):
    """A sweep of ``layers`` whose ``cached`` layers are in the cache; each trained run takes 10 s of an injected
    clock (no real training)."""
    cfg = AnalysisConfig(sampling=SampleConfig(n=20))
    sc = SweepConfig(layers=layers, seeds=(0,), steps=10, lr_grid=(1e-3,))
    cache, now, events = DiskCache(tmp_path), [0.0], []
    for layer in cached:
        key = run_key(run_config(cfg, sc, layer, 0, 1e-3, False))
        cache.save("runs", key, {}, blobs={"run": RESULT}, version=RUN_VERSION)

    def fake_run(tc, cache, use_cache=True, **kw):
        events.append(f"train layer {tc.selection.classifier_layer}")
        now[0] += 10.0
        return RESULT

    monkeypatch.setattr(sweep_run, "one_run", fake_run)

    def estimator(search, finals):
        events.append(f"estimate {len(search)} search, layers {[tc.selection.classifier_layer for tc in finals]}")
        return estimate

    run_sweep(
        cfg,
        sc,
        cache=cache,
        say=lambda line: events.append(line),
        selector_table=lambda: {"raw": ({"top": None}, [1.0 - 0.1 * i for i in range(max(layers) + 1)])},
        estimate=estimator,
        clock=lambda: now[0],
    )
    return events


def test_the_estimate_is_said_before_the_first_run_and_counts_only_the_runs_to_train(tmp_path, monkeypatch):
    est = Estimate(seconds=40.0, per_step=2.0, steps=20, parts={"train": 40.0}, method="cost model", how="test rate")
    events = _sweep(tmp_path, monkeypatch, est)
    first_run = min(i for i, e in enumerate(events) if e.startswith(("train layer", "  10/30")))
    assert events[1] == "estimate 0 search, layers [2, 3]"  # layer 1 is in the cache
    line = "estimate for the 2 runs to train, the other 1 in the cache: about 40 s on this machine (test rate)"
    said = events.index(line)
    assert said < first_run


def test_after_a_cached_run_the_time_left_is_not_zero_and_then_follows_the_trained_rate(tmp_path, monkeypatch):
    est = Estimate(seconds=40.0, per_step=2.0, steps=20, parts={"train": 40.0}, method="cost model", how="test rate")
    events = _sweep(tmp_path, monkeypatch, est)
    progress = [e for e in events if e.startswith("  ")]
    # layer 1 from the cache: 20 steps left at the estimate's 2 s a step
    assert progress[0] == "  10/30 steps (10 from the cache), 0 s so far, about 40 s left"
    # layer 2 trained: 10 steps in 10 s, so the 10 left take about 10 s (the cached steps do not speed it up)
    assert progress[1] == "  20/30 steps (10 from the cache), 10 s so far, about 10 s left"
    assert progress[2] == "  30/30 steps (10 from the cache), 20 s so far, done"
    unknown = _sweep(tmp_path / "none", monkeypatch, None)  # no estimate: unknown rather than 0
    line = "  10/30 steps (10 from the cache), 0 s so far, time left not known yet"
    assert [e for e in unknown if e.startswith("  10/30")] == [line]


def test_pending_runs_look_up_a_layers_final_runs_once_its_learning_rate_search_is_cached(tmp_path):
    cfg = AnalysisConfig(sampling=SampleConfig(n=20))
    sc = SweepConfig(layers=(1, 2), seeds=(0, 1), steps=10, lr_grid=(1e-3, 3e-3), lr_steps=5)
    cache = DiskCache(tmp_path)

    def put(tc, value):
        cache.save("runs", run_key(tc), {}, blobs={"run": {**RESULT, "value": value}}, version=RUN_VERSION)

    put(run_config(cfg, sc, 1, 0, 1e-3, True), 0.4)  # layer 1's search: 3e-3 wins
    put(run_config(cfg, sc, 1, 0, 3e-3, True), 0.6)
    put(run_config(cfg, sc, 1, 1, 3e-3, False), 0.6)  # and its seed-1 final run at that rate is done
    put(run_config(cfg, sc, 2, 0, 1e-3, True), 0.5)  # layer 2: half its search; its final rate is not known
    search, finals = pending_runs(cfg, sc, cache)
    assert [(tc.selection.classifier_layer, tc.lr) for tc in search] == [(2, 3e-3)]
    assert [(tc.selection.classifier_layer, tc.seed, tc.lr) for tc in finals] == [
        (1, 0, 3e-3),
        (2, 0, 1e-3),
        (2, 1, 1e-3),
    ]
    assert len(search) + len(finals) < sc.runs and pending_runs(cfg, sc, cache, use_cache=False)[1][0].lr == 1e-3


def test_cached_runs_still_to_be_read_add_no_time_left(tmp_path, monkeypatch):
    est = Estimate(seconds=20.0, per_step=2.0, steps=10, parts={"train": 20.0}, method="cost model", how="test rate")
    events = _sweep(tmp_path, monkeypatch, est, layers=(1, 2, 3, 4), cached=(1, 2, 3))
    progress = [e for e in events if e.startswith("  ")]
    # three cached layers first: only layer 4's 10 steps are left to train, at the estimate's 2 s a step
    assert progress[0] == "  10/40 steps (10 from the cache), 0 s so far, about 20 s left"
    assert progress[2] == "  30/40 steps (30 from the cache), 0 s so far, about 20 s left"
    late = _sweep(tmp_path / "late", monkeypatch, est, layers=(1, 2, 3), cached=(2, 3))
    # layer 1 trained in 10 s; the two cached layers after it take no time: nothing left to train
    assert [e for e in late if e.startswith("  10/30")] == ["  10/30 steps, 10 s so far, about 0 s left"]
