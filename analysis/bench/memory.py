"""``bench --only memory``: peak RSS growth while extracting pooled states, each size in a fresh process.

The parent runs ``python -m analysis.bench.memory SPEC`` per (n, max length); the child
loads the model, warms the allocator on 64 texts, then samples its RSS every 5 ms while
extracting the states of n texts, and prints one JSON line: the peak growth over the RSS
before the pass and the size of the pooled states (float32, (L+1) × n × d).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time

from analysis.bench.common import REPO_ROOT, BenchSettings, bench_model, bench_texts, row

QUICK_RUNS = ((2000, 32), (2000, 128))  # (texts, max length)
FULL_RUNS = ((500, 128), (2000, 32), (2000, 128))


def measure_child(spec: dict) -> dict:
    """In a fresh process: peak RSS growth (MB) of extracting ``spec['n']`` texts' states, and their size (MB)."""
    import psutil

    from analysis.models.hidden_states import extract_states

    s = BenchSettings(model=spec["model"], device="cpu", dtype="float32", data=spec.get("data"))
    m, tok, dev = bench_model(s.model, s.device, s.dtype)
    texts, _ = bench_texts(s, spec["n"])
    length = spec["max_length"]
    extract_states(m, tok, texts[:64], max_length=length, batch_size=32, device=dev)  # warm the allocator
    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    states = extract_states(m, tok, texts, max_length=length, batch_size=32, device=dev)
    done.set()
    t.join()
    return {"peak_rss_growth_mb": (peak[0] - base) / 2**20, "states_mb": states.nbytes / 2**20}


def run_child(module: str, spec: dict, what: str) -> dict:
    """Run ``python -m module SPEC`` from the repository root; its last stdout line, read as JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)], cwd=REPO_ROOT, capture_output=True, text=True, env=env
    )
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_memory(s: BenchSettings) -> dict:
    """Peak RSS growth of extraction in a fresh process: pooled states only, not tokens × N."""
    out = []
    for n, length in QUICK_RUNS if s.quick else FULL_RUNS:
        spec = {"model": s.model, "n": n, "max_length": length, "data": s.data}
        got = run_child("analysis.bench.memory", spec, f"memory measurement n={n} max length {length}")
        out.append({"n": n, "max_length": length, **got})
        row(
            f"memory n={n} len={length}",
            f"peak RSS +{got['peak_rss_growth_mb']:.0f} MB while extracting (pooled states {got['states_mb']:.0f} MB)",
        )
    return {"memory": out}


if __name__ == "__main__":
    print(json.dumps(measure_child(json.loads(sys.argv[1]))), flush=True)
