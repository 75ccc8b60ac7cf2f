"""Command line: ``python -m analysis {curve,cache,models,tasks,bench,...}``.

Errors a user can cause print one line on stderr and exit with code 2
(``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import VariscopeError


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Model, task, sampling and extraction flags shared by curve, train and project."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="minilm", help="offline name (minilm, mpnet), folder or HF id")
    g.add_argument("--revision", default=None, help="hub revision of the model (default main)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code (off by default)")
    g.add_argument("--task", default=None, help="offline task, GLUE task or HF dataset id (default rotten_tomatoes)")
    g.add_argument("--data", default=None, help="CSV/TSV/JSONL file instead of --task")
    g.add_argument("--text-col", default="text")
    g.add_argument("--text-pair-col", default=None)
    g.add_argument("--label-col", default="label")
    g.add_argument("--hf-config", default=None, help="configuration (subset) of an HF dataset")
    g.add_argument("--bins", type=int, default=None, help="bin a numeric label into K quantile classes")
    g.add_argument("--split", default="train")
    s = p.add_argument_group("sampling")
    s.add_argument("--n", type=int, default=1000, help="texts in total, stratified (default 1000; 0 = all)")
    s.add_argument("--per-class", type=int, default=None, help="cap per class")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--imbalance", default=None, help="class ratios, e.g. 1:9")
    s.add_argument("--fraction", type=float, default=None, help="keep this fraction of each class")
    e = p.add_argument_group("extraction")
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--pooling", default="mean", choices=["mean", "mean_all", "first", "last"])
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    e.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    e.add_argument("--device-map", default=None, choices=["auto"],
                   help="spread a model too large for one GPU over the available devices (accelerate)")
    e.add_argument("--cache-dir", default=None, help="default $VARISCOPE_CACHE or ./cache")
    e.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def config_from_args(a):
    from .pipeline import AnalysisConfig
    from .tasks import SampleConfig, TaskConfig

    if a.data and a.task:
        raise VariscopeError("give either --task or --data, not both")
    task = TaskConfig(name=None if a.data else (a.task or "rotten_tomatoes"), data=a.data, split=a.split,
                      text_col=a.text_col, text_pair_col=a.text_pair_col, label_col=a.label_col,
                      hf_config=a.hf_config, bins=a.bins)
    imb = None
    if a.imbalance:
        try:
            imb = tuple(float(x) for x in a.imbalance.split(":"))
        except ValueError:
            raise VariscopeError(f"--imbalance must look like 1:9, got '{a.imbalance}'") from None
    samp = SampleConfig(n=None if a.n == 0 else a.n, per_class=a.per_class, seed=a.seed,
                        imbalance=imb, fraction=a.fraction)
    return AnalysisConfig(model=a.model, task=task, sampling=samp, pooling=a.pooling,
                          max_length=a.max_length, dtype=a.dtype, device=a.device,
                          batch_size=a.batch_size, revision=a.revision,
                          trust_remote_code=a.trust_remote_code, device_map=a.device_map)


def make_cache(a):
    from .cache import DiskCache, check_cache_dir

    root = a.cache_dir or os.environ.get("VARISCOPE_CACHE")
    if root:
        check_cache_dir(root)
    return DiskCache(root)


def tqdm_progress(desc: str):
    from tqdm import tqdm

    bar = {}

    def cb(done, total):
        if "b" not in bar:
            bar["b"] = tqdm(total=total, desc=desc, unit="text", file=sys.stderr, leave=False)
        bar["b"].n = done
        bar["b"].refresh()
        if done >= total:
            bar["b"].close()

    return cb


def cmd_curve(a) -> int:
    from .pipeline import compute_curve
    from .selection import recommend_layer

    cfg = config_from_args(a)
    cache = make_cache(a)
    t0 = time.perf_counter()
    curve, st = compute_curve(cfg, cache=cache, use_cache=not a.no_cache, bootstrap=a.bootstrap,
                              weighting=a.weighting, progress=tqdm_progress("extracting"))
    best = recommend_layer(curve.variability, rule=a.rule, tolerance=a.tolerance)
    out = {
        "model": cfg.model, "task": cfg.task.label(), "split": cfg.task.split,
        "pooling": cfg.pooling, "max_length": cfg.max_length, "n": int(len(st.labels)),
        "layers": curve.layers, "variability": curve.variability,
        "band": curve.to_dict()["band"], "counts": curve.counts,
        "recommended_layer": best, "rule": a.rule,
        "weighting": a.weighting, "seed": cfg.sampling.seed, "cache_hit": st.cache_hit,
        "cache_key": st.key, "device": st.info.get("device"), "dtype": st.info.get("dtype"),
        "warnings": st.info.get("warnings", []),
        "seconds": {**{k: round(v, 4) for k, v in st.seconds.items()}, "total": round(time.perf_counter() - t0, 4)},
    }
    for w in out["warnings"]:
        print(f"note: {w}", file=sys.stderr)
    print(f"{cfg.model} on {cfg.task.label()} ({cfg.task.split}), n={out['n']}, pooling={cfg.pooling}, "
          f"{'cache hit' if st.cache_hit else 'computed'} in {out['seconds']['total']:.2f}s")
    print(f"{'layer':>5}  {'nu':>12}" + (f"  {'band':>25}" if curve.band else ""))
    for i, l in enumerate(curve.layers):
        row = f"{l:>5}  {curve.variability[i]:>12.5g}"
        if curve.band:
            row += f"  [{curve.band[0][i]:>11.5g}, {curve.band[1][i]:>11.5g}]"
        print(row + ("   <- recommended" if l == best else ""))
    if a.json:
        _write_atomic(a.json, json.dumps(out, indent=2))
    if a.csv:
        lines = ["layer,variability" + (",band_low,band_high" if curve.band else "")]
        for i, l in enumerate(curve.layers):
            row = f"{l},{curve.variability[i]!r}"
            if curve.band:
                row += f",{curve.band[0][i]!r},{curve.band[1][i]!r}"
            lines.append(row)
        _write_atomic(a.csv, "\n".join(lines) + "\n")
    return 0


def _write_atomic(path: str, text: str) -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        raise VariscopeError(f"cannot write '{path}': folder '{p.parent}' does not exist")
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, p)


def cmd_cache(a) -> int:
    cache = make_cache(a)
    if a.action == "list":
        rows = cache.entries()
        total = sum(r["bytes"] for r in rows)
        for r in rows:
            print(f"{r['kind']:<12} {r['key']}  {r['bytes'] / 2**20:8.2f} MB  {r['describe']}")
        print(f"{len(rows)} entries, {total / 2**20:.2f} MB in {cache.root}")
    else:
        n = cache.clear(kind=a.kind, key=a.key)
        print(f"deleted {n} entries from {cache.root}")
    return 0


def cmd_models(a) -> int:
    from .models import registry_status

    for r in registry_status():
        state = "installed" if r["installed"] else f"not installed: {r['install']}"
        print(f"{r['name']:<8} {r['title']:<45} {r['params'] / 1e6:6.1f}M params  {state}")
    print("Also: any local model folder, or any Hugging Face model id (needs the hub or its local cache).")
    return 0


def cmd_tasks(a) -> int:
    from .tasks import GLUE, OFFLINE, TaskConfig, load_task

    for name, (pkg, title) in OFFLINE.items():
        try:
            t = load_task(TaskConfig(name=name))
            state = f"{len(t)} train texts, {len(t.label_names)} classes"
        except VariscopeError as e:
            state = str(e)
        print(f"{name:<18} {title:<55} {state}")
    print(f"GLUE (needs the hub or its cache): {', '.join(GLUE)}; any HF dataset id; --data FILE.")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis",
                                description="Variscope: which layers of a language model already separate a task's classes.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("curve", help="variability ratio per layer")
    add_data_args(c)
    c.add_argument("--bootstrap", type=int, default=0, help="B resamples for a 5-95%% band")
    c.add_argument("--weighting", default="equal", choices=["equal", "size"])
    c.add_argument("--rule", default="argmin", choices=["argmin", "plateau"])
    c.add_argument("--tolerance", type=float, default=10.0, help="plateau rule: %% above the minimum")
    c.add_argument("--json", default=None)
    c.add_argument("--csv", default=None)
    c.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_curve)

    k = sub.add_parser("cache", help="list or clear the disk cache")
    k.add_argument("action", choices=["list", "clear"])
    k.add_argument("--kind", default=None, choices=["states", "projections", "runs"])
    k.add_argument("--key", default=None, help="key prefix")
    k.add_argument("--cache-dir", default=None)
    k.set_defaults(func=cmd_cache)

    m = sub.add_parser("models", help="offline models")
    m.set_defaults(func=cmd_models)
    t = sub.add_parser("tasks", help="offline tasks")
    t.set_defaults(func=cmd_tasks)

    from . import bench
    b = sub.add_parser("bench", help="speed benchmarks (ratios measured side by side)")
    bench.add_args(b)
    b.set_defaults(func=bench.run)

    for extra in ("training", "reproduce", "projection"):
        try:
            mod = __import__(f"analysis.{extra}", fromlist=["register_cli"])
        except ImportError:
            continue
        if hasattr(mod, "register_cli"):
            mod.register_cli(sub, add_data_args)

    a = p.parse_args(argv)
    debug = a.debug or os.environ.get("VARISCOPE_DEBUG") == "1"
    if not debug:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    try:
        return a.func(a)
    except VariscopeError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
