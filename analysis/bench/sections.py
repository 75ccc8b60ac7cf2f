"""``python -m analysis bench``: speed measured as ratios, side by side in one run.

Every comparison runs both contenders on the same texts in the same process,
alternating, and reports medians of several repetitions; ratios, not single
times, are the result (this machine is noisy).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from analysis.bench.common import _median_time, _model, _row, _texts, floor, our_curve
from analysis.bench.encoder import bench_encoder
from analysis.bench.probe_speed import probe_speed
from analysis.bench.streaming import bench_stream, bench_stream_memory

SECTIONS: dict[str, Callable] = {}


def section(name):
    def deco(f):
        SECTIONS[name] = f
        return f

    return deco


def paper_algorithm(model, tok, texts, labels, *, device, max_length=128):
    """The reference code's way: one truncated model per layer, batch 8, in input
    order, pooled states concatenated, ν by the d×d pseudo-inverse formula."""
    from analysis.models.hidden_states import extract_states
    from analysis.models.load import keep_layers, layer_list
    from analysis.variability import variability_pinv

    L = len(layer_list(model)[1])
    nus = []
    for l in range(1, L + 1):
        with keep_layers(model, l):
            st = extract_states(model, tok, texts, None, max_length=max_length, batch_size=8, device=device, sort=False)
        nus.append(variability_pinv(st[-1], labels))
    return nus


@section("curve")
def bench_curve(a, res):
    n = 128 if a.quick else 512
    reps = a.reps or (3 if a.quick else 5)
    texts, labels = _texts(n)
    for name in [a.model] if a.quick else [a.model, "mpnet", "gemma3-270m"]:  # deeper models when installed
        try:
            m, tok, dev = _model(name, a.device, a.dtype)
        except Exception as e:  # mpnet may be absent
            res.setdefault("skipped", []).append(f"curve/{name}: {e}")
            continue
        floor(m, tok, texts[:32], device=dev)  # warm up
        t_floor, t_curve = [], []
        for _ in range(reps):  # alternate so drift hits both
            t_floor.append(_median_time(floor, 1, m, tok, texts, device=dev))
            t_curve.append(_median_time(our_curve, 1, m, tok, texts, labels, device=dev))
        t_paper = _median_time(paper_algorithm, 1 if a.quick else 2, m, tok, texts, labels, device=dev)
        ours, paper = our_curve(m, tok, texts, labels, device=dev), paper_algorithm(m, tok, texts, labels, device=dev)
        agree = float(np.max(np.abs(np.array(ours[1:]) - paper) / np.abs(paper)))
        L = len(ours) - 1
        r = {
            "layers": L,
            "n": n,
            "floor_s": statistics.median(t_floor),
            "curve_s": statistics.median(t_curve),
            "paper_s": t_paper,
            "curve_vs_floor": statistics.median(t_curve) / statistics.median(t_floor),
            "paper_algorithm_vs_curve": t_paper / statistics.median(t_curve),
            "max_rel_diff_vs_paper": agree,
        }
        res.setdefault("curve", {})[name] = r
        if name == a.model:
            res["curve_vs_floor"] = r["curve_vs_floor"]
            res["paper_algorithm_vs_curve"] = r["paper_algorithm_vs_curve"]
        _row(
            f"curve {name} ({L} layers, n={n})",
            f"floor {r['floor_s']:.2f}s  ours {r['curve_s']:.2f}s  paper {t_paper:.2f}s  "
            f"ours/floor {r['curve_vs_floor']:.2f}x (goal <=1.1)  paper/ours {r['paper_algorithm_vs_curve']:.1f}x "
            f"(goal >={3 if L <= 6 else 6})  max rel diff {agree:.1e}",
        )


@section("batching")
def bench_batching(a, res):
    n = 128 if a.quick else 512
    texts, _ = _texts(n, seed=1)
    m, tok, dev = _model(a.model, a.device, a.dtype)
    ts, tu = [], []
    for _ in range(a.reps or 3):
        ts.append(_median_time(floor, 1, m, tok, texts, device=dev, sort=True))
        tu.append(_median_time(floor, 1, m, tok, texts, device=dev, sort=False))
    r = {"sorted_texts_per_s": n / statistics.median(ts), "unsorted_texts_per_s": n / statistics.median(tu)}
    r["speedup"] = r["sorted_texts_per_s"] / r["unsorted_texts_per_s"]
    res["batching"] = r
    _row(
        "batching",
        f"sorted {r['sorted_texts_per_s']:.0f} texts/s, unsorted {r['unsorted_texts_per_s']:.0f} texts/s, "
        f"speed-up {r['speedup']:.2f}x",
    )


@section("metric")
def bench_metric(a, res):
    import torch

    from analysis.variability import variability, variability_pinv

    rng = np.random.default_rng(0)
    N = 2000
    out = []
    for d in (384, 768, 1024):
        for C in (2, 5, 20):
            y = rng.integers(0, C, N)
            h = (rng.normal(size=(N, d)) + rng.normal(size=(C, d))[y]).astype(np.float32)
            h64, W = torch.from_numpy(h.astype(np.float64)), torch.from_numpy(rng.normal(size=(d, C)))
            variability(h, y)
            t_ours, t_gemm = [], []
            for _ in range(a.reps or (31 if a.quick else 61)):  # alternate with a reference product
                t_ours.append(_median_time(variability, 1, h, y))
                t_gemm.append(_median_time(torch.matmul, 1, h64, W))
            ours, gemm = statistics.median(t_ours), statistics.median(t_gemm)
            pinv = _median_time(variability_pinv, 1 if a.quick else 3, h, y)
            diff = abs(variability(h, y) - variability_pinv(h, y)) / variability_pinv(h, y)
            out.append(
                {
                    "d": d,
                    "C": C,
                    "ours_ms": ours * 1e3,
                    "pinv_ms": pinv * 1e3,
                    "rel_diff": diff,
                    "gemm_ms": gemm * 1e3,
                    "ours_in_gemms": ours / gemm,
                }
            )
            _row(
                f"metric d={d} C={C}",
                f"ours {ours * 1e3:.2f} ms/layer (= {ours / gemm:.1f} products N×d·d×C), "
                f"d×d pinv {pinv * 1e3:.0f} ms, {pinv / ours:.0f}x, rel diff {diff:.1e}",
            )
    res["metric"] = out
    res["metric_ms_per_layer_d768"] = max(r["ours_ms"] for r in out if r["d"] == 768)
    res["metric_max_rel_diff"] = max(r["rel_diff"] for r in out)


@section("cache")
def bench_cache(a, res):
    from analysis.data.tasks import SampleConfig
    from analysis.pipeline import AnalysisConfig, compute_curve
    from analysis.store.cache import DiskCache

    n = 1000
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(tmp)
        cfg = AnalysisConfig(model=a.model, sampling=SampleConfig(n=n), device=a.device, dtype=a.dtype)
        compute_curve(cfg, cache=cache)
        hit = _median_time(compute_curve, a.reps or 5, cfg, cache=cache)
        size = sum(r["bytes"] for r in cache.entries())
        _, st = compute_curve(cfg, cache=cache)
        per = size / (n / 1000) / st.states.shape[0]
    res["cache_hit_seconds"] = hit
    res["cache_mb_per_1000_texts_per_layer"] = per / 2**20
    _row("cache", f"full-curve hit {hit * 1e3:.0f} ms (goal <500 ms); {per / 2**20:.2f} MB per 1000 texts per layer")


@section("depth")
def bench_depth(a, res):
    """Ours vs the paper's algorithm as the model gets deeper (the first l blocks of the model)."""
    n = 96 if a.quick else 256
    texts, labels = _texts(n, seed=2)
    m, tok, dev = _model(a.model, a.device, a.dtype)
    from analysis.models.load import keep_layers, layer_list

    L = len(layer_list(m)[1])
    depths = sorted({max(1, L // 3), max(1, 2 * L // 3), L}) if a.quick else list(range(1, L + 1))
    out = []
    for depth in depths:
        with keep_layers(m, depth):
            ours = _median_time(our_curve, a.reps or 2, m, tok, texts, labels, device=dev)
            paper = _median_time(paper_algorithm, 1, m, tok, texts, labels, device=dev)
        out.append(
            {
                "depth": depth,
                "ours_s": ours,
                "paper_s": paper,
                "ratio": paper / ours,
                "ours_s_per_layer": ours / depth,
                "paper_s_per_layer": paper / depth,
            }
        )
        _row(f"depth {depth}", f"ours {ours:.2f}s, paper {paper:.2f}s, paper/ours {paper / ours:.1f}x")
    res["depth"] = out


@section("projection")
def bench_projection(a, res):
    from analysis.projection import ProjectionConfig, pca, project_layers
    from analysis.store.cache import DiskCache

    m, tok, dev = _model(a.model, a.device, a.dtype)
    sizes = (1000,) if a.quick else (1000, 2000)
    out = {}
    for n in sizes:
        texts, _ = _texts(n, seed=3)
        from analysis.models.hidden_states import extract_states

        st = extract_states(m, tok, texts, max_length=64, device=dev)
        layers = range(st.shape[0])
        r: dict[str, float] = {"n": n}
        r["pca_layer_s"] = _median_time(pca, 3, st[-1], 2)
        t = time.perf_counter()
        project_layers(st, [len(st) - 1], ProjectionConfig())  # first call: numba JIT (if not yet compiled)
        r["umap_layer_first_s"] = time.perf_counter() - t
        r["umap_layer_warm_s"] = _median_time(project_layers, a.reps or 2, st, [len(st) - 1], ProjectionConfig())
        with tempfile.TemporaryDirectory() as tmp:
            cache = DiskCache(tmp)
            t = time.perf_counter()
            project_layers(st, layers, ProjectionConfig(), states_key="b" * 32, cache=cache)
            r["umap_panel_warm_s"] = time.perf_counter() - t
            r["umap_panel_cache_hit_s"] = _median_time(
                project_layers, 3, st, layers, ProjectionConfig(), states_key="b" * 32, cache=cache
            )
        out[str(n)] = r
        _row(
            f"projection n={n}",
            f"PCA {r['pca_layer_s'] * 1e3:.0f} ms/layer; UMAP first {r['umap_layer_first_s']:.1f}s, "
            f"warm {r['umap_layer_warm_s']:.1f}s/layer, panel of {len(st)} layers "
            f"{r['umap_panel_warm_s']:.1f}s (goal <15 s at n=1000), cached "
            f"{r['umap_panel_cache_hit_s'] * 1e3:.0f} ms (goal <300 ms)",
        )
    res["projection"] = out
    res["umap_panel_warm_seconds"] = out["1000"]["umap_panel_warm_s"]
    res["umap_panel_cache_hit_seconds"] = out["1000"]["umap_panel_cache_hit_s"]


@section("training")
def bench_training(a, res):
    """Steps/s of a selected-layers run vs full fine-tuning on the same batches, next to the FLOP ratio."""
    from analysis.data.tasks import SampleConfig
    from analysis.models.load import layer_list
    from analysis.pipeline import AnalysisConfig
    from analysis.training import Selection, TrainConfig, select, train

    m, _, dev = _model(a.model, a.device, a.dtype)
    L = len(layer_list(m)[1])
    steps = 12 if a.quick else 40
    cfg = AnalysisConfig(
        model=a.model, sampling=SampleConfig(n=steps * 16, seed=4), max_length=64, device=a.device, dtype=a.dtype
    )
    sel = Selection(max(1, L - 2), tuple(range(max(1, L - 3), max(1, L - 2) + 1)))
    full = select("full", L, 1)
    runs: dict[str, list[dict]] = {}
    for s in (sel, full):  # warm-up, not timed: on an H100 the first run took 575 ms/step against 23 for the next
        train(TrainConfig(cfg, s, steps=2, batch_size=16, eval_n=32, eval_every=10**6, seed=0))
    for name, s in (("selected", sel), ("full", full), ("selected2", sel), ("full2", full)):  # alternate
        r = train(TrainConfig(cfg, s, steps=steps, batch_size=16, eval_n=32, eval_every=10**6, seed=0)).result
        runs.setdefault(name.rstrip("2"), []).append(r.to_dict())
    st = statistics.median(x["train_seconds"] / x["steps"] for x in runs["selected"])
    ft = statistics.median(x["train_seconds"] / x["steps"] for x in runs["full"])
    flop = runs["full"][0]["flops_per_example"] / runs["selected"][0]["flops_per_example"]
    res["training"] = {
        "selection": f"classifier {sel.classifier_layer}, tune {list(sel.tuned_layers)}",
        "selected_step_s": st,
        "full_step_s": ft,
        "steps": steps,
    }
    res["train_speedup_vs_full"] = ft / st
    res["train_flop_speedup_vs_full"] = flop
    res["train_speedup_over_flop_ratio"] = (ft / st) / flop
    _row(
        "training",
        f"{res['training']['selection']}: {st * 1e3:.0f} ms/step vs full {ft * 1e3:.0f} ms/step → "
        f"{ft / st:.2f}x; FLOP ratio {flop:.2f}x; measured/FLOP {(ft / st) / flop:.2f} (goal >=0.8)",
    )


MEM_SCRIPT = """
import sys, threading, time, gc
sys.path.insert(0, {root!r})
import psutil
from analysis.bench.sections import _model, _texts
from analysis.models.hidden_states import extract_states
m, tok, dev = _model({model!r}, 'cpu', 'float32')
texts, _ = _texts({n})
extract_states(m, tok, texts[:64], max_length={length}, batch_size=32, device=dev)  # warm allocator
gc.collect()
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
t = threading.Thread(target=sample); t.start()
st = extract_states(m, tok, texts, max_length={length}, batch_size=32, device=dev)
done.set(); t.join()
print((peak[0] - base) / 2**20, st.nbytes / 2**20)
"""


@section("memory")
def bench_memory(a, res):
    """Peak RSS growth of extraction in a fresh process: pooled states only, not tokens × N."""
    import os
    import subprocess

    root = str(Path(__file__).resolve().parents[2])  # the repository root
    out = []
    for n, length in ((2000, 32), (2000, 128)) if a.quick else ((500, 128), (2000, 32), (2000, 128)):
        p = subprocess.run(
            [sys.executable, "-c", MEM_SCRIPT.format(root=root, model=a.model, n=n, length=length)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        grow, states_mb = map(float, p.stdout.split()[-2:])
        out.append({"n": n, "max_length": length, "peak_rss_growth_mb": grow, "states_mb": states_mb})
        _row(
            f"memory n={n} len={length}", f"peak RSS +{grow:.0f} MB while extracting (pooled states {states_mb:.0f} MB)"
        )
    res["memory"] = out


@section("cards")
def bench_cards(a, res):
    """Layer cards from cached states (no --grad) vs the bare forward pass over the same texts, alternating."""
    from analysis.cards.compute import compute_cards
    from analysis.cards.scores import CardsConfig
    from analysis.data.tasks import SampleConfig
    from analysis.pipeline import AnalysisConfig, get_states
    from analysis.store.cache import DiskCache

    n = 300 if a.quick else 1000
    reps = a.reps or (3 if a.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(tmp)
        cfg = AnalysisConfig(model=a.model, sampling=SampleConfig(n=n), device=a.device, dtype=a.dtype)
        get_states(cfg, cache=cache)  # the states are cached before timing starts

        def cards():  # states read from the disk cache, cards computed (their own cache bypassed)
            compute_cards(cfg, CardsConfig(), cache=cache, use_cache=False, states=get_states(cfg, cache=cache))

        m, tok, dev = _model(a.model, a.device, a.dtype)
        texts = get_states(cfg, cache=cache).texts
        floor(m, tok, texts[:32], device=dev)  # warm up
        cards()
        t_fwd, t_cards = [], []
        for _ in range(reps):  # alternate so drift hits both
            t_fwd.append(_median_time(floor, 1, m, tok, texts, device=dev))
            t_cards.append(_median_time(cards, 1))
        st = get_states(cfg, cache=cache)
        probe = probe_speed(st.states, st.labels, reps=reps, device=dev)  # the torch probe beside scikit-learn's
    fwd, crd = statistics.median(t_fwd), statistics.median(t_cards)
    res["cards"] = {"model": a.model, "n": n, "reps": reps, "forward_s": fwd, "cards_s": crd, "ratio": crd / fwd}
    res["cards"]["probe"] = probe
    _row("probe torch vs sklearn", f"torch {probe['torch_s']:.2f}s  sklearn {probe['sklearn_s']:.2f}s")
    res["cards_vs_forward"] = crd / fwd
    _row(
        f"cards {a.model} (n={n})", f"forward {fwd:.2f}s  cards {crd:.2f}s  cards/forward {crd / fwd:.2f}x (goal <=0.5)"
    )


SECTIONS["stream"] = bench_stream  # streaming vs states throughput (analysis/bench_stream.py)
SECTIONS["stream_memory"] = bench_stream_memory  # peak RSS of a stream vs the states path, fresh processes
SECTIONS["encoder"] = bench_encoder  # texts/s of the curve on a random 12-layer d=768 BERT (analysis/bench_encoder.py)


def measure(a, command: str) -> dict:
    """Run the benchmark sections named in ``a.only`` (all by default) and return the results dict.

    ``a`` carries quick, model, device, dtype, reps and only (the CLI's flags).
    """
    import platform

    import torch

    from analysis.models.load import resolve_device, resolve_dtype

    dev = resolve_device(a.device)
    card = torch.cuda.get_device_name(0) if dev.startswith("cuda") else platform.processor() or platform.machine()
    machine = {
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": dev,
        "card": card,
        "dtype": resolve_dtype(a.dtype, dev),
    }
    res: dict = {"command": command, "quick": bool(a.quick), "machine": machine}
    only = set(a.only.split(",")) if a.only else None
    for name, f in SECTIONS.items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        f(a, res)
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    return res
