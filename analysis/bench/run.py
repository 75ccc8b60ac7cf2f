"""The benchmark runner: the sections of :data:`SECTIONS`, one after another, assembled into one results dict."""

from __future__ import annotations

import time
from collections.abc import Callable

from analysis.bench.common import SECTION_NAMES, BenchSettings
from analysis.bench.cpu_bf16 import cpu_bf16
from analysis.bench.encoder import bench_encoder
from analysis.bench.memory import bench_memory
from analysis.bench.sections import (
    bench_batching,
    bench_cache,
    bench_cards,
    bench_curve,
    bench_depth,
    bench_metric,
    bench_projection,
    bench_training,
)
from analysis.bench.streaming import bench_stream, bench_stream_memory
from analysis.bench.training_cache import training_cache


def bench_training_cache(s: BenchSettings) -> dict:
    """The frozen-prefix cache and the task-sized vocabulary, each with and without (it picks its own model)."""
    from analysis.bench.common import row

    return training_cache(quick=s.quick, device=s.device, dtype=s.dtype, progress=lambda m: row("training_cache", m))


def bench_estimate(s: BenchSettings) -> dict:
    """The time estimate printed before a run against the run (its own model unless ``--model`` was given)."""
    from analysis.bench.common import row
    from analysis.bench.estimate_accuracy import estimate_accuracy

    model = s.model if s.model_given else None
    return estimate_accuracy(quick=s.quick, model=model, device=s.device, progress=lambda m: row("estimate", m))


def bench_cpu_bf16(s: BenchSettings) -> dict:
    """bf16 autocast against float32 on the CPU (its own model unless ``--model`` was given; skipped off CPUs)."""
    from analysis.bench.common import row

    model = s.model if s.model_given else None
    return cpu_bf16(quick=s.quick, model=model, device=s.device, reps=s.reps, progress=lambda m: row("cpu_bf16", m))


#: Section name → the function that measures it (settings in, its part of the results out).
SECTIONS: dict[str, Callable[[BenchSettings], dict]] = {
    "curve": bench_curve,
    "batching": bench_batching,
    "metric": bench_metric,
    "cache": bench_cache,
    "depth": bench_depth,
    "projection": bench_projection,
    "training": bench_training,
    "memory": bench_memory,  # peak RSS of extraction, fresh processes
    "cards": bench_cards,
    "stream": bench_stream,  # streaming vs states throughput
    "stream_memory": bench_stream_memory,  # peak RSS of a stream vs the states path, fresh processes
    "encoder": bench_encoder,  # texts/s of the curve on a random 12-layer d=768 BERT
    "training_cache": bench_training_cache,  # the frozen-prefix cache and the task-sized vocabulary
    "cpu_bf16": bench_cpu_bf16,  # bf16 autocast vs float32 on the CPU: curve and step speed-up, ν, ℓ*, metric
    "estimate": bench_estimate,  # the time estimate before a run ÷ the run
}
assert tuple(SECTIONS) == SECTION_NAMES


def machine(s: BenchSettings) -> dict:
    """Where the run measures: platform, torch threads and version, device, card and resolved dtype."""
    import platform

    import torch

    from analysis.models.load import resolve_device, resolve_dtype

    dev = resolve_device(s.device)
    card = torch.cuda.get_device_name(0) if dev.startswith("cuda") else platform.processor() or platform.machine()
    return {
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": dev,
        "card": card,
        "dtype": resolve_dtype(s.dtype, dev),
    }


def add_part(res: dict, part: dict) -> dict:
    """``res`` with a section's part added (the notes of skipped work appended, not replaced)."""
    for k, v in part.items():
        if k == "skipped":
            res.setdefault("skipped", []).extend(v)
        else:
            res[k] = v
    return res


def measure(s: BenchSettings, command: str) -> dict:
    """Run the sections named in ``s.only`` (all by default) and return the results dict.

    ``command`` is the command line that reproduces the run (the report shows it).
    """
    res: dict = {"command": command, "quick": bool(s.quick), "machine": machine(s)}
    for name, f in SECTIONS.items():
        if s.only and name not in s.only:
            continue
        t = time.perf_counter()
        add_part(res, f(s))
        res.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    return res
