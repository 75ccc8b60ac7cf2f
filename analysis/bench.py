"""``python -m analysis bench``: speed measured as ratios, side by side in one run.

Every comparison runs both contenders on the same texts in the same process,
alternating, and reports medians of several repetitions; ratios, not single
times, are the result (this machine is noisy).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager

import numpy as np

SECTIONS = {}


def section(name):
    def deco(f):
        SECTIONS[name] = f
        return f
    return deco


def add_args(p) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes, about two minutes on 2 cores")
    p.add_argument("--model", default="minilm")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--only", default=None, help="comma-separated sections: " + ", ".join(
        ["curve", "batching", "metric", "cache", "projection", "training", "memory"]))
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--plots", default=None, help="folder for PNG plots")


def _median_time(f, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _texts(n: int, seed: int = 0):
    from .tasks import SampleConfig, TaskConfig, load_task, sample

    t = sample(load_task(TaskConfig("rotten_tomatoes")), SampleConfig(n=n, seed=seed))
    return t.texts, t.labels


def _model(name, device, dtype):
    from .models import resolve_device, resolve_dtype, resolve_model
    from .pipeline import cached_model

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    m, tok = cached_model(resolve_model(name), dev, dt)
    return m, tok, dev


@contextmanager
def _swap_layers(model, keep):
    """Temporarily keep only the first ``keep`` blocks (the paper's truncated model)."""
    import torch.nn as nn

    from .models import layer_list

    name, layers = layer_list(model)
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    attr = name.rsplit(".", 1)[-1]
    setattr(parent, attr, nn.ModuleList(list(layers)[:keep]))
    try:
        yield model
    finally:
        setattr(parent, attr, layers)


def paper_algorithm(model, tok, texts, labels, *, device, max_length=128):
    """The reference code's way: one truncated model per layer, batch 8, in input
    order, pooled states concatenated, ν by the d×d pseudo-inverse formula."""
    from .hidden_states import extract_states
    from .models import layer_list
    from .variability import variability_pinv

    L = len(layer_list(model)[1])
    nus = []
    for l in range(1, L + 1):
        with _swap_layers(model, l):
            st = extract_states(model, tok, texts, None, max_length=max_length, batch_size=8,
                                device=device, sort=False)
        nus.append(variability_pinv(st[-1], labels))
    return nus


def our_curve(model, tok, texts, labels, *, device, max_length=128, batch_size=32):
    from .hidden_states import extract_states
    from .variability import variability_curve

    st = extract_states(model, tok, texts, None, max_length=max_length, batch_size=batch_size, device=device)
    return variability_curve(st, labels).variability


def floor(model, tok, texts, *, device, max_length=128, batch_size=32, sort=True):
    """A bare forward pass over the same batches: the least any curve can cost."""
    from .hidden_states import forward_batches, make_batches

    batches = make_batches(tok, texts, None, max_length=max_length, batch_size=batch_size, sort=sort)
    forward_batches(model, batches, device=device, hidden_states=False)


@section("curve")
def bench_curve(a, res):
    n = 128 if a.quick else 512
    reps = a.reps or (3 if a.quick else 5)
    texts, labels = _texts(n)
    for name in ([a.model] if a.quick else [a.model, "mpnet"]):
        try:
            m, tok, dev = _model(name, a.device, a.dtype)
        except Exception as e:  # mpnet may be absent
            res.setdefault("skipped", []).append(f"curve/{name}: {e}")
            continue
        floor(m, tok, texts[:32], device=dev)  # warm up
        t_floor, t_curve = [], []
        for _ in range(reps):  # alternate so drift hits both
            t_floor.append(_median_time(lambda: floor(m, tok, texts, device=dev), 1))
            t_curve.append(_median_time(lambda: our_curve(m, tok, texts, labels, device=dev), 1))
        t_paper = _median_time(lambda: paper_algorithm(m, tok, texts, labels, device=dev), 1 if a.quick else 2)
        ours, paper = our_curve(m, tok, texts, labels, device=dev), paper_algorithm(m, tok, texts, labels, device=dev)
        agree = float(np.max(np.abs(np.array(ours[1:]) - paper) / np.abs(paper)))
        L = len(ours) - 1
        r = {"layers": L, "n": n, "floor_s": statistics.median(t_floor), "curve_s": statistics.median(t_curve),
             "paper_s": t_paper, "curve_vs_floor": statistics.median(t_curve) / statistics.median(t_floor),
             "paper_algorithm_vs_curve": t_paper / statistics.median(t_curve), "max_rel_diff_vs_paper": agree}
        res.setdefault("curve", {})[name] = r
        if name == a.model:
            res["curve_vs_floor"] = r["curve_vs_floor"]
            res["paper_algorithm_vs_curve"] = r["paper_algorithm_vs_curve"]
        _row(f"curve {name} ({L} layers, n={n})",
             f"floor {r['floor_s']:.2f}s  ours {r['curve_s']:.2f}s  paper {t_paper:.2f}s  "
             f"ours/floor {r['curve_vs_floor']:.2f}x (goal <=1.1)  paper/ours {r['paper_algorithm_vs_curve']:.1f}x "
             f"(goal >={3 if L <= 6 else 6})  max rel diff {agree:.1e}")


@section("batching")
def bench_batching(a, res):
    n = 128 if a.quick else 512
    texts, _ = _texts(n, seed=1)
    m, tok, dev = _model(a.model, a.device, a.dtype)
    ts, tu = [], []
    for _ in range(a.reps or 3):
        ts.append(_median_time(lambda: floor(m, tok, texts, device=dev, sort=True), 1))
        tu.append(_median_time(lambda: floor(m, tok, texts, device=dev, sort=False), 1))
    r = {"sorted_texts_per_s": n / statistics.median(ts), "unsorted_texts_per_s": n / statistics.median(tu)}
    r["speedup"] = r["sorted_texts_per_s"] / r["unsorted_texts_per_s"]
    res["batching"] = r
    _row("batching", f"sorted {r['sorted_texts_per_s']:.0f} texts/s, unsorted {r['unsorted_texts_per_s']:.0f} texts/s, "
                     f"speed-up {r['speedup']:.2f}x")


@section("metric")
def bench_metric(a, res):
    from .variability import variability, variability_pinv

    rng = np.random.default_rng(0)
    N = 2000
    out = []
    for d in (384, 768, 1024):
        for C in (2, 5, 20):
            y = rng.integers(0, C, N)
            h = (rng.normal(size=(N, d)) + rng.normal(size=(C, d))[y]).astype(np.float32)
            variability(h, y)
            ours = _median_time(lambda: variability(h, y), a.reps or (5 if a.quick else 15))
            pinv = _median_time(lambda: variability_pinv(h, y), 1 if a.quick else 3)
            diff = abs(variability(h, y) - variability_pinv(h, y)) / variability_pinv(h, y)
            out.append({"d": d, "C": C, "ours_ms": ours * 1e3, "pinv_ms": pinv * 1e3, "rel_diff": diff})
            _row(f"metric d={d} C={C}", f"ours {ours * 1e3:.2f} ms/layer, d×d pinv {pinv * 1e3:.0f} ms, "
                                        f"{pinv / ours:.0f}x, rel diff {diff:.1e}")
    res["metric"] = out
    res["metric_ms_per_layer_d768"] = max(r["ours_ms"] for r in out if r["d"] == 768)
    res["metric_max_rel_diff"] = max(r["rel_diff"] for r in out)


@section("cache")
def bench_cache(a, res):
    from .cache import DiskCache
    from .pipeline import AnalysisConfig, compute_curve
    from .tasks import SampleConfig

    n = 1000
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(tmp)
        cfg = AnalysisConfig(model=a.model, sampling=SampleConfig(n=n), device=a.device, dtype=a.dtype)
        compute_curve(cfg, cache=cache)
        hit = _median_time(lambda: compute_curve(cfg, cache=cache), a.reps or 5)
        size = sum(r["bytes"] for r in cache.entries())
        _, st = compute_curve(cfg, cache=cache)
        per = size / (n / 1000) / st.states.shape[0]
    res["cache_hit_seconds"] = hit
    res["cache_mb_per_1000_texts_per_layer"] = per / 2**20
    _row("cache", f"full-curve hit {hit * 1e3:.0f} ms (goal <500 ms); {per / 2**20:.2f} MB per 1000 texts per layer")


def _row(name, text):
    print(f"{name:<34} {text}", flush=True)


def run(a) -> int:
    import platform

    import torch

    res = {"quick": bool(a.quick), "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                                               "torch": torch.__version__, "device": a.device}}
    only = set(a.only.split(",")) if a.only else None
    for name, f in SECTIONS.items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        f(a, res)
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    if a.json:
        from .cli import _write_atomic

        _write_atomic(a.json, json.dumps(res, indent=2, default=float))
    if a.plots:
        from . import bench_plots

        bench_plots.make(res, a.plots)
    return 0
