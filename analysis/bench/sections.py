"""The benchmark sections of the curve, ν, the cache, projections, training and cards.

Every comparison runs both contenders on the same texts in the same process,
alternating, and reports medians of several repetitions; ratios, not single
times, are the result (this machine is noisy). Each section takes the run's
:class:`~analysis.bench.common.BenchSettings` and returns its part of the results.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

from analysis.bench.common import (
    BenchSettings,
    analysis_config,
    bench_model,
    bench_texts,
    floor,
    median_time,
    our_curve,
    row,
)
from analysis.bench.probe_speed import probe_speed


def paper_algorithm(model, tok, texts, labels, *, device, max_length=128):
    """The reference code's way: one truncated model per layer, batch 8, in input
    order, pooled states concatenated, ν by the d×d pseudo-inverse formula."""
    from analysis.models.hidden_states import extract_states
    from analysis.models.layers import keep_layers, layer_list
    from analysis.variability import variability_pinv

    L = len(layer_list(model)[1])
    nus = []
    for l in range(1, L + 1):
        with keep_layers(model, l):
            states = extract_states(
                model, tok, texts, None, max_length=max_length, batch_size=8, device=device, sort=False
            )
        nus.append(variability_pinv(states[-1], labels))
    return nus


def bench_curve(s: BenchSettings) -> dict:
    """Our curve vs its floor (the bare forward pass) vs the paper's algorithm, for each curve model."""
    n = 128 if s.quick else 512
    reps = s.reps or (3 if s.quick else 5)
    texts, labels = bench_texts(s, n)
    res: dict = {}
    for name in s.models_for_curve():
        try:
            m, tok, dev = bench_model(name, s.device, s.dtype)
        except Exception as e:  # the deeper models may be absent
            res.setdefault("skipped", []).append(f"curve/{s.label(name)}: {e}")
            continue
        floor(m, tok, texts[:32], device=dev)  # warm up
        t_floor, t_curve = [], []
        for _ in range(reps):  # alternate so drift hits both
            t_floor.append(median_time(floor, 1, m, tok, texts, device=dev))
            t_curve.append(median_time(our_curve, 1, m, tok, texts, labels, device=dev))
        t_paper = median_time(paper_algorithm, 1 if s.quick else 2, m, tok, texts, labels, device=dev)
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
        res.setdefault("curve", {})[s.label(name)] = r
        if name == s.model:
            res["curve_vs_floor"] = r["curve_vs_floor"]
            res["paper_algorithm_vs_curve"] = r["paper_algorithm_vs_curve"]
        row(
            f"curve {s.label(name)} ({L} layers, n={n})",
            f"floor {r['floor_s']:.2f}s  ours {r['curve_s']:.2f}s  paper {t_paper:.2f}s  "
            f"ours/floor {r['curve_vs_floor']:.2f}x (goal <=1.1)  paper/ours {r['paper_algorithm_vs_curve']:.1f}x "
            f"(goal >={3 if L <= 6 else 6})  max rel diff {agree:.1e}",
        )
    return res


def bench_batching(s: BenchSettings) -> dict:
    """Texts/s of the bare forward pass over length-sorted batches vs batches in input order."""
    n = 128 if s.quick else 512
    texts, _ = bench_texts(s, n, seed=1)
    m, tok, dev = bench_model(s.model, s.device, s.dtype)
    times_sorted, times_unsorted = [], []
    for _ in range(s.reps or 3):
        times_sorted.append(median_time(floor, 1, m, tok, texts, device=dev, sort=True))
        times_unsorted.append(median_time(floor, 1, m, tok, texts, device=dev, sort=False))
    r = {
        "sorted_texts_per_s": n / statistics.median(times_sorted),
        "unsorted_texts_per_s": n / statistics.median(times_unsorted),
    }
    r["speedup"] = r["sorted_texts_per_s"] / r["unsorted_texts_per_s"]
    row(
        "batching",
        f"sorted {r['sorted_texts_per_s']:.0f} texts/s, unsorted {r['unsorted_texts_per_s']:.0f} texts/s, "
        f"speed-up {r['speedup']:.2f}x",
    )
    return {"batching": r}


def bench_metric(s: BenchSettings) -> dict:
    """ν of one layer (N = 2000 random states) by our formula vs the d×d pseudo-inverse, for several d and C."""
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
            for _ in range(s.reps or (31 if s.quick else 61)):  # alternate with a reference product
                t_ours.append(median_time(variability, 1, h, y))
                t_gemm.append(median_time(torch.matmul, 1, h64, W))
            ours, gemm = statistics.median(t_ours), statistics.median(t_gemm)
            pinv = median_time(variability_pinv, 1 if s.quick else 3, h, y)
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
            row(
                f"metric d={d} C={C}",
                f"ours {ours * 1e3:.2f} ms/layer (= {ours / gemm:.1f} products N×d·d×C), "
                f"d×d pinv {pinv * 1e3:.0f} ms, {pinv / ours:.0f}x, rel diff {diff:.1e}",
            )
    return {
        "metric": out,
        "metric_ms_per_layer_d768": max(r["ours_ms"] for r in out if r["d"] == 768),
        "metric_max_rel_diff": max(r["rel_diff"] for r in out),
    }


def bench_cache(s: BenchSettings) -> dict:
    from analysis.pipeline import compute_curve
    from analysis.store.cache import DiskCache

    n = 1000
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(tmp)
        cfg = analysis_config(s, n)
        compute_curve(cfg, cache=cache)
        hit = median_time(compute_curve, s.reps or 5, cfg, cache=cache)
        size = sum(r["bytes"] for r in cache.entries())
        _, states = compute_curve(cfg, cache=cache)
        per = size / (n / 1000) / states.states.shape[0]
    row("cache", f"full-curve hit {hit * 1e3:.0f} ms (goal <500 ms); {per / 2**20:.2f} MB per 1000 texts per layer")
    return {"cache_hit_seconds": hit, "cache_mb_per_1000_texts_per_layer": per / 2**20}


def bench_depth(s: BenchSettings) -> dict:
    """Ours vs the paper's algorithm as the model gets deeper (the first l blocks of the model)."""
    n = 96 if s.quick else 256
    texts, labels = bench_texts(s, n, seed=2)
    m, tok, dev = bench_model(s.model, s.device, s.dtype)
    from analysis.models.layers import keep_layers, layer_list

    L = len(layer_list(m)[1])
    depths = sorted({max(1, L // 3), max(1, 2 * L // 3), L}) if s.quick else list(range(1, L + 1))
    out = []
    for depth in depths:
        with keep_layers(m, depth):
            ours = median_time(our_curve, s.reps or 2, m, tok, texts, labels, device=dev)
            paper = median_time(paper_algorithm, 1, m, tok, texts, labels, device=dev)
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
        row(f"depth {depth}", f"ours {ours:.2f}s, paper {paper:.2f}s, paper/ours {paper / ours:.1f}x")
    return {"depth": out}


def bench_projection(s: BenchSettings) -> dict:
    """PCA and UMAP of one layer and of the panel of all layers: first call, warm, and from the cache."""
    from analysis.projection import ProjectionConfig, pca, project_layers
    from analysis.store.cache import DiskCache

    m, tok, dev = bench_model(s.model, s.device, s.dtype)
    sizes = (1000,) if s.quick else (1000, 2000)
    out = {}
    for n in sizes:
        texts, _ = bench_texts(s, n, seed=3)
        from analysis.models.hidden_states import extract_states

        states = extract_states(m, tok, texts, max_length=64, device=dev)
        layers = range(states.shape[0])
        r: dict[str, float] = {"n": n}
        r["pca_layer_s"] = median_time(pca, 3, states[-1], 2)
        t = time.perf_counter()
        project_layers(states, [len(states) - 1], ProjectionConfig())  # first call: numba JIT (if not yet compiled)
        r["umap_layer_first_s"] = time.perf_counter() - t
        r["umap_layer_warm_s"] = median_time(project_layers, s.reps or 2, states, [len(states) - 1], ProjectionConfig())
        with tempfile.TemporaryDirectory() as tmp:
            cache = DiskCache(tmp)
            t = time.perf_counter()
            project_layers(states, layers, ProjectionConfig(), states_key="b" * 32, cache=cache)
            r["umap_panel_warm_s"] = time.perf_counter() - t
            r["umap_panel_cache_hit_s"] = median_time(
                project_layers, 3, states, layers, ProjectionConfig(), states_key="b" * 32, cache=cache
            )
        out[str(n)] = r
        row(
            f"projection n={n}",
            f"PCA {r['pca_layer_s'] * 1e3:.0f} ms/layer; UMAP first {r['umap_layer_first_s']:.1f}s, "
            f"warm {r['umap_layer_warm_s']:.1f}s/layer, panel of {len(states)} layers "
            f"{r['umap_panel_warm_s']:.1f}s (goal <15 s at n=1000), cached "
            f"{r['umap_panel_cache_hit_s'] * 1e3:.0f} ms (goal <300 ms)",
        )
    return {
        "projection": out,
        "umap_panel_warm_seconds": out["1000"]["umap_panel_warm_s"],
        "umap_panel_cache_hit_seconds": out["1000"]["umap_panel_cache_hit_s"],
    }


def bench_training(s: BenchSettings) -> dict:
    """Steps/s of a selected-layers run vs full fine-tuning on the same batches, next to the FLOP ratio."""
    from analysis.models.layers import layer_list
    from analysis.training import Selection, TrainConfig, select, train

    m, _, dev = bench_model(s.model, s.device, s.dtype)
    L = len(layer_list(m)[1])
    steps = 12 if s.quick else 40
    cfg = analysis_config(s, steps * 16, seed=4, max_length=64)
    sel = Selection(max(1, L - 2), tuple(range(max(1, L - 3), max(1, L - 2) + 1)))
    full = select("full", L, 1)
    runs: dict[str, list[dict]] = {}
    for chosen in (sel, full):  # warm-up, not timed: on an H100 the first run took 575 ms/step against 23 for the next
        train(TrainConfig(cfg, chosen, steps=2, batch_size=16, eval_n=32, eval_every=10**6, seed=0))
    for name, chosen in (("selected", sel), ("full", full), ("selected2", sel), ("full2", full)):  # alternate
        r = train(TrainConfig(cfg, chosen, steps=steps, batch_size=16, eval_n=32, eval_every=10**6, seed=0)).result
        runs.setdefault(name.rstrip("2"), []).append(r.to_dict())
    sel_t = statistics.median(x["train_seconds"] / x["steps"] for x in runs["selected"])
    full_t = statistics.median(x["train_seconds"] / x["steps"] for x in runs["full"])
    flop = runs["full"][0]["flops_per_example"] / runs["selected"][0]["flops_per_example"]
    what = f"classifier {sel.classifier_layer}, tune {list(sel.tuned_layers)}"
    row(
        "training",
        f"{what}: {sel_t * 1e3:.0f} ms/step vs full {full_t * 1e3:.0f} ms/step → "
        f"{full_t / sel_t:.2f}x; FLOP ratio {flop:.2f}x; measured/FLOP {(full_t / sel_t) / flop:.2f} (goal >=0.8)",
    )
    return {
        "training": {"selection": what, "selected_step_s": sel_t, "full_step_s": full_t, "steps": steps},
        "train_speedup_vs_full": full_t / sel_t,
        "train_flop_speedup_vs_full": flop,
        "train_speedup_over_flop_ratio": (full_t / sel_t) / flop,
    }


def bench_cards(s: BenchSettings) -> dict:
    """Layer cards from cached states (no --grad) vs the bare forward pass over the same texts, alternating."""
    from analysis.cards.compute import compute_cards
    from analysis.cards.scores import CardsConfig
    from analysis.pipeline import get_states
    from analysis.store.cache import DiskCache

    n = 300 if s.quick else 1000
    reps = s.reps or (3 if s.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(tmp)
        cfg = analysis_config(s, n)
        get_states(cfg, cache=cache)  # the states are cached before timing starts

        def cards():  # states read from the disk cache, cards computed (their own cache bypassed)
            compute_cards(cfg, CardsConfig(), cache=cache, use_cache=False, states=get_states(cfg, cache=cache))

        m, tok, dev = bench_model(s.model, s.device, s.dtype)
        texts = get_states(cfg, cache=cache).texts
        floor(m, tok, texts[:32], device=dev)  # warm up
        cards()
        t_fwd, t_cards = [], []
        for _ in range(reps):  # alternate so drift hits both
            t_fwd.append(median_time(floor, 1, m, tok, texts, device=dev))
            t_cards.append(median_time(cards, 1))
        states = get_states(cfg, cache=cache)
        probe = probe_speed(states.states, states.labels, reps=reps, device=dev)  # the torch probe beside sklearn's
    fwd, crd = statistics.median(t_fwd), statistics.median(t_cards)
    name = s.label(s.model)
    row("probe torch vs sklearn", f"torch {probe['torch_s']:.2f}s  sklearn {probe['sklearn_s']:.2f}s")
    row(f"cards {name} (n={n})", f"forward {fwd:.2f}s  cards {crd:.2f}s  cards/forward {crd / fwd:.2f}x (goal <=0.5)")
    cards_res = {"model": name, "n": n, "reps": reps, "forward_s": fwd, "cards_s": crd, "ratio": crd / fwd}
    return {"cards": {**cards_res, "probe": probe}, "cards_vs_forward": crd / fwd}
