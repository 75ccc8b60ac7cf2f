"""The analysis subcommands: curve, cache, models, tasks."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from analysis.cli.common import add_data_args, config_from_args, make_cache, prepare_model, tqdm_progress
from analysis.errors import VariscopeError
from analysis.store.atomic import check_output, write_atomic


def cmd_curve(a) -> int:
    from analysis.pipeline import curve_record
    from analysis.recommend import recommend_layer

    cfg = config_from_args(a)
    check_output(a.json, what="--json")
    check_output(a.csv, what="--csv")
    if not 0 <= a.bootstrap <= 1000:
        raise VariscopeError(f"bootstrap resamples must be between 0 and 1000, got {a.bootstrap}")
    if not math.isfinite(a.tolerance) or a.tolerance < 0:
        raise VariscopeError(f"plateau tolerance must be a finite number ≥ 0, got {a.tolerance}")
    if not a.stream and (a.stream_mode is not None or a.keep is not None or a.memory_budget is not None):
        raise VariscopeError("--stream-mode, --keep and --memory-budget go with --stream")
    if a.keep is not None and a.keep < 0:
        raise VariscopeError(f"--keep must be a number of states ≥ 0, got {a.keep}")
    if a.stream and a.bootstrap and a.keep == 0:
        raise VariscopeError("--bootstrap with --stream resamples the state sample: --keep must be above 0")
    if a.memory_budget is not None and not (math.isfinite(a.memory_budget) and a.memory_budget > 0):
        raise VariscopeError(f"--memory-budget must be a positive number of MB, got {a.memory_budget}")
    cache = make_cache(a)
    t0 = time.perf_counter()
    curve, n, extra = _curve_stream(a, cfg, cache) if a.stream else _curve_states(a, cfg, cache)
    if extra.get("rank", 0) != 0:
        return 0  # one process prints and writes
    band_note = extra.pop("band_note", None)
    best = recommend_layer(curve.variability, rule=a.rule, tolerance=a.tolerance)
    out = {
        **curve_record(cfg, curve.to_dict(), n, best, a.rule, mode=extra["mode"], world_size=extra["world_size"]),
        "weighting": a.weighting,
        **extra,
        "seconds": {
            **{k: round(v, 4) for k, v in extra["seconds"].items()},
            "total": round(time.perf_counter() - t0, 4),
        },
    }
    out.pop("rank", None)
    for w in out["warnings"]:
        print(f"note: {w}", file=sys.stderr)
    how = "cache hit" if out["cache_hit"] else f"streamed ({out['mode']})" if a.stream else "computed"
    print(
        f"{cfg.model} on {cfg.task.label()} ({cfg.task.split}), n={out['n']}, pooling={cfg.pooling}, "
        f"{how} in {out['seconds']['total']:.2f}s"
        + (f" by {out['world_size']} processes" if out["world_size"] > 1 else "")
    )
    if band_note:
        print(band_note)
    print(f"{'layer':>5}  {'nu':>12}" + (f"  {'band':>25}" if curve.band else ""))
    for i, l in enumerate(curve.layers):
        row = f"{l:>5}  {curve.variability[i]:>12.5g}"
        if curve.band:
            row += f"  [{curve.band[0][i]:>11.5g}, {curve.band[1][i]:>11.5g}]"
        print(row + ("   <- recommended" if l == best else ""))
    if a.json:
        write_atomic(a.json, json.dumps(out, indent=2))
    if a.csv:
        write_atomic(a.csv, curve.to_csv())
    return 0


def _curve_states(a, cfg, cache):
    """The default path: pooled states (from the cache or one pass), then ν. Returns (curve, n, JSON fields)."""
    import os

    from analysis.pipeline import compute_curve

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise VariscopeError("several processes (torchrun) need --stream")
    prepare_model(cfg.model, cache)
    curve, st = compute_curve(
        cfg,
        cache=cache,
        use_cache=not a.no_cache,
        bootstrap=a.bootstrap,
        weighting=a.weighting,
        progress=tqdm_progress("extracting"),
    )
    extra = {"mode": "states", "world_size": 1, "cache_hit": st.cache_hit, "cache_key": st.key}
    return curve, len(st.labels), {**extra, **_run_info(st.info), "seconds": st.seconds}


def _curve_stream(a, cfg, cache):
    """--stream: statistics instead of states, sharded over torchrun's processes. Returns (curve, n, JSON fields).

    Every process joins each step's ok/failed exchange, so a failure anywhere is one error line
    (printed by rank 0; the others exit 1 silently) instead of a hang. Rank 0 alone reads and
    writes the cache.
    """
    from analysis.stream.curve import RankFailure, close_distributed, init_distributed

    rank, world = init_distributed(cfg.device)
    if world == 1:
        return _stream_steps(a, cfg, cache, rank, world)
    try:
        out = _stream_steps(a, cfg, cache, rank, world)
    except RankFailure as e:  # every process raised it: rank 0 prints, then all leave together
        if rank == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        close_distributed(wait=True)  # nobody exits (and gets the others killed) before the line is out
        raise SystemExit(2 if rank == 0 else 1) from None
    except VariscopeError:
        close_distributed(wait=False)
        if rank != 0:
            raise SystemExit(1) from None  # rank 0 prints the one error line
        raise
    except BaseException:
        close_distributed(wait=False)
        raise
    close_distributed(wait=True)
    return out


def _stream_steps(a, cfg, cache, rank: int, world: int):
    from analysis.stream.curve import DEFAULT_KEEP, collective, share, stream_curve
    from analysis.stream.curvecache import StreamSettings, load_stream, save_stream, stream_key

    keep = DEFAULT_KEEP if a.keep is None else a.keep
    how = StreamSettings(mode=a.stream_mode or "auto", keep=keep, weighting=a.weighting, bootstrap=a.bootstrap)
    budget = None if a.memory_budget is None else int(a.memory_budget * 2**20)
    use_cache = not a.no_cache

    def look() -> tuple:
        if rank != 0:
            return None, None, None
        prepare_model(cfg.model, cache)
        if not use_cache:
            return None, None, None
        key, conf = stream_key(cfg, how, cache_root=cache.root)
        return key, conf, load_stream(cache, key)

    key, conf, hit = collective(look, world)
    if share(hit is not None, world):  # every process learns whether rank 0 has it
        if rank != 0:
            return None, 0, {"rank": rank, "seconds": {}}
        res = hit
        extra = {"mode": res["mode"], "world_size": res["world_size"], "cache_hit": True, "cache_key": key}
        extra.update(_run_info(res["info"]), seconds={"total": 0.0}, rank=0)
        return res["curve"], res["n"], {**extra, **_band_fields(res["curve"], res["band_sample"], res["n"])}
    res = stream_curve(
        cfg,
        rank=rank,
        world_size=world,
        mode=how.mode,
        memory_budget=budget,
        bootstrap=a.bootstrap,
        keep=keep,
        weighting=a.weighting,
        progress=tqdm_progress("streaming") if rank == 0 else None,
        cache_root=cache.root,
    )
    if use_cache:  # rank 0 writes; a failure there is agreed on like any other
        collective(lambda: save_stream(cache, key, conf, res) if rank == 0 and key is not None else None, world)
    extra = {"mode": res.mode, "world_size": world, "rank": rank, "cache_hit": False, "cache_key": key}
    fields = {**extra, **_run_info(res.info), "seconds": res.seconds}
    return res.curve, res.n, {**fields, **_band_fields(res.curve, res.band_sample, res.n)}


def _band_fields(curve, k: int, n: int) -> dict:
    """JSON fields (and the printed note) saying that a streamed curve's band comes from its state sample."""
    out: dict = {"keep": k}
    if curve.band:
        b = curve.settings.get("bootstrap", 0)
        out["band_from"] = f"state sample of {k} states"
        out["band_note"] = (
            f"band: the relative 5-95% spread of {b} bootstrap resamples of a sample of {k} states,"
            f" centred on nu, which itself uses all {n}"
        )
    return out


def _run_info(info: dict) -> dict:
    return {"device": info.get("device"), "dtype": info.get("dtype"), "warnings": info.get("warnings", [])}


def cmd_cache(a) -> int:
    cache = make_cache(a)
    if a.action == "list":
        rows = cache.entries()
        total = sum(r["bytes"] for r in rows)
        for r in rows:
            print(f"{r['kind']:<12} {r['key']}  {r['bytes'] / 2**20:8.2f} MB  {r['describe']}")
        kinds = sorted({r["kind"] for r in rows})
        for k in kinds:
            mine = [r["bytes"] for r in rows if r["kind"] == k]
            print(f"{k:<12} {len(mine)} entries, {sum(mine) / 2**20:.2f} MB")
        print(f"{len(rows)} entries, {total / 2**20:.2f} MB in {cache.root}")
        print(
            f"budget {cache.budget / 1e9:g} GB (CACHE_BUDGET_BYTES in analysis/store/cache.py): least recently used "
            "entries go after each write, prefix states first"
        )
    else:
        n = cache.clear(kind=a.kind, key=a.key)
        print(f"deleted {n} entries from {cache.root}")
    return 0


def cmd_models(a) -> int:
    from analysis.models.registry import registry_status

    rows = registry_status(make_cache(a).root)
    if a.json:
        keys = ("name", "installed", "layers", "hidden_size", "params", "licence", "install", "path", "kind", "title")
        print(json.dumps([{k: r[k] for k in keys} for r in rows], indent=2))
        return 0
    for r in rows:
        state = ("ready" if r["path"] else "installed") if r["installed"] else f"not installed: {r['install']}"
        print(
            f"{r['name']:<12} {r['layers']:>2} layers  d={r['hidden']:<4} {r['params'] / 1e6:6.1f}M params  "
            f"{r['kind']:<18}  {state}"
        )
        print(
            f"{'':<12} {r['title']}; licence: {r['licence']}" + (f"\n{'':<12} folder: {r['path']}" if r["path"] else "")
        )
    print("Also: any local model folder, or any Hugging Face model id (needs the hub or its local cache).")
    print(
        "Sentence-embedding models separate texts best at their top layer; a raw model (gemma3-270m) shows "
        "a middle layer that already separates the classes."
    )
    return 0


def cmd_tasks(a) -> int:
    from analysis.data.tasks import GLUE, OFFLINE, TaskConfig, load_task

    for name, (_pkg, title) in OFFLINE.items():
        try:
            t = load_task(TaskConfig(name=name))
            state = f"{len(t)} train texts, {len(t.label_names)} classes"
        except VariscopeError as e:
            state = str(e)
        print(f"{name:<18} {title:<55} {state}")
    print(f"GLUE (needs the hub or its cache): {', '.join(GLUE)}; any HF dataset id; --data FILE.")
    return 0


def register(sub) -> None:
    c = sub.add_parser("curve", help="variability ratio per layer")
    add_data_args(c)
    c.add_argument("--bootstrap", type=int, default=0, help="B resamples for a 5-95%% band")
    c.add_argument("--weighting", default="equal", choices=["equal", "size"])
    c.add_argument("--rule", default="argmin", choices=["argmin", "plateau"])
    c.add_argument("--tolerance", type=float, default=10.0, help="plateau rule: %% above the minimum")
    c.add_argument(
        "--stream",
        action="store_true",
        help="per-layer statistics instead of the states (memory independent of n); a data file or HF dataset "
        "is read in chunks; under torchrun the processes share the sample",
    )
    c.add_argument(
        "--stream-mode",
        default=None,
        choices=["auto", "stream", "two-pass"],
        help="with --stream: one pass with d×d statistics, two passes with C×d ones, or auto (by --memory-budget)",
    )
    c.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="with --stream-mode auto: MB the statistics may use (default half the available memory)",
    )
    c.add_argument(
        "--keep",
        type=int,
        default=None,
        help="with --stream: states kept in a seeded sample, for the bootstrap band (default 2000)",
    )
    c.add_argument("--json", default=None)
    c.add_argument("--csv", default=None)
    c.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_curve)

    k = sub.add_parser("cache", help="list or clear the disk cache")
    k.add_argument("action", choices=["list", "clear"])
    k.add_argument("--kind", default=None, choices=["states", "projections", "runs", "cards", "streams"])
    k.add_argument("--key", default=None, help="key prefix")
    k.add_argument("--cache-dir", default=None)
    k.set_defaults(func=cmd_cache)

    m = sub.add_parser("models", help="offline models: layers, size, licence, installed or not")
    m.add_argument("--json", action="store_true", help="print the table as a JSON list")
    m.add_argument("--cache-dir", default=None)
    m.set_defaults(func=cmd_models)
    t = sub.add_parser("tasks", help="offline tasks")
    t.set_defaults(func=cmd_tasks)
