"""Helpers the benchmark sections share: timing, texts, models, the curve and its floor."""

from __future__ import annotations

import statistics
import time


def median_time(f, reps: int, *args, **kwargs) -> float:
    """Median wall time of ``f(*args, **kwargs)`` over ``reps`` calls (arguments bound now, not late)."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f(*args, **kwargs)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_texts(n: int, seed: int = 0):
    from analysis.data.tasks import SampleConfig, TaskConfig, load_task, sample

    t = sample(load_task(TaskConfig("rotten_tomatoes")), SampleConfig(n=n, seed=seed))
    return t.texts, t.labels


def bench_model(name, device, dtype):
    from analysis.pipeline import AnalysisConfig, cached_model, resolve_target

    t = resolve_target(AnalysisConfig(model=name, device=device, dtype=dtype))
    m, tok = cached_model(t.ref, t.device, t.dtype)
    return m, tok, t.device


def our_curve(model, tok, texts, labels, *, device, max_length=128, batch_size=32):
    from analysis.models.hidden_states import extract_states
    from analysis.variability import variability_curve

    st = extract_states(model, tok, texts, None, max_length=max_length, batch_size=batch_size, device=device)
    return variability_curve(st, labels).variability


def floor(model, tok, texts, *, device, max_length=128, batch_size=32, sort=True):
    """A bare forward pass over the same batches: the least any curve can cost."""
    from analysis.models.batching import make_batches
    from analysis.models.hidden_states import forward_batches

    batches = make_batches(tok, texts, None, max_length=max_length, batch_size=batch_size, sort=sort)
    forward_batches(model, batches, device=device, hidden_states=False)
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()  # GPU work is asynchronous: time it to the end


def bench_row(name, text):
    print(f"{name:<34} {text}", flush=True)
