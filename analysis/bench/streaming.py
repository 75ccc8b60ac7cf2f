"""Benchmarks of the streaming path (``curve --stream``): its speed beside the states path, and its memory.

``bench_stream``: texts/s of :func:`analysis.stream.curve.stream_curve` (statistics
only) ÷ texts/s of :func:`analysis.pipeline.compute_curve` without the cache
(states kept, then ν), same model, texts, max length and batch size, in one
process, alternating which goes first.

``bench_stream_memory``: the peak RSS growth of each path in a fresh process
per measurement (``python -m analysis.bench.streaming SPEC``). The model is loaded
first and freed heap handed back to the system (``malloc_trim``); that RSS is
the baseline. The peak of the pass alone is the kernel's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` once the baseline is
taken), checked by a thread sampling RSS every 5 ms. Texts: the offline
rotten_tomatoes train split (10,201 snippets) cycled into a CSV of n rows,
copies after the first marked " (2)", " (3)", ... so every row is distinct
(or the texts of :attr:`BenchSettings.data` in their place).
"""

from __future__ import annotations

import csv
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time

from analysis.bench.common import BenchSettings, row
from analysis.bench.memory import run_child

MAX_LENGTH = 32  # short texts (rotten_tomatoes snippets average 111 characters), large batches
BATCH = 128  # throughput comparison
MEM_BATCH = 32  # memory: the CLI's default batch (a batch's forward pass is a fixed part of the peak)
THROUGHPUT_GOAL = 0.95  # stream texts/s ÷ states texts/s, at least
RSS_GOAL_MB = 300.0  # the stream's peak growth, at most, at any n
QUICK_N, FULL_N = 1000, 2000  # texts of the throughput comparison
QUICK_SIZES, FULL_SIZES = (1000, 5000), (10000, 50000)  # texts of the memory measurements


def _config(model: str, device: str, dtype: str, *, data: str, n: int | None = None, batch: int = BATCH):
    """The AnalysisConfig of every text of the CSV file ``data`` (or ``n`` of them)."""
    from analysis.data.sampling import SampleConfig
    from analysis.data.tasks import TaskConfig
    from analysis.pipeline import AnalysisConfig

    task = TaskConfig(name=None, data=data)
    return AnalysisConfig(
        model=model,
        task=task,
        sampling=SampleConfig(n=n),
        max_length=MAX_LENGTH,
        batch_size=batch,
        device=device,
        dtype=dtype,
    )


def no_cache_kwargs() -> dict:
    """Keyword arguments that make ``stream_curve`` run its pass rather than read a cached result."""
    import inspect

    from analysis.stream.curve import stream_curve, stream_stats

    params = set(inspect.signature(stream_curve).parameters) | set(inspect.signature(stream_stats).parameters)
    return {"use_cache": False} if "use_cache" in params else {}


def _rel_diff(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _alternate(cfg, reps: int) -> tuple[float, dict, dict]:
    """(ν max rel. diff, wall times, CPU times) of both paths on ``cfg``, alternating which goes first."""
    from analysis.pipeline import compute_curve
    from analysis.stream.curve import DEFAULT_KEEP, stream_curve

    kw = no_cache_kwargs()

    def stream():
        return stream_curve(cfg, keep=DEFAULT_KEEP, **kw).curve.variability

    def states():
        return compute_curve(cfg, use_cache=False)[0].variability

    diff = _rel_diff(stream(), states())  # also the warm-up: model loaded, first passes done
    times: dict[str, list[float]] = {"stream": [], "states": []}
    cpu: dict[str, list[float]] = {"stream": [], "states": []}
    for i in range(reps):  # alternate, and alternate which goes first, so drift hits both
        for name, f in (
            (("stream", stream), ("states", states)) if i % 2 == 0 else (("states", states), ("stream", stream))
        ):
            t, c = time.perf_counter(), time.process_time()
            f()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return diff, times, cpu


def bench_stream(s: BenchSettings) -> dict:
    """Throughput of the streaming path ÷ the states path on one CSV of n texts, alternating, medians of ``reps``.

    A data file, because that is what the stream reads in chunks (an offline task is held in memory anyway).
    """
    n = QUICK_N if s.quick else FULL_N
    reps = s.reps or (3 if s.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "texts.csv")
        corpus = write_corpus(data, n, s.task())
        diff, times, cpu = _alternate(_config(s.model, s.device, s.dtype, data=data, batch=BATCH), reps)
    t_stream, t_states = statistics.median(times["stream"]), statistics.median(times["states"])
    cpu_ratio = statistics.median(cpu["states"]) / statistics.median(cpu["stream"])
    r = {
        "model": s.label(s.model),
        "n": n,
        "texts": f"the first {n} {corpus['source']} texts, as a CSV file",
        "max_length": MAX_LENGTH,
        "batch_size": BATCH,
        "reps": reps,
        "stream_texts_per_s": n / t_stream,
        "states_texts_per_s": n / t_states,
        "ratio": t_states / t_stream,
        "cpu_ratio": cpu_ratio,  # the same ratio in process CPU time: less moved by other jobs on the machine
        "stream_s": times["stream"],
        "states_s": times["states"],
        "max_rel_diff_nu": diff,
        "goal": f">= {THROUGHPUT_GOAL}",
        "met": t_states / t_stream >= THROUGHPUT_GOAL,
    }
    row(
        f"stream {r['model']} (n={n})",
        f"stream {r['stream_texts_per_s']:.0f} texts/s  states {r['states_texts_per_s']:.0f} texts/s  "
        f"stream/states {r['ratio']:.2f}x (goal >={THROUGHPUT_GOAL}: {'met' if r['met'] else 'NOT met'}; "
        f"CPU time {cpu_ratio:.2f}x)  ν max rel diff {diff:.1e}",
    )
    return {"stream": r, "stream_vs_states_throughput": r["ratio"]}


# ------------------------------------------------------------------ memory
def write_corpus(path: str, n: int, task=None) -> dict:
    """A CSV (text,label) of ``n`` rows: the texts of ``task`` (a TaskConfig; default the rotten_tomatoes
    train split), cycled, copies marked distinct. Returns where the rows came from."""
    from analysis.data.tasks import TaskConfig, load_task

    task = task or TaskConfig("rotten_tomatoes")
    base = load_task(task)
    m = len(base)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            k, j = divmod(i, m)
            text = base.texts[j] if k == 0 else f"{base.texts[j]} ({k + 1})"
            w.writerow([text, base.label_names[int(base.labels[j])]])
    source = f"{task.name} {task.split} split" if task.name else f"texts of {os.path.basename(str(task.data))}"
    return {"source": source, "distinct_base_texts": m, "copies": -(-n // m)}


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _trim() -> None:
    """Hand freed heap back to the system (glibc), so the baseline holds no reusable slack."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _hwm() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak RSS growth (bytes) of the ``with`` block over the RSS at its start."""

    def __enter__(self):
        _trim()
        self.base = _rss()
        self.kernel = _reset_hwm()
        self.peak = self.base
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.sampled = self.peak
        hwm = _hwm() if self.kernel else None
        self.peak = max(self.peak, _rss(), hwm or 0)
        self.method = "VmHWM reset + 5 ms sampling" if hwm else "5 ms RSS sampling"
        return False


def measure_child(spec: dict) -> dict:
    """In a fresh process: load the model, then one pass of ``spec['mode']`` ("stream" or "states") under PeakRSS."""
    from analysis.pipeline import compute_curve, load_for, resolve_target
    from analysis.stream.curve import DEFAULT_KEEP, stream_curve

    cfg = _config(spec["model"], spec["device"], spec["dtype"], data=spec["data"], batch=MEM_BATCH)
    load_for(cfg, resolve_target(cfg))  # the same cached_model call as the pass makes: loaded once, before the baseline
    with PeakRSS() as p:
        t = time.perf_counter()
        if spec["mode"] == "stream":
            r = stream_curve(cfg, keep=DEFAULT_KEEP, **no_cache_kwargs())
            sample = r.stats.kept.states
            held = r.stats.W.nbytes + r.stats.sums.nbytes + (0 if sample is None else sample.nbytes)
            nu, n = r.curve.variability, r.n
        else:
            curve, states_res = compute_curve(cfg, use_cache=False)
            nu, n, held = curve.variability, len(states_res.labels), states_res.states.nbytes
        seconds = time.perf_counter() - t
    return {
        "mode": spec["mode"],
        "n": n,
        "baseline_mb": p.base / 2**20,
        "peak_growth_mb": (p.peak - p.base) / 2**20,
        "sampled_growth_mb": (p.sampled - p.base) / 2**20,
        "held_mb": held / 2**20,
        "method": p.method,
        "seconds": seconds,
        "texts_per_s": n / seconds,
        "nu": nu,
    }


def bench_stream_memory(s: BenchSettings) -> dict:
    """Peak RSS growth of a stream and of the states path at two sizes, each in a fresh process."""
    from analysis.models import hidden_states

    sizes = sorted(QUICK_SIZES if s.quick else FULL_SIZES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            data = os.path.join(tmp, f"corpus_{n}.csv")
            corpus = write_corpus(data, n, s.task())
            got = {}
            for mode in ("stream", "states"):
                spec = {"mode": mode, "n": n, "data": data, "model": s.model, "device": s.device, "dtype": s.dtype}
                got[mode] = run_child("analysis.bench.streaming", spec, f"memory measurement {mode} n={n}")
            d = _rel_diff(got["stream"].pop("nu"), got["states"].pop("nu"))
            for mode in ("stream", "states"):
                rows.append({**got[mode], "max_rel_diff_nu": d})
            row(
                f"stream memory n={n}",
                f"peak RSS growth: stream +{got['stream']['peak_growth_mb']:.0f} MB "
                f"(goal <={RSS_GOAL_MB:.0f}), states +{got['states']['peak_growth_mb']:.0f} MB; "
                f"stream {got['stream']['texts_per_s']:.0f} texts/s; ν max rel diff {d:.1e}",
            )
    top = max(sizes)
    stream_top = next(r for r in rows if r["mode"] == "stream" and r["n"] == top)
    states_top = next(r for r in rows if r["mode"] == "states" and r["n"] == top)
    part: dict = {}
    part["stream_memory"] = {
        "model": s.label(s.model),
        "max_length": MAX_LENGTH,
        "batch_size": MEM_BATCH,
        "corpus": corpus,
        "method": stream_top["method"],
        "rows": rows,
        "goal_mb": RSS_GOAL_MB,
        "chunk_texts": getattr(hidden_states, "CHUNK_TEXTS", None),  # texts a stream tokenizes at a time
        "met": all(r["peak_growth_mb"] <= RSS_GOAL_MB for r in rows if r["mode"] == "stream"),
    }
    part["stream_peak_rss_mb"] = stream_top["peak_growth_mb"]
    part["stream_peak_rss_n"] = top
    part["states_peak_rss_mb"] = states_top["peak_growth_mb"]
    return part


# ------------------------------------------------------------------ report (analysis/bench/report.py)
def stream_headlines(res: dict) -> list[tuple]:
    """(measure, key, format, goal, test) of the headline table's streaming rows."""
    n = res.get("stream_peak_rss_n", "?")
    return [
        (
            "streaming ÷ states throughput, texts/s (`stream_vs_states_throughput`)",
            "stream_vs_states_throughput",
            ".2f",
            f"≥ {THROUGHPUT_GOAL}",
            lambda v: v >= THROUGHPUT_GOAL,
        ),
        (
            f"stream peak RSS growth beyond the loaded model, n={n}, MB (`stream_peak_rss_mb`)",
            "stream_peak_rss_mb",
            ".0f",
            f"≤ {RSS_GOAL_MB:.0f} at any n",
            lambda v: v <= RSS_GOAL_MB,
        ),
        (f"states path peak RSS growth, same texts, n={n}, MB (`states_peak_rss_mb`)", "states_peak_rss_mb", ".0f"),
    ]


def stream_report_lines(res: dict, rel: str) -> list[str]:
    """Streaming (``curve --stream``) against the states path: throughput, then peak memory at two sizes."""
    L = []
    if res.get("stream"):
        s = res["stream"]
        texts = s.get("texts") or f"n = {s['n']}"
        L += [
            "",
            "## Streaming vs states",
            "",
            f"{s['model']}, {texts}, max length {s['max_length']}, batch {s['batch_size']}: the stream "
            f"(`stream_curve`, statistics only) ran {s['stream_texts_per_s']:.0f} texts/s, the states path "
            f"(states extracted and kept, then ν; no cache) {s['states_texts_per_s']:.0f} texts/s: "
            f"**{s['ratio']:.2f}×** (goal ≥ 0.95; medians of {s['reps']} alternating repetitions, the first side "
            f"swapped every repetition). In process CPU time, which other jobs on the machine move less, the "
            f"ratio was {s.get('cpu_ratio', float('nan')):.2f}×. Their ν differ by at most "
            f"{s['max_rel_diff_nu']:.1e} (relative).",
        ]
    m = res.get("stream_memory")
    if not m:
        return L
    L += [
        "",
        "### Peak memory" if res.get("stream") else "## Streaming: peak memory",
        "",
        f"![peak RSS growth vs texts]({rel}/bench_stream_memory.png)",
        "",
        f"Each figure is one fresh process: {m['model']} loaded first (that RSS, freed heap returned with "
        "`malloc_trim`, is the baseline), then one pass over a CSV of n texts (task loading, tokenization, "
        f"forward passes, ν; max length {m['max_length']}, batch {m['batch_size']}); the peak is the kernel's "
        f"high-water mark of the pass alone ({m['method']}). Texts: the {m['corpus']['source']} "
        f"({m['corpus']['distinct_base_texts']} snippets) cycled, later copies marked “(2)”, “(3)”, … so all "
        "rows differ.",
        "",
        "| n | path | peak RSS growth MB | held at the end MB | texts/s | ν max rel. diff stream vs states |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(m["rows"], key=lambda r: (r["n"], r["mode"] != "stream")):
        L.append(
            f"| {r['n']} | {r['mode']} | {r['peak_growth_mb']:.0f} | {r['held_mb']:.0f} | {r['texts_per_s']:.0f} | "
            f"{r['max_rel_diff_nu']:.1e} |"
        )
    L += ["", "Held at the end: the statistics (stream: (L+1)·d² + C·(L+1)·d float64) or the pooled states."]
    return L + _slopes(m)


def _slopes(m: dict) -> list[str]:
    """Growth per 10,000 more texts between the smallest and the largest n, per path."""
    out = []
    for mode in ("stream", "states"):
        rows = sorted((r for r in m["rows"] if r["mode"] == mode), key=lambda r: r["n"])
        if len(rows) >= 2 and rows[-1]["n"] > rows[0]["n"]:
            k = (rows[-1]["peak_growth_mb"] - rows[0]["peak_growth_mb"]) / (rows[-1]["n"] - rows[0]["n"]) * 1e4
            out.append(f"{mode} {k:+.0f} MB per 10,000 more texts")
    if not out:
        return []
    chunk = f"{m['chunk_texts']} texts" if m.get("chunk_texts") else "chunks (`hidden_states.CHUNK_TEXTS`)"
    return [
        "",
        "From the smallest to the largest n: "
        + "; ".join(out)
        + ". Do not extrapolate these slopes: the stream reads a file "
        f"in {chunk}, each tokenized and batched on its own, so up to one chunk its growth includes the chunk; "
        "the full run's 10,000 and 50,000 texts show the growth beyond.",
    ]


if __name__ == "__main__":
    print(json.dumps(measure_child(json.loads(sys.argv[1]))), flush=True)
